-- What goes on the wire for SearchImageSets (restJson1): the path, a query
-- with only the members given, and a body that IS the SearchCriteria.
local helpers = require "helpers"
local hi = require "healthimaging"
local core = require "healthimaging.core"

local ID = "0123456789abcdefghijklmnopqrstuv"

local function send(params, opts)
  local stub = helpers.stub_transport(function()
    return 200, {}, '{"imageSetsMetadataSummaries":[]}'
  end)
  local o = { region = "eu-west-1", credentials = helpers.CREDENTIALS, transport = stub,
              clock = function() return 1700000000 end }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = assert(hi.client(o))
  assert(c:search_image_sets(params))
  local req = stub.requests[1]
  local headers = {}
  for _, h in ipairs(req.headers) do headers[h[1]:lower()] = h[2] end
  return req, headers
end

describe("the SearchImageSets request", function()
  it("is a POST to /datastore/{datastoreId}/searchImageSets on the runtime- host of the region", function()
    local req, headers = send { datastoreId = ID }
    assert.are.equal("POST", req.method)
    assert.are.equal("https://runtime-medical-imaging.eu-west-1.amazonaws.com/datastore/" .. ID
      .. "/searchImageSets", req.url)
    assert.are.equal("runtime-medical-imaging.eu-west-1.amazonaws.com", headers.host)
    assert.are.equal("application/json", headers["content-type"])
  end)

  it("has an empty JSON object as body when there are no criteria", function()
    local req = send { datastoreId = ID }
    assert.are.equal("{}", req.body)
  end)

  it("sends the SearchCriteria itself as the body, not wrapped", function()
    local crit = { filters = { { operator = "EQUAL", values = { { DICOMPatientId = "P-1" } } } },
                   sort = { sortField = "createdAt", sortOrder = "ASC" } }
    local req = send { datastoreId = ID, searchCriteria = crit }
    assert.are.same(crit, core.json_decode(req.body))
    assert.is_nil(core.json_decode(req.body).searchCriteria)
  end)

  it("keeps false (isPrimary = false)", function()
    local req = send { datastoreId = ID, searchCriteria = { filters = { { operator = "EQUAL",
      values = { { isPrimary = false } } } } } }
    assert.is_false(core.json_decode(req.body).filters[1].values[1].isPrimary)
  end)

  it("sends timestamps as epoch seconds, from numbers or ISO-8601 strings", function()
    local req = send { datastoreId = ID, searchCriteria = { filters = { { operator = "BETWEEN", values = {
      { createdAt = "2024-01-31T12:00:00.250Z" }, { createdAt = 1706745600.5 } } } } } }
    local v = core.json_decode(req.body).filters[1].values
    assert.are.equal(1706702400.25, v[1].createdAt)
    assert.are.equal(1706745600.5, v[2].createdAt)
  end)

  it("reads ISO-8601 offsets and dates without a time", function()
    local req = send { datastoreId = ID, searchCriteria = { filters = { { operator = "BETWEEN", values = {
      { updatedAt = "2024-01-31T14:00:00+02:00" }, { updatedAt = "2024-02-29" } } } } } }
    local v = core.json_decode(req.body).filters[1].values
    assert.are.equal(1706702400, v[1].updatedAt)
    assert.are.equal(1709164800, v[2].updatedAt)
  end)

  it("has no query string when neither maxResults nor nextToken is given", function()
    local req = send { datastoreId = ID }
    assert.is_nil(req.url:find("?", 1, true))
  end)

  it("puts maxResults and nextToken in the query, the token percent-encoded exactly once", function()
    local req = send { datastoreId = ID, maxResults = 7, nextToken = "a+b/c=d e%f" }
    local query = req.url:match("%?(.*)$")
    assert.are.equal("maxResults=7&nextToken=a%2Bb%2Fc%3Dd%20e%25f", query)
  end)

  it("is signed with SigV4 for medical-imaging in the client's region at the client's clock", function()
    local _, headers = send { datastoreId = ID }
    assert.are.equal("20231114T221320Z", headers["x-amz-date"])
    assert.truthy(headers.authorization:find("^AWS4%-HMAC%-SHA256 Credential=AKIDLOCALHEALTHIMAGING/20231114/"
      .. "eu%-west%-1/medical%-imaging/aws4_request, SignedHeaders=content%-type;host;x%-amz%-date, "
      .. "Signature=%x+$"))
  end)

  it("carries and signs the session token when there is one", function()
    local _, headers = send({ datastoreId = ID }, { credentials = {
      access_key_id = "AKID", secret_access_key = "s", session_token = "TOKEN/+=" } })
    assert.are.equal("TOKEN/+=", headers["x-amz-security-token"])
    assert.truthy(headers.authorization:find("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token",
      1, true))
  end)

  it("goes to a custom endpoint without the host prefix when it is an IP literal or localhost", function()
    local req, headers = send({ datastoreId = ID }, { endpoint_url = "http://127.0.0.1:8089" })
    assert.are.equal("http://127.0.0.1:8089/datastore/" .. ID .. "/searchImageSets", req.url)
    assert.are.equal("127.0.0.1:8089", headers.host)
    req = send({ datastoreId = ID }, { endpoint_url = "http://localhost:9/base/" })
    assert.are.equal("http://localhost:9/base/datastore/" .. ID .. "/searchImageSets", req.url)
  end)

  it("puts the runtime- prefix on a custom host name unless disabled", function()
    local req = send({ datastoreId = ID }, { endpoint_url = "https://imaging.example.com" })
    assert.are.equal("https://runtime-imaging.example.com/datastore/" .. ID .. "/searchImageSets", req.url)
    req = send({ datastoreId = ID }, { endpoint_url = "https://imaging.example.com",
                                       disable_host_prefix_injection = true })
    assert.are.equal("https://imaging.example.com/datastore/" .. ID .. "/searchImageSets", req.url)
  end)
end)

describe("a custom endpoint URL", function()
  for _, url in ipairs { "http://127.0.0.1:99999", "http://127.0.0.1:0", "http://exa mple.com", "ftp://h",
                         "http://user:pw@h", "h:8080", "http://" } do
    it("is refused when it is " .. url .. ", before anything is sent", function()
      local stub = helpers.stub_transport {}
      local c = assert(hi.client { region = "us-east-1", credentials = helpers.CREDENTIALS, transport = stub,
                                   endpoint_url = url })
      local _, err = c:search_image_sets { datastoreId = ID }
      assert.are.equal("InvalidEndpointError", err.code)
      assert.are.equal(0, #stub.requests)
    end)
  end

  it("may be an IPv6 literal, without the host prefix", function()
    local req, headers = send({ datastoreId = ID }, { endpoint_url = "http://[::1]:8089" })
    assert.are.equal("http://[::1]:8089/datastore/" .. ID .. "/searchImageSets", req.url)
    assert.are.equal("[::1]:8089", headers.host)
  end)
end)

-- Regressions: inputs that once broke a contract, found by the fuzz targets
-- (fuzz/regressions/ keeps the raw inputs) or by property_spec.lua. The C
-- cases matter most under `make test-asan`, where undefined behaviour and
-- memory errors stop the run.
local helpers = require "helpers"
local hi = require "healthimaging"
local core = require "healthimaging.core"
local token = require "healthimaging.token"

local ID = "0123456789abcdefghijklmnopqrstuv"

local function client_with_stub()
  local stub = helpers.stub_transport(function()
    return 200, {}, '{"imageSetsMetadataSummaries":[]}'
  end)
  return assert(hi.client { region = "us-east-1", credentials = helpers.CREDENTIALS, transport = stub }), stub
end

describe("SigV4 canonicalization of queries made of empty parts", function()
  -- fuzz/regressions/sigv4/ubsan-null-offset-query-equals: with nothing
  -- to re-encode, stage_query computed NULL + 0 (undefined behaviour).
  local cases = { { "=", "=" }, { "&=&", "=" }, { "=&=", "=&=" }, { "&&", "" } }
  for _, case in ipairs(cases) do
    it(string.format("canonicalizes %q as %q", case[1], case[2]), function()
      assert.equal(case[2], core._sigv4.canonical_query(case[1]))
    end)
  end

  it("signs a request whose query is only '='", function()
    local res = assert(core.sign {
      method = "GET", path = "/", query = "=", headers = { { "Host", "example.amazonaws.com" } },
      access_key_id = "AKIDEXAMPLE", secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
      region = "us-east-1", service = "service", amz_date = "20150830T123600Z",
    })
    assert.equal("GET\n/\n=\n", res.canonical_request:sub(1, 8))
  end)
end)

describe("parameters that pass a type check but cannot be sent", function()
  -- Found by property_spec.lua: finite, so accepted, but 1e308 seconds is
  -- inf milliseconds, which the JSON encoder refuses (a SerializationError).
  for _, t in ipairs { 1e308, -1e308, 1e306 } do
    it(string.format("answers a ParamValidationError for the timestamp %g, sending nothing", t), function()
      local client, stub = client_with_stub()
      local res, err = client:search_image_sets {
        datastoreId = ID,
        searchCriteria = { filters = { { operator = "EQUAL", values = { { createdAt = t } } } } },
      }
      assert.is_nil(res)
      assert.equal("ParamValidationError", hi.is_error(err) and err.code)
      assert.equal(0, #stub.requests)
    end)
  end

  -- Found by property_spec.lua: "0" passes math.tointeger, then `amount < 0`
  -- compares a string with a number and paginate raises a bare string.
  for _, amount in ipairs { "0", "5", "1e2" } do
    it(string.format("refuses a StartingToken whose boto_truncate_amount is the string %q", amount), function()
      local client, stub = client_with_stub()
      local start = token.base64_encode('{"nextToken": "t", "boto_truncate_amount": "' .. amount .. '"}')
      local ok, pages = pcall(function()
        return client:get_paginator("search_image_sets"):paginate {
          datastoreId = ID, PaginationConfig = { StartingToken = start },
        }
      end)
      assert.is_true(ok, "paginate raised: " .. tostring(pages))
      local ok2, err = pcall(pages)
      assert.is_false(ok2)
      assert.equal("ParamValidationError", hi.is_error(err) and err.code)
      assert.equal(0, #stub.requests)
    end)
  end
end)

describe("keys whose __tostring raises", function()
  -- Noticed while fuzzing: validation sorted member keys with tostring, so a
  -- table key whose __tostring raises escaped as InternalError (and as a bare
  -- string from paginate). Keys are now checked by type, never printed.
  local function evil_key()
    return setmetatable({}, { __tostring = function() error("boom") end })
  end

  it("get a ParamValidationError from search_image_sets, sending nothing", function()
    local client, stub = client_with_stub()
    local res, err = client:search_image_sets { datastoreId = ID, searchCriteria = { [evil_key()] = 1 } }
    assert.is_nil(res)
    assert.equal("ParamValidationError", err.code)
    assert.equal("searchCriteria", err.path)
    assert.equal(0, #stub.requests)
  end)

  it("get a ParamValidationError from the paginator, in lists and PaginationConfig too", function()
    local client, stub = client_with_stub()
    local p = client:get_paginator("search_image_sets")
    for _, params in ipairs {
      { datastoreId = ID, searchCriteria = { filters = { [evil_key()] = 1 } } },
      { datastoreId = ID, PaginationConfig = { [evil_key()] = 1 } },
    } do
      local pages = p:paginate(params)
      local ok, err = pcall(pages)
      assert.is_false(ok)
      assert.equal("ParamValidationError", hi.is_error(err) and err.code)
    end
    assert.equal(0, #stub.requests)
  end)
end)

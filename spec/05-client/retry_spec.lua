-- Retries follow the AWS "standard" mode (and "adaptive" on request): a
-- stub transport plays the failures, the sleep and jitter options record
-- and fix the waits, so nothing here depends on the machine's speed.
local helpers = require "helpers"
local hi = require "healthimaging"
local retry = require "healthimaging.retry"

local ID = "0123456789abcdefghijklmnopqrstuv"
local OK = { status = 200, body = '{"imageSetsMetadataSummaries":[]}' }

local function fault(code, status, extra_headers)
  local headers = { ["x-amzn-errortype"] = code, ["x-amzn-requestid"] = "rid" }
  for k, v in pairs(extra_headers or {}) do headers[k] = v end
  return { status = status, headers = headers, body = '{"message":"' .. code .. ' happened"}' }
end

local function client(responses, opts)
  local stub = helpers.stub_transport(responses)
  local sleeps = {}
  local o = {
    region = "us-east-1", credentials = helpers.CREDENTIALS, transport = stub,
    sleep = function(s) sleeps[#sleeps + 1] = s end, random = function() return 0.5 end,
  }
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(hi.client(o)), stub, sleeps
end

describe("retries", function()
  it("retry a throttled request and sign every attempt afresh", function()
    local t = 1700000000
    local c, stub, sleeps = client({ fault("ThrottlingException", 429), fault("ThrottlingException", 429), OK },
      { clock = function() t = t + 1; return t end })
    local res, err = c:search_image_sets { datastoreId = ID }
    assert.is_nil(err)
    assert.is_table(res)
    assert.are.equal(3, #stub.requests)
    assert.are.same({ 0.5, 1.0 }, sleeps)
    local dates, auths = {}, {}
    for _, req in ipairs(stub.requests) do
      for _, h in ipairs(req.headers) do
        if h[1] == "X-Amz-Date" then dates[h[2]] = true end
        if h[1] == "Authorization" then auths[h[2]] = true end
      end
    end
    local nd, na = 0, 0
    for _ in pairs(dates) do nd = nd + 1 end
    for _ in pairs(auths) do na = na + 1 end
    assert.are.equal(3, nd)
    assert.are.equal(3, na)
  end)

  it("give up after 3 attempts by default, returning the last error", function()
    local c, stub = client { fault("ThrottlingException", 429), fault("ThrottlingException", 429),
                             fault("InternalServerException", 500) }
    local _, err = c:search_image_sets { datastoreId = ID }
    assert.are.equal("InternalServerException", err.code)
    assert.are.equal(3, err.attempts)
    assert.are.equal("max attempts reached", err.retry_stopped)
    assert.are.equal(3, #stub.requests)
  end)

  for _, case in ipairs {
    { "ValidationException", 400 }, { "AccessDeniedException", 403 },
    { "ResourceNotFoundException", 404 }, { "ConflictException", 409 },
  } do
    it("never retry " .. case[1], function()
      local c, stub = client { fault(case[1], case[2]), OK }
      local _, err = c:search_image_sets { datastoreId = ID }
      assert.are.equal(case[1], err.code)
      assert.are.equal(1, #stub.requests)
    end)
  end

  for _, status in ipairs { 500, 502, 503, 504 } do
    it("retry HTTP " .. status .. " even without a modeled error type", function()
      local c, stub = client { { status = status, body = "<html>busy</html>" }, OK }
      assert.is_table((c:search_image_sets { datastoreId = ID }))
      assert.are.equal(2, #stub.requests)
    end)
  end

  for _, code in ipairs { "ConnectionError", "TimeoutError" } do
    it("retry a transport " .. code, function()
      local c, stub = client { { err = { code = code, message = "x", retryable = true } }, OK }
      assert.is_table((c:search_image_sets { datastoreId = ID }))
      assert.are.equal(2, #stub.requests)
    end)
  end

  it("do not retry a transport error that is not retryable (TLS verification)", function()
    local c, stub = client { { err = { code = "TLSError", message = "TLS verification failed", retryable = false } },
                             OK }
    local _, err = c:search_image_sets { datastoreId = ID }
    assert.are.equal("TLSError", err.code)
    assert.are.equal(1, #stub.requests)
  end)

  it("retry an answer whose body is not JSON", function()
    local c, stub = client { { status = 200, body = '{"imageSetsMetadataSummaries":[' }, OK }
    assert.is_table((c:search_image_sets { datastoreId = ID }))
    assert.are.equal(2, #stub.requests)
  end)

  it("wait with full jitter, doubling, capped at 20 seconds", function()
    local r = retry.new { max_attempts = 100, random = function() return 1 end }
    local delays = {}
    for attempt = 1, 7 do delays[attempt] = r:retry_delay({ retryable = true }, attempt) end
    assert.are.same({ 1, 2, 4, 8, 16, 20, 20 }, delays)
    r = retry.new { max_attempts = 100, random = function() return 0 end }
    assert.are.equal(0, r:retry_delay({ retryable = true }, 3))
  end)

  it("honour x-amz-retry-after, within 5 seconds of the backoff", function()
    local c, _, sleeps = client({ fault("ThrottlingException", 429, { ["x-amz-retry-after"] = "1500" }),
                                  fault("ThrottlingException", 429, { ["x-amz-retry-after"] = "60000" }), OK },
                                { random = function() return 0 end })
    assert.is_table((c:search_image_sets { datastoreId = ID }))
    assert.are.same({ 1.5, 5 }, sleeps)
  end)

  it("stop when the retry quota is spent, and refill it on success", function()
    local r = retry.new { max_attempts = 3, random = function() return 0 end }
    local n = 0
    while r:retry_delay({ retryable = true, code = "ThrottlingException" }, 1) do n = n + 1 end
    assert.are.equal(retry.INITIAL_QUOTA / retry.RETRY_COST, n)
    local d, why = r:retry_delay({ retryable = true }, 1)
    assert.is_nil(d)
    assert.are.equal("retry quota exhausted", why)
    r:on_success(retry.RETRY_COST)
    assert.is_not_nil(r:retry_delay({ retryable = true }, 1))
  end)

  it("charge a timeout twice what another retry costs", function()
    local r = retry.new { max_attempts = 3, random = function() return 0 end }
    local _, cost = r:retry_delay({ retryable = true, code = "TimeoutError" }, 1)
    assert.are.equal(10, cost)
    assert.are.equal(490, r.quota)
  end)

  it("read max_attempts from AWS_MAX_ATTEMPTS and the profile", function()
    helpers.with_env({ AWS_MAX_ATTEMPTS = "1" }, function()
      local c, stub = client { fault("ThrottlingException", 429), OK }
      local _, err = c:search_image_sets { datastoreId = ID }
      assert.are.equal("ThrottlingException", err.code)
      assert.are.equal(1, #stub.requests)
    end)
    local cfg = os.tmpname()
    helpers.write(cfg, "[profile slow]\nmax_attempts = 5\nretry_mode = standard\n")
    helpers.with_env({ AWS_CONFIG_FILE = cfg, AWS_MAX_ATTEMPTS = false, AWS_RETRY_MODE = false }, function()
      local responses = {}
      for i = 1, 4 do responses[i] = fault("ThrottlingException", 429) end
      responses[5] = OK
      local c, stub = client(responses, { profile = "slow" })
      assert.is_table((c:search_image_sets { datastoreId = ID }))
      assert.are.equal(5, #stub.requests)
    end)
    os.remove(cfg)
  end)

  it("refuse a retry mode that does not exist, when the client is made", function()
    local c, err = hi.client { region = "us-east-1", retry_mode = "eager" }
    assert.is_nil(c)
    assert.are.equal("InvalidClientOption", err.code)
    assert.is_truthy(err.message:find("retry_mode", 1, true))
  end)

  it("refuse a retry mode that does not exist, from the environment, when a call is made", function()
    helpers.with_env({ AWS_RETRY_MODE = "eager" }, function()
      local c = client { OK }
      local _, err = c:search_image_sets { datastoreId = ID }
      assert.are.equal("InvalidConfiguration", err.code)
    end)
  end)

  it("in adaptive mode, slow the client down after throttling", function()
    local t = 0
    local now = function() return t end
    local c, _, sleeps = client({ fault("ThrottlingException", 429), fault("ThrottlingException", 429), OK,
                                  OK, OK, OK },
      { retry_mode = "adaptive", max_attempts = 5, monotime = now, random = function() return 0 end,
        sleep = function(s) t = t + s end })
    for _ = 1, 4 do
      t = t + 0.01
      assert.is_table((c:search_image_sets { datastoreId = ID }))
    end
    -- the token bucket made the client wait before some attempts
    assert.is_true(t > 0.5, "waited " .. t .. " seconds")
    assert.are.equal(0, #sleeps)
  end)
end)

describe("the debug hook", function()
  it("sees requests, responses and retries, with no secret and no body", function()
    local events = {}
    local c = client({ fault("ThrottlingException", 429), OK }, {
      credentials = { access_key_id = "AKIDDEBUG", secret_access_key = "SECRET-KEY-VALUE",
                      session_token = "SESSION-TOKEN-VALUE" },
      debug = function(e) events[#events + 1] = e end,
    })
    assert.is_table((c:search_image_sets { datastoreId = ID, searchCriteria = { filters = { {
      operator = "EQUAL", values = { { DICOMPatientId = "PATIENT-ID-VALUE" } } } } } }))
    local kinds = {}
    for _, e in ipairs(events) do kinds[#kinds + 1] = e.type end
    assert.are.same({ "request", "response", "retry", "request", "response" }, kinds)
    local function dump(v, out)
      if type(v) == "table" then
        for k, x in pairs(v) do dump(k, out); dump(x, out) end
      else
        out[#out + 1] = tostring(v)
      end
      return out
    end
    local text = table.concat(dump(events, {}), "\n")
    for _, secret in ipairs { "SECRET-KEY-VALUE", "SESSION-TOKEN-VALUE", "PATIENT-ID-VALUE", "Signature=" } do
      assert.is_falsy(text:find(secret, 1, true), "the debug events show " .. secret)
    end
    assert.is_truthy(text:find("<redacted>", 1, true))
  end)
end)

describe("a success answer of the wrong shape", function()
  -- Never read as an empty last page, which would end a scan silently.
  for _, case in ipairs {
    { "a JSON array", '[{"imageSetId":"x"}]' },
    { "an object without the summaries", '{"nextToken":"t"}' },
    { "summaries that are not a list of objects", '{"imageSetsMetadataSummaries":[1,2]}' },
    { "a token that is not a string", '{"imageSetsMetadataSummaries":[],"nextToken":5}' },
    { "JSON null", "null" },
  } do
    it("is a retryable ResponseParserError when the body is " .. case[1], function()
      local c, stub = client({ { status = 200, body = case[2] }, { status = 200, body = case[2] },
                               { status = 200, body = case[2] } })
      local res, err = c:search_image_sets { datastoreId = ID }
      assert.is_nil(res)
      assert.are.equal("ResponseParserError", err.code)
      assert.is_true(err.retryable)
      assert.are.equal(3, #stub.requests)
    end)
  end
end)

describe("build_full_result after a failed page", function()
  it("goes on from that page when called again, losing nothing", function()
    local page = function(ids, nt)
      local items = {}
      for i, id in ipairs(ids) do items[i] = '{"imageSetId":"' .. id .. '"}' end
      return { status = 200, body = '{"imageSetsMetadataSummaries":[' .. table.concat(items, ",") .. ']'
        .. (nt and (',"nextToken":"' .. nt .. '"') or "") .. '}' }
    end
    local c = client({ page({ "a", "b" }, "t1"), fault("InternalServerException", 500), page({ "c" }) },
      { max_attempts = 1 })
    local pages = c:get_paginator("search_image_sets"):paginate { datastoreId = ID }
    local ok, err = pcall(pages.build_full_result, pages)
    assert.is_false(ok)
    assert.are.equal("InternalServerException", err.code)
    local full = pages:build_full_result()
    local ids = {}
    for i, s in ipairs(full.imageSetsMetadataSummaries) do ids[i] = s.imageSetId end
    assert.are.same({ "a", "b", "c" }, ids)
  end)
end)

describe("a service error message", function()
  it("never shows a quoted rejected value, stays one line, and is cut when huge", function()
    local body = '{"message":"1 validation error detected: Value \'PATIENT-SECRET-1\' at '
      .. '\'searchCriteria.filters.1.member.values.1.member.dICOMPatientId\' failed to satisfy constraint; '
      .. 'value \\"PATIENT-SECRET-2\\" again\\r\\n\\u001b[31mred' .. string.rep("x", 5000) .. '"}'
    local c = client { { status = 400, headers = { ["x-amzn-errortype"] = "ValidationException" }, body = body } }
    local _, err = c:search_image_sets { datastoreId = ID }
    local text = tostring(err)
    assert.is_falsy(text:find("PATIENT-SECRET", 1, true))
    assert.is_truthy(text:find("Value '<redacted>' at 'searchCriteria.filters.1.member", 1, true))
    assert.is_falsy(text:find("[\r\n\27]"))
    assert.is_true(#err.message <= 1024 + #"... (cut)")
  end)
end)

describe("client options and credentials with bad values", function()
  for _, case in ipairs {
    { { timeout = 0 / 0 }, "timeout" }, { { timeout = math.huge }, "timeout" }, { { timeout = -5 }, "timeout" },
    { { connect_timeout = 1e300 }, "connect_timeout" }, { { max_attempts = 0 }, "max_attempts" },
    { { max_attempts = 2.5 }, "max_attempts" },
  } do
    it("refuse " .. case[2] .. " = " .. tostring(select(2, next(case[1]))) .. " when the client is made", function()
      local opts = { region = "us-east-1" }
      for k, v in pairs(case[1]) do opts[k] = v end
      local c, err = hi.client(opts)
      assert.is_nil(c)
      assert.are.equal("InvalidClientOption", err.code)
      assert.is_truthy(err.message:find(case[2], 1, true))
    end)
  end

  for _, creds in ipairs {
    { access_key_id = "A B", secret_access_key = "s" },
    { access_key_id = "", secret_access_key = "s" },
    { access_key_id = "AKID", secret_access_key = "" },
    { access_key_id = "AKID", secret_access_key = "s", session_token = "SECRET-TOKEN\r\nX-Injected: 1" },
  } do
    it("answer InvalidCredentials, showing no credential, and send nothing", function()
      local c, stub = client({ OK }, { credentials = creds })
      local _, err = c:search_image_sets { datastoreId = ID }
      assert.are.equal("InvalidCredentials", err.code)
      assert.is_falsy(tostring(err):find("SECRET-TOKEN", 1, true))
      assert.are.equal(0, #stub.requests)
    end)
  end
end)

describe("a custom transport that breaks the seam's contract", function()
  local cases = {
    { "fails with a plain string", function() return nil, "socket gone" end, "TransportError" },
    { "fails with a table whose __tostring raises", function()
        return nil, setmetatable({ code = "Boom", message = "m" },
          { __tostring = function() error("no") end, __metatable = "locked" })
      end, "Boom" },
    { "answers a body that is not a string", function() return 200, {}, 42 end, "TransportError" },
    { "answers no headers", function() return 200, nil, "{}" end, "TransportError" },
    { "answers a status that is not an integer", function() return "200", {}, "{}" end, "TransportError" },
  }
  for _, case in ipairs(cases) do
    it("gives an error object when it " .. case[1], function()
      local c = assert(hi.client { region = "us-east-1", credentials = helpers.CREDENTIALS, max_attempts = 1,
                                   transport = { request = function() return case[2]() end } })
      local res, err = c:search_image_sets { datastoreId = ID }
      assert.is_nil(res)
      assert.is_true(hi.is_error(err))
      assert.are.equal(case[3], err.code)
      assert.is_string(tostring(err))
    end)
  end
end)

describe("a summary whose members have the wrong types", function()
  for _, case in ipairs {
    { '{"imageSetId":5}', "imageSetId" },
    { '{"imageSetId":"a","version":"x"}', "version" },
    { '{"imageSetId":"a","version":1.5}', "version" },
    { '{"imageSetId":"a","createdAt":"never"}', "createdAt" },
    { '{"imageSetId":"a","isPrimary":"yes"}', "isPrimary" },
    { '{"imageSetId":"a","DICOMTags":{"DICOMSeriesNumber":"7"}}', "DICOMTags.DICOMSeriesNumber" },
    { '{"imageSetId":"a","DICOMTags":5}', "DICOMTags" },
  } do
    it("is a ResponseParserError naming " .. case[2], function()
      local c = client({ { status = 200, body = '{"imageSetsMetadataSummaries":[' .. case[1] .. ']}' } },
                       { max_attempts = 1 })
      local _, err = c:search_image_sets { datastoreId = ID }
      assert.are.equal("ResponseParserError", err.code)
      assert.is_truthy(err.message:find(case[2], 1, true), err.message)
    end)
  end
end)

-- Every fault the emulator can inject, met by the real client over libcurl:
-- the client recovers within its retries, or, when the fault outlasts them,
-- fails with the retryable error code that names the fault. Backoff waits
-- are recorded instead of slept here (05-client/retry_spec.lua checks them),
-- except where the server's own clock matters (the token bucket).
local helpers = require "helpers"
local core = require "healthimaging.core"

local DS = helpers.DATASTORE_ID

local emu, CLEAN

local function search(c) return c:search_image_sets { datastoreId = DS, maxResults = 5 } end

setup(function()
  emu = helpers.start_emulator()
  CLEAN = assert(search(helpers.client(emu)))   -- the answer without faults
end)
teardown(function() if emu then emu.stop() end end)
before_each(function() helpers.control(emu, "DELETE", "/_local/faults") end)

local function stats() return helpers.stats(emu) end

local function inject(rules)
  local status, body = helpers.control(emu, "POST", "/_local/faults", rules)
  assert.are.equal(200, status, body and body.message)
end

-- The change of a few counters between two stats() snapshots.
local function delta(before, after)
  local kinds = {}
  for k, v in pairs(after.faultsByKind) do kinds[k] = v - (before.faultsByKind[k] or 0) end
  return { requests = after.requests - before.requests, kinds = kinds,
           api_connections = after.apiConnections - before.apiConnections }
end

--[[
A client of the emulator whose waits between attempts are recorded, not
slept, and whose debug hook keeps the codes of the attempts it retried.
]]
local function client(extra)
  local rec = { waits = {}, retried = {} }
  local opts = {
    sleep = function(s) rec.waits[#rec.waits + 1] = s end,
    debug = function(ev) if ev.type == "retry" then rec.retried[#rec.retried + 1] = ev.code end end,
  }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return helpers.client(emu, opts), rec
end

local function clean() return CLEAN end

-- kind, the code a client gets when the fault outlasts its retries, the HTTP status.
local KINDS = {
  { "throttle", "ThrottlingException", 429 },
  { "internal", "InternalServerException", 500 },
  { "unavailable", "ServiceUnavailableException", 503 },
  { "cut", "ConnectionError", nil },
  { "truncated", "ResponseParserError", 200 },
  { "malformed", "ResponseParserError", 200 },
  { "content_type", "ResponseParserError", 200 },
  { "drop", "ConnectionError", nil },
  { "reset", "ConnectionError", nil },
}

describe("a client under injected faults", function()
  for _, case in ipairs(KINDS) do
    local kind, code, status = case[1], case[2], case[3]

    it("recovers from one '" .. kind .. "' fault within its retries, with the very same answer", function()
      local c = client()
      assert(search(c))                                   -- a warm keep-alive connection
      local before = stats()
      inject { kind = kind }
      local res, err = search(c)
      assert.is_nil(err)
      assert.is_true(helpers.same(clean(), res))
      assert.are.equal(1, delta(before, stats()).kinds[kind])
    end)

    it("fails with a retryable " .. code .. " when '" .. kind .. "' outlasts 3 attempts", function()
      local c, rec = client()
      inject { kind = kind, times = 20 }
      local res, err = search(c)
      assert.is_nil(res)
      assert.are.equal(code, err.code)
      assert.is_true(err.retryable)
      assert.are.equal(status, err.status)
      assert.are.equal(3, err.attempts)
      assert.are.equal("max attempts reached", err.retry_stopped)
      assert.are.same({ code, code }, rec.retried)
      assert.are.equal(2, #rec.waits)
    end)
  end

  it("reads a page labelled text/html when its body is the JSON page (the type is not checked)", function()
    local c = client { max_attempts = 1 }
    inject { kind = "content_type", body = "json" }
    local res, err = search(c)
    assert.is_nil(err)
    assert.is_true(helpers.same(clean(), res))
  end)

  it("retries a connection closed mid-body on a fresh connection", function()
    local c, rec = client()
    assert(search(c))
    local before = stats()
    inject { kind = "cut", bytes = 10 }
    assert(search(c))
    local d = delta(before, stats())
    assert.are.same({ "ConnectionError" }, rec.retried)
    assert.are.equal(2, d.requests)
    assert.are.equal(1, d.api_connections)                -- the retry's new connection
  end)

  it("resends on a fresh connection when a keep-alive connection is dropped silently", function()
    -- libcurl itself resends once, on a new connection, a request whose
    -- reused connection closed before any byte of an answer; when that one
    -- is dropped too, the client gets a retryable ConnectionError and
    -- retries on yet another connection.
    for _, kind in ipairs { "drop", "reset" } do
      local c, rec = client()
      assert(search(c))
      local before = stats()
      inject { kind = kind, times = 2 }
      local res, err = search(c)
      assert.is_nil(err)
      assert.is_true(helpers.same(clean(), res))
      local d = delta(before, stats())
      assert.are.same({ "ConnectionError" }, rec.retried)
      assert.are.equal(3, d.requests)
      assert.are.equal(2, d.api_connections)
    end
  end)

  it("gives a retryable TimeoutError for a slow server with timeout = 0.5, never a hang", function()
    local c = client { timeout = 0.5, max_attempts = 1 }
    inject { kind = "delay", ms = 5000, times = 3 }
    local t0 = core.monotime()
    local res, err = search(c)
    local took = core.monotime() - t0
    assert.is_nil(res)
    assert.are.equal("TimeoutError", err.code)
    assert.is_true(err.retryable)
    assert.is_true(took >= 0.45 and took < 2, "took " .. took .. " s")
    -- With retries: two more timed-out attempts, then the server is fast again.
    c = client { timeout = 0.5 }
    helpers.control(emu, "DELETE", "/_local/faults")
    inject { kind = "delay", ms = 5000, times = 2 }
    t0 = core.monotime()
    res, err = search(c)
    assert.is_nil(err)
    assert.is_true(helpers.same(clean(), res))
    assert.is_true(core.monotime() - t0 < 4)
  end)

  it("waits for a delayed answer that comes within the timeout", function()
    local c = client { max_attempts = 1 }
    inject { kind = "delay", ms = 300 }
    local t0 = core.monotime()
    assert(search(c))
    assert.is_true(core.monotime() - t0 >= 0.3)
  end)

  it("rides through throttling of every 3rd request", function()
    local c, rec = client()
    local before = stats()
    inject { kind = "throttle", every = 3 }
    for _ = 1, 6 do
      local res, err = search(c)
      assert.is_nil(err)
      assert.is_true(helpers.same(clean(), res))
    end
    local d = delta(before, stats())
    assert.are.same({ "ThrottlingException", "ThrottlingException" }, rec.retried)   -- requests 3 and 6
    assert.are.equal(8, d.requests)
    assert.are.equal(2, d.kinds.throttle)
  end)

  it("meets a token bucket: the burst passes, then ThrottlingException, retryable and marked as throttling",
    function()
      local c = client { max_attempts = 1 }
      inject { kind = "throttle", rps = 2, burst = 5 }
      local codes = {}
      for i = 1, 10 do
        local _, err = search(c)
        codes[i] = err and err.code or "ok"
        if err then
          assert.is_true(err.retryable)
          assert.is_true(err.throttling)
        end
      end
      assert.are.same({ "ok", "ok", "ok", "ok", "ok" }, { table.unpack(codes, 1, 5) })
      local throttled = 0
      for i = 6, 10 do if codes[i] == "ThrottlingException" then throttled = throttled + 1 end end
      assert.is_true(throttled >= 3, "throttled " .. throttled .. " of the 5 requests after the burst")
    end)

  it("waits out the service's rate with its backoff once the burst is spent", function()
    -- A real wait here: the bucket refills on the server's clock.
    local c = client { sleep = core.sleep, random = function() return 1 end }
    inject { kind = "throttle", rps = 2, burst = 3 }
    local before = stats()
    for _ = 1, 5 do
      local res, err = search(c)
      assert.is_nil(err)
      assert.is_true(helpers.same(clean(), res))
    end
    assert.is_true((delta(before, stats()).kinds.throttle or 0) >= 1)
  end)

  it("keeps up with the service's own rate (25 a second, burst 50) in standard and adaptive modes", function()
    -- 100 requests as fast as they go: the 50 of the burst pass, the other
    -- 50 need 2 s of refill (throttled when they come faster); every one
    -- succeeds within its retries. A fixed jitter (half of each backoff)
    -- keeps the run free of chance.
    for _, mode in ipairs { "standard", "adaptive" } do
      helpers.control(emu, "DELETE", "/_local/faults")
      inject { kind = "throttle", rps = 25, burst = 50 }
      local c, rec = client { retry_mode = mode, sleep = core.sleep, random = function() return 0.5 end }
      local before = stats()
      local t0 = core.monotime()
      for _ = 1, 100 do
        local _, err = search(c)
        assert.is_nil(err, mode)
      end
      local took = core.monotime() - t0
      local throttled = delta(before, stats()).kinds.throttle or 0
      assert.is_true(took >= 1.5, mode .. ": " .. took .. " s")   -- 50 requests past the burst need 2 s
      assert.are.equal(throttled, #rec.retried, mode)              -- each throttled attempt was retried
    end
  end)

  it("continues a scan after a page that failed past its retries, by the same iterator or its resume token",
    function()
      local function ids(pages, out)
        for s in pages:items() do out[#out + 1] = s.imageSetId end
        return out
      end
      local c = client()
      local p = c:get_paginator("search_image_sets")
      local all = ids(p:paginate { datastoreId = DS, PaginationConfig = { PageSize = 5 } }, {})
      assert.is_true(#all > 15)

      local pages = p:paginate { datastoreId = DS, PaginationConfig = { PageSize = 5 } }
      local got = {}
      for _, s in ipairs(pages().imageSetsMetadataSummaries) do got[#got + 1] = s.imageSetId end
      inject { kind = "internal", times = 3 }
      local ok, err = pcall(pages)
      assert.is_false(ok)
      assert.are.equal("InternalServerException", err.code)
      assert.is_true(err.retryable)
      assert.is_string(err.resume_token)
      -- A new iteration from the token starts exactly at page 2 ...
      local resumed = ids(p:paginate { datastoreId = DS,
        PaginationConfig = { PageSize = 5, StartingToken = err.resume_token } }, { table.unpack(got) })
      assert.are.same(all, resumed)
      -- ... and so does the same iterator, called again.
      assert.are.same(all, ids(pages, got))
    end)
end)

-- handle:start / handle:finish / handle:cancel: the libcurl transport sends a
-- request now and collects its answer later, on the same keep-alive
-- connection as handle:request (what the paginator's prefetch uses). Against
-- the real local HTTP/1.1 server of spec/support/http_server.py.
local core = require "healthimaging.core"
local test_server = require "support.test_server"

local server

setup(function() server = test_server.start() end)
teardown(function() if server then server.stop() end end)

local function req(path, body)
  return { method = body and "POST" or "GET", url = server.base .. path, body = body }
end

describe("handle:start and handle:finish", function()
  it("give the same answer as handle:request: start returns an integer ticket, finish the response", function()
    local t = core.http_new { timeout = 5 }
    local ticket = t:start(req("/echo", "patient-free body\0with a NUL"))
    assert.equal("integer", math.type(ticket))
    local status, headers, body = t:finish(ticket)
    assert.equal(200, status)
    assert.equal("POST", headers["x-echo-method"])
    assert.equal("patient-free body\0with a NUL", body)
    t:close()
  end)

  it("let the answer arrive while Lua does something else", function()
    local t = core.http_new { timeout = 5 }
    local ticket = t:start(req("/slow?s=0.3"))
    core.sleep(0.4)
    local before = core.monotime()
    assert.equal(200, (t:finish(ticket)))
    local waited = core.monotime() - before
    assert.is_true(waited < 0.2, "finish waited " .. waited .. " s for an answer that was already there")
    t:close()
  end)

  it("count only the time spent waiting in them against the timeout, not the time in between", function()
    local t = core.http_new { timeout = 0.5 }
    local ticket = t:start(req("/slow?s=0.3"))
    core.sleep(0.7)
    assert.equal(200, (t:finish(ticket)))
    local status, err = t:finish(t:start(req("/slow?s=3")))
    assert.is_nil(status)
    assert.equal("TimeoutError", err.code)
    assert.equal(28, err.curl_code)
    t:close()
  end)

  it("keep one connection across request, start/finish and request again", function()
    local t = core.http_new { timeout = 5 }
    assert.equal("1", select(3, t:request(req("/conn?tag=async-keepalive"))))
    assert.equal("1", select(3, t:finish(t:start(req("/conn?tag=async-keepalive")))))
    assert.equal("1", select(3, t:request(req("/conn?tag=async-keepalive"))))
    t:close()
  end)

  it("return a transfer failure from finish, as request does", function()
    local port = select(3, core.http_new():request(req("/closed-port")))
    local t = core.http_new()
    local status, err = t:finish(t:start { method = "GET", url = "http://127.0.0.1:" .. port .. "/" })
    assert.is_nil(status)
    assert.equal("ConnectionError", err.code)
    assert.is_true(err.retryable)
  end)

  it("answer a ticket only once: a second finish is RequestAbandoned", function()
    local t = core.http_new()
    local ticket = t:start(req("/status?code=200"))
    assert.equal(200, (t:finish(ticket)))
    local status, err = t:finish(ticket)
    assert.is_nil(status)
    assert.equal("RequestAbandoned", err.code)
    assert.is_true(err.retryable)
  end)

  it("abandon the request in flight when another starts; the later one is answered", function()
    local t = core.http_new { timeout = 5 }
    local first = t:start(req("/slow?s=0.2"))
    local second = t:start(req("/status?code=201"))
    assert.is_true(second > first)
    local status, err = t:finish(first)
    assert.is_nil(status)
    assert.equal("RequestAbandoned", err.code)
    assert.equal(201, (t:finish(second)))
    local s2, e2 = t:finish(t:start(req("/slow?s=0.2")) - 1)
    assert.is_nil(s2)
    assert.equal("RequestAbandoned", e2.code)
    assert.equal(200, (t:request(req("/status?code=200"))))
    t:close()
  end)

  it("raise on misuse with the same messages as request", function()
    local t = core.http_new()
    assert.has.error(function() t:start { method = "GET" } end,
      "bad argument #1 to 'start' (field 'url' must be a string)")
    assert.has.error(function() t:finish({}) end,
      "bad argument #1 to 'finish' (number expected, got table)")
    t:close()
    assert.has.error(function() t:start(req("/status")) end, "transport is closed")
    assert.has.error(function() t:finish(1) end, "transport is closed")
  end)
end)

describe("handle:cancel", function()
  it("abandons the request in flight (only the given ticket's) and says whether there was one", function()
    local t = core.http_new { timeout = 5 }
    assert.is_false(t:cancel())
    local ticket = t:start(req("/slow?s=0.2"))
    assert.is_false(t:cancel(ticket + 1))
    assert.is_true(t:cancel(ticket))
    assert.is_false(t:cancel(ticket))
    local status, err = t:finish(ticket)
    assert.is_nil(status)
    assert.equal("RequestAbandoned", err.code)
    assert.equal(200, (t:request(req("/status?code=200"))))
    t:close()
    assert.is_false(t:cancel())
  end)

  it("leaves nothing behind when a handle is closed or collected with a request in flight", function()
    for i = 1, 8 do
      local t = core.http_new { timeout = 5 }
      t:start(req("/status?code=200"))
      if i % 2 == 0 then t:close() end
    end
    collectgarbage()
    collectgarbage()
    local t = core.http_new { timeout = 5 }
    assert.equal(200, (t:request(req("/status?code=200"))))
    t:close()
  end)
end)

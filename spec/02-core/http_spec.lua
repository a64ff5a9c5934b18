-- The libcurl transport of healthimaging.core, against a real local HTTP/1.1
-- server (spec/support/http_server.py) started for this file.
-- luacheck: std +busted
local core = require "healthimaging.core"
local cjson = require "cjson"
local test_server = require "support.test_server"

local server

-- Wall-clock seconds with 10 ms resolution (os.time is too coarse).
local function now()
  local f = assert(io.open("/proc/uptime"))
  local t = f:read("n")
  f:close()
  return t
end

-- Number of file descriptors this process has open: a leaked curl handle
-- keeps its socket, so the count shows leaks that Lua's heap cannot.
local function open_fds()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  local ls = assert(io.popen("ls /proc/" .. pid .. "/fd"))
  local n = 0
  for _ in ls:lines() do n = n + 1 end
  ls:close()
  return n
end

local function get(t, path)
  return t:request { method = "GET", url = server.base .. path }
end

setup(function()
  server = test_server.start()
end)

teardown(function()
  if server then server.stop() end
end)

describe("core.http_new", function()
  it("returns a transport handle that prints as healthimaging.http (0x...)", function()
    local t = core.http_new()
    assert.matches("^healthimaging%.http %(0x%x+%)$", tostring(t))
    assert.matches("^healthimaging%.http %(0x%x+%)$", tostring(core.http_new {
      timeout = 2.5, connect_timeout = 0.25, verbose = false, max_response_bytes = 10 }))
  end)

  local misuse = {
    { "x", "bad argument #1 to 'http_new' (table expected, got string)" },
    { { timeout = 0 }, "bad argument #1 to 'http_new' (field 'timeout' must be a positive number of seconds)" },
    { { timeout = "30" }, "bad argument #1 to 'http_new' (field 'timeout' must be a positive number of seconds)" },
    { { timeout = 0 / 0 }, "bad argument #1 to 'http_new' (field 'timeout' must be a positive number of seconds)" },
    { { connect_timeout = -1 },
      "bad argument #1 to 'http_new' (field 'connect_timeout' must be a positive number of seconds)" },
    { { verbose = "yes" }, "bad argument #1 to 'http_new' (field 'verbose' must be a boolean)" },
    { { max_response_bytes = 0 },
      "bad argument #1 to 'http_new' (field 'max_response_bytes' must be a positive integer)" },
    { { max_response_bytes = 1.5 },
      "bad argument #1 to 'http_new' (field 'max_response_bytes' must be a positive integer)" },
    { { ca_bundle = 1 }, "bad argument #1 to 'http_new' (field 'ca_bundle' must be a string)" },
    { { proxy = true }, "bad argument #1 to 'http_new' (field 'proxy' must be a string)" },
  }
  for i, case in ipairs(misuse) do
    it("refuses bad options at once (case " .. i .. ")", function()
      assert.has.error(function() core.http_new(case[1]) end, case[2])
    end)
  end
end)

describe("handle:request", function()
  local t
  before_each(function() t = core.http_new { timeout = 10 } end)
  after_each(function() t:close() end)

  it("returns the status as an integer, the headers and the body", function()
    local status, headers, body = get(t, "/status?code=200")
    assert.equal(200, status)
    assert.equal("integer", math.type(status))
    assert.equal("10", headers["content-length"])
    assert.equal("status 200", body)
  end)

  it("returns 404 and 500 as statuses, not as errors", function()
    for _, code in ipairs { 404, 500, 503 } do
      local status, _, body = get(t, "/status?code=" .. code)
      assert.equal(code, status)
      assert.equal("status " .. code, body)
    end
  end)

  it("lowercases header names, trims values and joins repeated headers with ', '", function()
    local status, headers = get(t, "/repeat")
    assert.equal(200, status)
    assert.equal("first, second, third", headers["x-multi"])
    assert.equal("padded value", headers["x-padded"])
    assert.equal("Value Kept", headers["x-mixed-case"])
    assert.is_nil(headers["X-Multi"])
  end)

  it("returns only the final response's headers after a 1xx interim response", function()
    local status, headers, body = get(t, "/interim")
    assert.equal(200, status)
    assert.equal("yes", headers["x-final"])
    assert.is_nil(headers["x-interim"])
    assert.equal("final", body)
  end)

  it("does not follow redirects", function()
    local status, headers = get(t, "/redirect")
    assert.equal(302, status)
    assert.equal("/status?code=200", headers.location)
  end)

  it("returns a binary body byte for byte, NULs included", function()
    local bytes = {}
    for b = 0, 255 do bytes[#bytes + 1] = string.char(b) end
    local expected = table.concat(bytes):rep(2)
    local status, _, body = get(t, "/binary")
    assert.equal(200, status)
    assert.equal(#expected, #body)
    assert.equal(expected, body)
  end)

  it("sends a binary POST body exactly and gets it echoed back", function()
    local bytes = {}
    for b = 255, 0, -1 do bytes[#bytes + 1] = string.char(b) end
    local sent = "\0head\0" .. table.concat(bytes) .. "\0\r\n\0tail"
    local status, headers, body = t:request { method = "POST", url = server.base .. "/echo", body = sent }
    assert.equal(200, status)
    assert.equal("POST", headers["x-echo-method"])
    assert.equal(tostring(#sent), headers["x-echo-length"])
    assert.equal(sent, body)
  end)

  it("sends only the headers it is given, plus Host and Content-Length", function()
    local _, _, body = get(t, "/headers")
    assert.same({ { "Host", "127.0.0.1:" .. server.port } }, cjson.decode(body))

    _, _, body = t:request {
      method = "POST", url = server.base .. "/headers", body = "{}",
      headers = { { "Host", "medical-imaging.test" }, { "Content-Type", "application/json" },
                  { "X-Amz-Target", "x" }, { "X-Empty", "" } },
    }
    assert.same({
      { "Host", "medical-imaging.test" }, { "Content-Type", "application/json" },
      { "X-Amz-Target", "x" }, { "X-Empty", "" }, { "Content-Length", "2" },
    }, cjson.decode(body))
  end)

  it("resets the method between requests on one handle", function()
    local cases = {
      { { method = "POST", body = "abc" }, "POST", "abc" },
      { { method = "GET" }, "GET", "" },
      { { method = "POST" }, "POST", "" },
      { { method = "PUT", body = "put body" }, "PUT", "put body" },
      { { method = "DELETE" }, "DELETE", "" },
      { { method = "GET", body = "odd but allowed" }, "GET", "odd but allowed" },
      { { method = "PATCH", body = "" }, "PATCH", "" },
      { { method = "GET" }, "GET", "" },
    }
    for _, case in ipairs(cases) do
      local req = case[1]
      req.url = server.base .. "/echo"
      local status, headers, body = t:request(req)
      assert.equal(200, status)
      assert.equal(case[2], headers["x-echo-method"])
      assert.equal(case[3], body)
    end
  end)

  it("answers HEAD without a body and then GETs normally again", function()
    local status, headers, body = t:request { method = "HEAD", url = server.base .. "/status?code=200" }
    assert.equal(200, status)
    assert.equal("10", headers["content-length"])
    assert.equal("", body)
    status, headers, body = get(t, "/status?code=200")
    assert.equal(200, status)
    assert.equal("10", headers["content-length"])
    assert.equal("status 200", body)
  end)

  it("keeps the connection alive: 20 requests through one handle use 1 TCP connection", function()
    local body
    for _ = 1, 20 do
      local status
      status, _, body = get(t, "/conn?tag=keepalive")
      assert.equal(200, status)
    end
    assert.equal("1", body)
  end)

  it("uses a new connection per handle", function()
    local other = core.http_new()
    assert.equal("1", select(3, get(t, "/conn?tag=two-handles")))
    assert.equal("2", select(3, get(other, "/conn?tag=two-handles")))
    other:close()
  end)

  it("goes through the proxy it is given", function()
    local p = core.http_new { proxy = server.base }
    local status, headers, body = p:request { method = "GET", url = "http://example.invalid/through" }
    assert.equal(200, status)
    assert.equal("yes", headers["x-proxied"])
    assert.equal("http://example.invalid/through", body)
    p:close()
  end)

  it("verifies TLS against the ca_bundle it is given", function()
    assert.is_string(server.tls_base, "the test server could not make a TLS certificate (openssl missing)")
    local s = core.http_new { ca_bundle = server.cert }
    local status, _, body = s:request { method = "GET", url = server.tls_base .. "/status?code=200" }
    assert.equal(200, status)
    assert.equal("status 200", body)
    s:close()
  end)

  it("accepts a body exactly max_response_bytes long", function()
    local s = core.http_new { max_response_bytes = 1000 }
    local status, _, body = s:request { method = "GET", url = server.base .. "/bytes?n=1000" }
    assert.equal(200, status)
    assert.equal(("x"):rep(1000), body)
  end)

  it("traces with verbose = true but redacts secrets and bodies", function()
    local out = assert(io.popen("lua5.4 spec/support/http_child.lua verbose " .. server.port .. " 2>&1"))
    local text = out:read("a")
    out:close()
    assert.matches("ok 200", text, 1, true)
    assert.matches("> POST /echo HTTP/1.1", text, 1, true)
    assert.matches("> Authorization: [redacted]", text, 1, true)
    assert.matches("> X-Amz-Security-Token: [redacted]", text, 1, true)
    assert.matches("> X-Visible: shown", text, 1, true)
    assert.matches("> [18 bytes of body]", text, 1, true)
    assert.matches("< X-Echo-Method: POST", text, 1, true)
    assert.not_matches("secret", text, 1, true)
    assert.not_matches("patient-body-bytes", text, 1, true)
  end)
end)

describe("a transport failure comes back as nil, err", function()
  local function fails(opts, req)
    local t = core.http_new(opts)
    local status, err = t:request(req)
    t:close()
    assert.is_nil(status)
    assert.is_table(err)
    assert.is_string(err.message)
    assert.equal("integer", math.type(err.curl_code))
    return err
  end

  it("TimeoutError (retryable) from a slow endpoint, within the timeout", function()
    local started = now()
    local err = fails({ timeout = 0.5 }, {
      method = "POST", url = server.base .. "/slow?s=5", body = "patient-body",
      headers = { { "Authorization", "AWS4-HMAC-SHA256 Signature=topsecret" } },
    })
    local elapsed = now() - started
    assert.equal("TimeoutError", err.code)
    assert.is_true(err.retryable)
    assert.equal(28, err.curl_code)
    assert.is_true(elapsed < 2, "took " .. elapsed .. " s")
    assert.not_matches("topsecret", err.message, 1, true)
    assert.not_matches("patient", err.message, 1, true)
  end)

  it("leaves the handle usable after a timeout", function()
    local t = core.http_new { timeout = 0.3 }
    assert.is_nil((get(t, "/slow?s=2")))
    assert.equal(200, (get(t, "/status?code=200")))
    t:close()
  end)

  it("ConnectionError (retryable) from a port nobody listens on", function()
    local port = select(3, get(core.http_new(), "/closed-port"))
    local err = fails({}, { method = "GET", url = "http://127.0.0.1:" .. port .. "/" })
    assert.equal("ConnectionError", err.code)
    assert.is_true(err.retryable)
    assert.equal(7, err.curl_code)
  end)

  local dropped = {
    { "/nothing", 52, "a connection closed without a response" },
    { "/partial", 18, "a body shorter than its Content-Length" },
    { "/reset", 56, "a connection reset" },
  }
  for _, case in ipairs(dropped) do
    it("ConnectionError (retryable) from " .. case[3], function()
      local err = fails({}, { method = "GET", url = server.base .. case[1] })
      assert.equal("ConnectionError", err.code)
      assert.is_true(err.retryable)
      assert.equal(case[2], err.curl_code)
    end)
  end

  it("ResolveError (not retryable) from a host under .invalid", function()
    local err = fails({}, { method = "GET", url = "http://nowhere.invalid/" })
    assert.equal("ResolveError", err.code)
    assert.is_false(err.retryable)
    assert.equal(6, err.curl_code)
  end)

  it("ResolveError from a proxy under .invalid", function()
    local err = fails({ proxy = "http://proxy.invalid:3128" }, { method = "GET", url = server.base .. "/status" })
    assert.equal("ResolveError", err.code)
    assert.is_false(err.retryable)
    assert.equal(5, err.curl_code)
  end)

  it("TLSError (not retryable) when https meets a plain-HTTP port: the handshake fails", function()
    local err = fails({}, { method = "GET", url = "https://127.0.0.1:" .. server.port .. "/status" })
    assert.equal("TLSError", err.code)
    assert.is_false(err.retryable)
    assert.equal(35, err.curl_code)   -- CURLE_SSL_CONNECT_ERROR
    assert.matches("^TLS handshake failed %(peer not verified%): ", err.message)
  end)

  it("TLSError when the server's certificate is not trusted: verification failed", function()
    assert.is_string(server.tls_base, "the test server could not make a TLS certificate (openssl missing)")
    local err = fails({}, { method = "GET", url = server.tls_base .. "/status" })
    assert.equal("TLSError", err.code)
    assert.is_false(err.retryable)
    assert.equal(60, err.curl_code)   -- CURLE_PEER_FAILED_VERIFICATION
    assert.matches("^TLS verification failed: ", err.message)
  end)

  it("TLSError when the ca_bundle cannot be read", function()
    assert.is_string(server.tls_base, "the test server could not make a TLS certificate (openssl missing)")
    local err = fails({ ca_bundle = "/nonexistent/ca.pem" }, { method = "GET", url = server.tls_base .. "/status" })
    assert.equal("TLSError", err.code)
    assert.equal(77, err.curl_code)   -- CURLE_SSL_CACERT_BADFILE
    assert.matches("^TLS verification failed: ", err.message)
  end)

  it("ResponseTooLarge (not retryable) when the body passes max_response_bytes", function()
    local err = fails({ max_response_bytes = 1000 }, { method = "GET", url = server.base .. "/bytes?n=5000" })
    assert.equal("ResponseTooLarge", err.code)
    assert.is_false(err.retryable)
    assert.equal("response exceeds max_response_bytes (1000)", err.message)
  end)

  it("ResponseTooLarge when the headers alone pass max_response_bytes", function()
    local err = fails({ max_response_bytes = 50 }, { method = "GET", url = server.base .. "/status?code=200" })
    assert.equal("ResponseTooLarge", err.code)
  end)

  local refused = {
    { "ftp://127.0.0.1/file", 1, "an ftp:// URL" },
    { "file:///etc/passwd", 1, "a file:// URL" },
    { "http://[::1", 3, "a malformed URL" },
  }
  for _, case in ipairs(refused) do
    it("HTTPClientError (not retryable) for " .. case[3], function()
      local err = fails({}, { method = "GET", url = case[1] })
      assert.equal("HTTPClientError", err.code)
      assert.is_false(err.retryable)
      assert.equal(case[2], err.curl_code)
    end)
  end

  it("HTTPClientError when curl refuses an option (a URL over curl's 8 MB limit)", function()
    local err = fails({}, { method = "GET", url = server.base .. "/" .. ("a"):rep(9000000) })
    assert.equal("HTTPClientError", err.code)
    assert.equal(43, err.curl_code)   -- CURLE_BAD_FUNCTION_ARGUMENT
    assert.equal("A libcurl function was given a bad argument", err.message)
  end)

  it("HTTPClientError when memory runs out while receiving, without crashing", function()
    -- A child process with a 300 MB address space asks for a 4 GB body.
    local out = assert(io.popen("ulimit -v 300000; lua5.4 spec/support/http_child.lua oom "
      .. server.port .. " 2>&1"))
    local text = out:read("a")
    local ok = out:close()
    assert.is_true(ok, text)
    assert.equal("err HTTPClientError out of memory while receiving the response\n", text)
  end)
end)

describe("misuse of handle:request raises at once", function()
  local t
  setup(function() t = core.http_new() end)

  local url = "http://127.0.0.1:1/"
  local cases = {
    { "x", "bad argument #1 to 'request' (table expected, got string)" },
    { { url = url }, "bad argument #1 to 'request' (field 'method' must be a string)" },
    { { method = "GET\r\nX-Injected: 1", url = url },
      "bad argument #1 to 'request' (field 'method' must be an HTTP token)" },
    { { method = "" , url = url }, "bad argument #1 to 'request' (field 'method' must be an HTTP token)" },
    { { method = "GET" }, "bad argument #1 to 'request' (field 'url' must be a string)" },
    { { method = "GET", url = url .. "\r\nX-Injected: 1" },
      "bad argument #1 to 'request' (field 'url' contains CR, LF or NUL)" },
    { { method = "GET", url = url .. "\0.evil" }, "bad argument #1 to 'request' (field 'url' contains CR, LF or NUL)" },
    { { method = "POST", url = url, body = 5 }, "bad argument #1 to 'request' (field 'body' must be a string)" },
    { { method = "GET", url = url, headers = "Host: x" },
      "bad argument #1 to 'request' (field 'headers' must be a table)" },
    { { method = "GET", url = url, headers = { "Host: x" } },
      "bad argument #1 to 'request' (field 'headers' entry 1 must be a {name, value} pair of strings)" },
    { { method = "GET", url = url, headers = { { "Host", "x" }, { "X-Only-Name" } } },
      "bad argument #1 to 'request' (field 'headers' entry 2 must be a {name, value} pair of strings)" },
    { { method = "GET", url = url, headers = { { "X-Number", 5 } } },
      "bad argument #1 to 'request' (field 'headers' entry 1 must be a {name, value} pair of strings)" },
    { { method = "GET", url = url, headers = { { "X-Ok", "1" }, { "X-Bad", "v\r\nX-Injected: 1" } } },
      "bad argument #1 to 'request' (field 'headers' entry 2 contains CR, LF or NUL)" },
    { { method = "GET", url = url, headers = { { "X-Bad\nX-Injected", "1" } } },
      "bad argument #1 to 'request' (field 'headers' entry 1 contains CR, LF or NUL)" },
    { { method = "GET", url = url, headers = { { "X-Nul", "a\0b" } } },
      "bad argument #1 to 'request' (field 'headers' entry 1 contains CR, LF or NUL)" },
    { { method = "GET", url = url, headers = { { "Bad Name", "v" } } },
      "bad argument #1 to 'request' (field 'headers' entry 1 has an invalid name)" },
    { { method = "GET", url = url, headers = { { "", "v" } } },
      "bad argument #1 to 'request' (field 'headers' entry 1 has an invalid name)" },
  }
  for i, case in ipairs(cases) do
    it("with a message naming the field (case " .. i .. ")", function()
      assert.has.error(function() t:request(case[1]) end, case[2])
    end)
  end

  it("when called on something that is not a transport", function()
    assert.has.error(function() t.request({}, { method = "GET", url = url }) end,
      "bad argument #1 to 'request' (healthimaging.http expected, got table)")
  end)

  it("and leaves the handle usable afterwards", function()
    assert.has.error(function()
      t:request { method = "GET", url = url, headers = { { "X-Ok", "1" }, { "X-Bad", "\n" } } }
    end)
    assert.equal(200, (t:request { method = "GET", url = server.base .. "/status?code=200",
                                   headers = { { "X-Ok", "1" } } }))
  end)
end)

describe("the life of a transport handle", function()
  it("close() frees it early and can be called again", function()
    local t = core.http_new()
    assert.equal(200, (get(t, "/status?code=200")))
    t:close()
    t:close()
    assert.matches("^healthimaging%.http %(0x%x+%)$", tostring(t))
  end)

  it("raises 'transport is closed' when used after close()", function()
    local t = core.http_new()
    t:close()
    assert.has.error(function() get(t, "/status") end, "transport is closed")
  end)

  it("is closed at the end of a `local <close>` scope", function()
    local outer
    do
      local t <close> = core.http_new()
      outer = t
      assert.equal(200, (get(t, "/status?code=200")))
    end
    assert.has.error(function() get(outer, "/status") end, "transport is closed")
  end)

  it("is collected with its connection when unreachable: many handles leak no descriptors", function()
    get(core.http_new(), "/status?code=200")  -- warm up libcurl and OpenSSL
    collectgarbage()
    collectgarbage()
    local before = open_fds()
    for _ = 1, 3 do
      for _ = 1, 100 do
        local t = core.http_new()
        assert.equal(200, (get(t, "/conn?tag=many")))
      end
      collectgarbage()
      collectgarbage()
    end
    assert.equal(before, open_fds())
  end)
end)

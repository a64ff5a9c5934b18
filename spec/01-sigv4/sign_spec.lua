-- core.sign as a caller sees it: its options, its refusal of misuse with
-- exact messages, inputs that must not crash it, and what its result may
-- never contain (the secret key, the signing key).
-- luacheck: std +busted
local core = require "healthimaging.core"

local ipairs, pairs, pcall, type = ipairs, pairs, pcall, type
local string_rep = string.rep

local SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

-- A valid request; `over` replaces fields (use false to drop one).
local function req(over)
  local r = {
    method = "GET", path = "/", headers = { { "Host", "example.amazonaws.com" } },
    access_key_id = "AKIDEXAMPLE", secret_access_key = SECRET,
    region = "us-east-1", service = "service", amz_date = "20150830T123600Z",
  }
  for k, v in pairs(over or {}) do
    if v == false and k ~= "normalize_path" and k ~= "sign_body" and k ~= "omit_session_token" then
      r[k] = nil
    else
      r[k] = v
    end
  end
  return r
end

-- Every string in a result, nested tables included.
local function strings_of(t, out)
  out = out or {}
  for _, v in pairs(t) do
    if type(v) == "string" then out[#out + 1] = v
    elseif type(v) == "table" then strings_of(v, out) end
  end
  return out
end

describe("core.sign", function()
  describe("options", function()
    it("hashes the body, or uses payload_hash as given", function()
      local empty = assert(core.sign(req()))
      assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", empty.payload_hash)
      local abc = assert(core.sign(req({ body = "abc" })))
      assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", abc.payload_hash)
      local given = string_rep("0f", 32)
      local r = assert(core.sign(req({ body = "ignored", payload_hash = given })))
      assert.equal(given, r.payload_hash)
      assert.equal(given, r.canonical_request:match("\n(%x+)$"))
    end)

    it("adds and signs x-amz-content-sha256 when sign_body is set", function()
      local r = assert(core.sign(req({ body = "abc", sign_body = true })))
      assert.equal("host;x-amz-content-sha256;x-amz-date", r.signed_headers)
      assert.same({ { "X-Amz-Date", "20150830T123600Z" }, { "x-amz-content-sha256", r.payload_hash } }, r.headers)
      assert.truthy(r.canonical_request:find("\nx-amz-content-sha256:" .. r.payload_hash .. "\n", 1, true))
    end)

    it("signs the session token, or only returns it with omit_session_token", function()
      local signed = assert(core.sign(req({ session_token = "tok" })))
      assert.equal("host;x-amz-date;x-amz-security-token", signed.signed_headers)
      local after = assert(core.sign(req({ session_token = "tok", omit_session_token = true })))
      assert.equal("host;x-amz-date", after.signed_headers)
      for _, r in ipairs({ signed, after }) do
        assert.same({ { "X-Amz-Date", "20150830T123600Z" }, { "X-Amz-Security-Token", "tok" } }, r.headers)
      end
    end)

    it("orders the headers to add: date, payload hash, token", function()
      local r = assert(core.sign(req({ session_token = "tok", sign_body = true })))
      assert.same({ "X-Amz-Date", "x-amz-content-sha256", "X-Amz-Security-Token" },
        { r.headers[1][1], r.headers[2][1], r.headers[3][1] })
    end)

    it("treats an empty session token as none", function()
      local r = assert(core.sign(req({ session_token = "" })))
      assert.equal("host;x-amz-date", r.signed_headers)
      assert.equal(1, #r.headers)
    end)

    it("leaves the path alone when normalize_path is false", function()
      assert.equal("//a/../b", assert(core.sign(req({ path = "//a/../b", normalize_path = false })))
        .canonical_request:match("^GET\n([^\n]*)"))
      assert.equal("/b", assert(core.sign(req({ path = "//a/../b" }))).canonical_request:match("^GET\n([^\n]*)"))
    end)

    -- The access key id is not signed: it only shows in the Authorization header.
    it("is deterministic and every input changes the Authorization header", function()
      local base = assert(core.sign(req())).authorization
      assert.equal(base, assert(core.sign(req())).authorization)
      for _, over in ipairs({
        { method = "POST" }, { path = "/x" }, { query = "a=1" }, { body = "x" },
        { headers = { { "Host", "example.amazonaws.com" }, { "X-A", "1" } } },
        { access_key_id = "AKID2" }, { secret_access_key = SECRET .. "x" },
        { region = "eu-west-1" }, { service = "medical-imaging" },
        { amz_date = "20150830T123601Z" }, { session_token = "t" },
      }) do
        assert.are_not.equal(base, assert(core.sign(req(over))).authorization)
      end
    end)
  end)

  describe("misuse raises at once, naming the field", function()
    local CASES = {
      { "no table", nil, "bad argument #1 to 'sign' (table expected, got nil)" },
      { "a missing region", { region = false }, "bad argument #1 to 'sign' (field 'region' must be a string)" },
      { "a numeric region", { region = 1 }, "bad argument #1 to 'sign' (field 'region' must be a string)" },
      { "a missing method", { method = false }, "bad argument #1 to 'sign' (field 'method' must be a string)" },
      { "a method with a space", { method = "GET /" },
        "bad argument #1 to 'sign' (field 'method' must be non-empty, without spaces or control characters)" },
      { "a missing path", { path = false }, "bad argument #1 to 'sign' (field 'path' must be a string)" },
      { "a table as query", { query = {} }, "bad argument #1 to 'sign' (field 'query' must be a string)" },
      { "a table as body", { body = {} }, "bad argument #1 to 'sign' (field 'body' must be a string)" },
      { "a missing secret", { secret_access_key = false },
        "bad argument #1 to 'sign' (field 'secret_access_key' must be a string)" },
      { "an empty secret", { secret_access_key = "" },
        "bad argument #1 to 'sign' (field 'secret_access_key' must not be empty)" },
      { "a numeric session token", { session_token = 5 },
        "bad argument #1 to 'sign' (field 'session_token' must be a string)" },
      { "a session token with CR LF", { session_token = "tok\r\nX-Evil: 1" },
        "bad argument #1 to 'sign' (field 'session_token' must not contain control characters)" },
      { "a region with a slash", { region = "us/east-1" },
        "bad argument #1 to 'sign' (field 'region' must be non-empty, without '/', spaces or control characters)" },
      { "an empty service", { service = "" },
        "bad argument #1 to 'sign' (field 'service' must be non-empty, without '/', spaces or control characters)" },
      { "an access key id with a space", { access_key_id = "AKID X" },
        "bad argument #1 to 'sign' (field 'access_key_id' must be non-empty, "
          .. "without '/', spaces or control characters)" },
      { "an ISO 8601 amz_date", { amz_date = "2015-08-30T12:36:00Z" },
        "bad argument #1 to 'sign' (field 'amz_date' must look like YYYYMMDDTHHMMSSZ)" },
      { "an amz_date in month 13", { amz_date = "20151330T123600Z" },
        "bad argument #1 to 'sign' (field 'amz_date' must look like YYYYMMDDTHHMMSSZ)" },
      { "a numeric amz_date", { amz_date = 20150830 },
        "bad argument #1 to 'sign' (field 'amz_date' must be a string)" },
      { "a short payload_hash", { payload_hash = "abc" },
        "bad argument #1 to 'sign' (field 'payload_hash' must be 64 lowercase hex digits)" },
      { "an uppercase payload_hash", { payload_hash = string_rep("AB", 32) },
        "bad argument #1 to 'sign' (field 'payload_hash' must be 64 lowercase hex digits)" },
      { "a string normalize_path", { normalize_path = "yes" },
        "bad argument #1 to 'sign' (field 'normalize_path' must be a boolean)" },
      { "a numeric sign_body", { sign_body = 1 }, "bad argument #1 to 'sign' (field 'sign_body' must be a boolean)" },
      { "missing headers", { headers = false }, "bad argument #1 to 'sign' (field 'headers' must be a table)" },
      { "a header as a string", { headers = { "Host: x" } },
        "bad argument #1 to 'sign' (field 'headers' entry #1 must be a {name, value} table)" },
      { "a header without a value", { headers = { { "Host", "h" }, { "X-A" } } },
        "bad argument #1 to 'sign' (field 'headers' entry #2 value must be a string)" },
      { "a header with a numeric name", { headers = { { 1, "h" } } },
        "bad argument #1 to 'sign' (field 'headers' entry #1 name must be a string)" },
      { "an X-Amz-Date header", { headers = { { "x-amz-DATE", "20150830T123600Z" } } },
        "bad argument #1 to 'sign' (field 'headers' must not contain X-Amz-Date (the signer adds it))" },
      { "a token header next to session_token", { session_token = "t", headers = { { "X-Amz-Security-Token", "t" } } },
        "bad argument #1 to 'sign' (field 'headers' must not contain X-Amz-Security-Token when session_token is set)" },
      { "a payload hash header next to sign_body",
        { sign_body = true, headers = { { "X-Amz-Content-Sha256", "x" } } },
        "bad argument #1 to 'sign' (field 'headers' must not contain x-amz-content-sha256 when sign_body is set)" },
    }
    for _, c in ipairs(CASES) do
      it("for " .. c[1], function()
        local arg = c[2] and req(c[2]) or nil
        assert.has_error(function() core.sign(arg) end, c[3])
      end)
    end

    it("never puts the secret in the message", function()
      local ok, err = pcall(core.sign, req({ region = "us/east-1" }))
      assert.is_false(ok)
      assert.is_nil(err:find(SECRET, 1, true))
    end)

    it("for the stage functions too", function()
      assert.has_error(function() core._sigv4.sha256_hex() end,
        "bad argument #1 to 'sha256_hex' (string expected, got no value)")
      assert.has_error(function() core._sigv4.canonical_headers({ { "Host" } }) end,
        "bad argument #1 to 'canonical_headers' (headers entry #1 value must be a string)")
    end)
  end)

  describe("odd inputs sign without crashing", function()
    it("embedded NUL bytes in every string field", function()
      local r = assert(core.sign(req({
        path = "/a\0b", query = "k\0=v\0", body = "x\0y", secret_access_key = "s\0s",
        headers = { { "Host", "h\0h" }, { "X-N\0", "v\0" } },
      })))
      assert.equal(1, (r.canonical_request:find(
        "GET\n/a%00b\nk%00=v%00\nhost:h\0h\nx-amz-date:20150830T123600Z\nx-n\0:v\0\n\nhost;x-amz-date;x-n\0\n",
        1, true)))
      assert.equal(64, #r.signature)
    end)

    it("invalid UTF-8 in the path, query and headers", function()
      local r = assert(core.sign(req({
        path = "/\xff\xc3", query = "\xfe=\x80", headers = { { "Host", "\xc3\x28" } },
      })))
      assert.equal(1, (r.canonical_request:find("GET\n/%FF%C3\n%FE=%80\nhost:\xc3\x28\n", 1, true)))
    end)

    it("a '%' not followed by two hex digits in the query", function()
      local r = assert(core.sign(req({ query = "a=%zz&b=%&c=%4" })))
      assert.equal("a=%25zz&b=%25&c=%254", r.canonical_request:match("^GET\n/\n([^\n]*)"))
    end)

    it("a 1 MB header value and a 1 MB body", function()
      local big = string_rep("v  ", 349526)
      local r = assert(core.sign(req({
        headers = { { "Host", "h" }, { "X-Big", big } }, body = string_rep("b", 1048576),
      })))
      assert.truthy(r.canonical_request:find("\nx-big:" .. string_rep("v ", 349525) .. "v\n", 1, true))
    end)

    it("ten thousand headers", function()
      local headers = {}
      for i = 1, 10000 do headers[i] = { ("X-H%05d"):format(i), tostring(i) } end
      local r = assert(core.sign(req({ headers = headers })))
      assert.equal(10001, #r.signed_headers:gsub("[^;]", "") + 1)
    end)

    it("an empty path, signed as /", function()
      assert.equal("/", assert(core.sign(req({ path = "" }))).canonical_request:match("^GET\n([^\n]*)"))
    end)
  end)

  describe("its result", function()
    it("never contains the secret key or the signing key", function()
      local secret = "Zq8+/SECRET/never-in-output=="
      local key = core._sigv4.signing_key_hex(secret, "20150830", "us-east-1", "service")
      local r = assert(core.sign(req({
        secret_access_key = secret, session_token = "tok", sign_body = true, body = secret .. "?",
        -- even a body that starts with the secret is only hashed
      })))
      for _, s in ipairs(strings_of(r)) do
        assert.is_nil(s:find(secret, 1, true))
        assert.is_nil(s:find(key, 1, true))
      end
    end)

    it("holds every documented field", function()
      local r = assert(core.sign(req()))
      for _, k in ipairs({ "authorization", "canonical_request", "string_to_sign",
                           "signed_headers", "signature", "payload_hash" }) do
        assert.is_string(r[k])
      end
      assert.is_table(r.headers)
      assert.equal("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        .. "SignedHeaders=host;x-amz-date, Signature=" .. r.signature, r.authorization)
    end)
  end)
end)

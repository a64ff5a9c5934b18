-- fuzz/sigv4_target.lua: SigV4 canonicalization, for fuzz/harness.c.
-- An input is fields separated by byte 0x1F: path, query, method, body,
-- session token, flags, then header name, value, name, value, ... Each
-- stage of core._sigv4 and core.sign get them; sign may raise its
-- documented misuse errors, nothing else may raise (abort).

local core = require "healthimaging.core"

local S = core._sigv4
local type = type
local ipairs = ipairs
local pcall = pcall
local error = error
local tostring = tostring
local byte = string.byte
local find = string.find
local sub = string.sub
local gsub = string.gsub
local gmatch = string.gmatch
local lower = string.lower
local concat = table.concat
local sort = table.sort

local SEP = "\31"
local AMZ_DATE = "20240102T030405Z"
-- The SigV4 test suite's example secret: checked never to appear in output.
local SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

-- core/hi_sigv4.c ALWAYS_UNSIGNABLE, restated here as the oracle.
local UNSIGNABLE = {
  authorization = true, connection = true, expect = true, ["keep-alive"] = true,
  ["proxy-authorization"] = true, te = true, trailer = true, ["transfer-encoding"] = true,
  upgrade = true, ["user-agent"] = true, ["x-amzn-trace-id"] = true,
}

local function split(data)
  local fields, start = {}, 1
  while true do
    local i = find(data, SEP, start, true)
    if not i then
      fields[#fields + 1] = sub(data, start)
      return fields
    end
    fields[#fields + 1] = sub(data, start, i - 1)
    start = i + 1
  end
end

-- Byte order, whatever the C locale says about strcoll.
local function bytes_less(a, b)
  local n = #a < #b and #a or #b
  for i = 1, n do
    local x, y = byte(a, i), byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Only unreserved bytes, the extra bytes allowed, and %XX with capitals.
local function check_encoded(s, extra, what)
  local rest = gsub(s, "%%%x%x", function(e)
    if find(e, "[a-f]") then error(what .. ": lowercase percent-encoding") end
    return ""
  end)
  if find(rest, "[^A-Za-z0-9%-%._~" .. extra .. "]") then
    error(what .. ": a byte is left unencoded")
  end
end

-- Returns the normalized and the raw canonical path.
local function check_uri(path)
  local u = S.canonical_uri(path)
  if type(u) ~= "string" or sub(u, 1, 1) ~= "/" then error("canonical_uri: not an absolute path") end
  check_encoded(u, "/", "canonical_uri")
  if find(u, "//", 1, true) then error("canonical_uri: an empty segment survived normalization") end
  for seg in gmatch(u, "[^/]+") do
    if seg == "." or seg == ".." then error("canonical_uri: a dot segment survived normalization") end
  end
  local raw = S.canonical_uri(path, false)
  if type(raw) ~= "string" or sub(raw, 1, 1) ~= "/" then error("canonical_uri: raw path not absolute") end
  check_encoded(raw, "/", "canonical_uri (not normalized)")
  return u, raw
end

-- Canonical form: sorted name=value pairs, and canonicalizing it again
-- changes nothing (every '=' and '&' inside a part is encoded).
local function check_query(query)
  local q = S.canonical_query(query)
  if type(q) ~= "string" then error("canonical_query: no string") end
  check_encoded(q, "=&", "canonical_query")
  if q ~= "" then
    local prev
    for piece in gmatch(q .. "&", "([^&]*)&") do
      local name, value = piece:match("^([^=]*)=([^=]*)$")
      if not name then error("canonical_query: a piece is not name=value") end
      if prev and bytes_less(name, prev[1]) then error("canonical_query: names are not sorted") end
      if prev and name == prev[1] and bytes_less(value, prev[2]) then
        error("canonical_query: values are not sorted")
      end
      prev = { name, value }
    end
  end
  if S.canonical_query(q) ~= q then error("canonical_query: not idempotent") end
  return q
end

-- Signed names: the distinct lowercase names minus the unsignable ones.
local function expected_signed(headers)
  local seen, names = {}, {}
  for _, h in ipairs(headers) do
    local n = gsub(h[1], "%u", lower)
    if not seen[n] and not UNSIGNABLE[n] then
      seen[n] = true
      names[#names + 1] = n
    end
  end
  sort(names, bytes_less)
  return concat(names, ";")
end

local function check_headers(headers)
  local block, signed = S.canonical_headers(headers)
  if type(block) ~= "string" or type(signed) ~= "string" then error("canonical_headers: no strings") end
  if signed ~= expected_signed(headers) then error("canonical_headers: wrong signed header list") end
end

return function(data)
  local f = split(data)
  local path, query, method, body, token = f[1], f[2] or "", f[3] or "POST", f[4] or "", f[5]
  local flags = byte(f[6] or "") or 0
  local headers = {}
  for i = 7, #f - 1, 2 do headers[#headers + 1] = { f[i], f[i + 1] } end

  local uri, raw_uri = check_uri(path)
  local q = check_query(query)
  check_headers(headers)
  S.sha256_hex(body)
  S.hmac_sha256_hex(path, body)
  S.string_to_sign(AMZ_DATE, query, body)

  local ok, res = pcall(core.sign, {
    method = method, path = path, query = query, body = body, headers = headers,
    access_key_id = "AKIDEXAMPLE", secret_access_key = SECRET, session_token = token,
    region = "us-east-1", service = "medical-imaging", amz_date = AMZ_DATE,
    normalize_path = flags % 2 == 0, sign_body = flags & 2 ~= 0, omit_session_token = flags & 4 ~= 0,
  })
  if not ok then
    if type(res) ~= "string" or not find(res, "^bad argument #1 to '[%w%.]*sign' %(") then
      error("sign raised something else than a misuse error: " .. tostring(res))
    end
    return
  end
  if type(res) ~= "table" then error("sign failed: " .. tostring(res)) end
  local creq = res.canonical_request
  local m, u, cq = creq:match("^([^\n]*)\n([^\n]*)\n([^\n]*)\n")
  if m ~= method or u ~= (flags % 2 == 0 and uri or raw_uri) or cq ~= q then
    error("sign: the canonical request does not start with method, canonical_uri, canonical_query")
  end
  if not find(res.signature, "^%x+$") or #res.signature ~= 64 then error("sign: bad signature") end
  -- Header values are signed verbatim: an input holding the secret is moot.
  if not find(data, SECRET, 1, true) then
    for _, s in ipairs { res.authorization, creq, res.string_to_sign } do
      if find(s, SECRET, 1, true) then error("sign: the secret key appears in its output") end
    end
  end
end

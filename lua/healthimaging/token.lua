-- healthimaging.token: the paginator's resume token in boto3's own format,
-- so a token made by Python resumes in Lua and the other way round: the
-- standard base64 of the JSON text that Python's json.dumps writes for
-- {"nextToken": ..., "boto_truncate_amount": N} (", " and ": " separators,
-- non-ASCII escaped as \uXXXX, keys in insertion order).

local core = require "healthimaging.core"

local type = type
local pairs = pairs
local tonumber = tonumber
local byte = string.byte
local char = string.char
local sub = string.sub
local format = string.format
local find = string.find
local concat = table.concat
local tointeger = math.tointeger
local utf8codes = utf8.codes
local utf8len = utf8.len
local match = string.match
local gsub = string.gsub

local _M = {}

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64_INDEX = {}
for i = 1, 64 do B64_INDEX[byte(B64, i)] = i - 1 end

-- Standard base64 with '=' padding (RFC 4648 section 4).
function _M.base64_encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1, c2 = n >> 18, (n >> 12) & 63
    local c3, c4 = (n >> 6) & 63, n & 63
    out[#out + 1] = sub(B64, c1 + 1, c1 + 1) .. sub(B64, c2 + 1, c2 + 1)
      .. (b and sub(B64, c3 + 1, c3 + 1) or "=") .. (c and sub(B64, c4 + 1, c4 + 1) or "=")
  end
  return concat(out)
end

-- Strict decoding: only the standard alphabet, length a multiple of 4,
-- padding only at the end. Returns nil for anything else.
function _M.base64_decode(s)
  if #s % 4 ~= 0 or find(s, "[^A-Za-z0-9+/=]") or find(s, "=[^=]") then return nil end
  local out = {}
  for i = 1, #s, 4 do
    local n, pad = 0, 0
    for j = i, i + 3 do
      local v = B64_INDEX[byte(s, j)]
      if v == nil then
        if j < i + 2 then return nil end
        pad = pad + 1
        v = 0
      elseif pad > 0 then
        return nil
      end
      n = n * 64 + v
    end
    local bytes = char(n >> 16, (n >> 8) & 255, n & 255)
    out[#out + 1] = sub(bytes, 1, 3 - pad)
  end
  return concat(out)
end

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r",
                  ["\t"] = "\\t", ["\b"] = "\\b", ["\f"] = "\\f" }

-- A JSON string as Python's json.dumps (ensure_ascii=True) writes it.
local function py_json_string(s)
  if not find(s, '[%c"\\\128-\255]') then return '"' .. s .. '"' end
  local out = {}
  for _, cp in utf8codes(s) do
    local c = cp < 128 and char(cp) or nil
    if c and ESCAPES[c] then
      out[#out + 1] = ESCAPES[c]
    elseif cp >= 0x20 and cp < 0x7f then
      out[#out + 1] = c
    elseif cp < 0x10000 then
      out[#out + 1] = format("\\u%04x", cp)
    else
      local v = cp - 0x10000
      out[#out + 1] = format("\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF))
    end
  end
  return '"' .. concat(out) .. '"'
end

--[[
Encodes a resume token.
Input: next_token (string or nil: boto3 writes null when a first page without
starting token was truncated), truncate (integer or nil).
Returns: the token string.
]]
function _M.encode(next_token, truncate)
  local json = '{"nextToken": ' .. (next_token and py_json_string(next_token) or "null")
  if truncate then json = json .. ', "boto_truncate_amount": ' .. format("%d", truncate) end
  return _M.base64_encode(json .. "}")
end

--[[
Base64 as Python's base64.b64decode reads it without validate=True (what
boto3's token decoder calls): bytes outside the alphabet (a line break, a
space) are skipped, a '=' before the third character of a quad is skipped,
and decoding stops once a quad's padding is complete. Returns nil where
Python raises (a last quad of 1 character, or of 2-3 without its padding).
]]
local function b64decode_lenient(s)
  local out, quad, pads, left = {}, 0, 0, 0
  for i = 1, #s do
    local c = byte(s, i)
    if c == 61 then  -- '='
      if quad >= 2 then
        pads = pads + 1
        if quad + pads >= 4 then return concat(out) end
      end
    else
      local v = B64_INDEX[c]
      if v then
        pads = 0
        if quad == 1 then
          out[#out + 1] = char(((left << 2) | (v >> 4)) & 255)
          v = v & 15
        elseif quad == 2 then
          out[#out + 1] = char(((left << 4) | (v >> 2)) & 255)
          v = v & 3
        elseif quad == 3 then
          out[#out + 1] = char(((left << 6) | v) & 255)
        end
        left = v
        quad = (quad + 1) % 4
      end
    end
  end
  if quad ~= 0 then return nil end
  return concat(out)
end

--[[
boto3's deprecated starting-token form, read as botocore does: the token
split at each "___"; two parts whose second is an integer for Python's
int() give (first part, that integer); two parts otherwise, or one, are the
whole raw token; more parts are an error. The part "None" means no token.
Returns: next_token, truncate, or nil, nil, message.
]]
local function decode_deprecated(s)
  local at = find(s, "___", 1, true)
  if not at then return s, 0 end
  local head, tail = sub(s, 1, at - 1), sub(s, at + 3)
  if find(tail, "___", 1, true) then
    return nil, nil, "the starting token has more than one '___' (boto3: bad starting token)"
  end
  -- int(): blanks around, a sign, ASCII digits with single '_' between them.
  local sign, digits = match(tail, "^%s*([+-]?)(%d[%d_]*)%s*$")
  if not digits or find(digits, "__", 1, true) or find(digits, "_$") then return s, 0 end
  if sign == "-" then return nil, nil, "the starting token has a negative truncate amount" end
  return head ~= "None" and head or nil, tointeger(tonumber((gsub(digits, "_", ""))))
end

--[[
Decodes a starting token as boto3 does: base64 (read leniently, as Python
does) of the UTF-8 text of a JSON object first; otherwise the deprecated
form "TOKEN___N" or a raw service token.
Returns: next_token (string or nil), truncate (integer, 0 when none), or
nil, nil, message for a token that cannot be used.
]]
function _M.decode(s)
  local raw = b64decode_lenient(s)
  local t = raw and utf8len(raw) and core.json_decode(raw, { boto_truncate_amount = true })
  -- boto3 reads a JSON list as a raw token, and fails on any other value
  -- (null included, which json_decode answers with nil).
  if (t ~= nil and not find(raw, "^[ \t\n\r]*[{[]")) or (raw and find(raw, "^[ \t\n\r]*null[ \t\n\r]*$")) then
    return nil, nil, "the starting token is base64 JSON that is not an object"
  end
  if type(t) == "table" and find(raw, "^[ \t\n\r]*{") then
    local nt, amount = t.nextToken, t.boto_truncate_amount or 0
    if (nt ~= nil and type(nt) ~= "string") or type(amount) ~= "number" or tointeger(amount) == nil
        or amount < 0 then
      return nil, nil, "the starting token has a bad nextToken or boto_truncate_amount"
    end
    for k in pairs(t) do
      if k ~= "nextToken" and k ~= "boto_truncate_amount" then
        return nil, nil, "the starting token has an unknown key"
      end
    end
    if nt == "None" then nt = nil end
    return nt, tointeger(amount)
  end
  return decode_deprecated(s)
end

return _M

-- fuzz/json_target.lua: the response decoding path, for fuzz/harness.c.
-- Each input is a response body. It is decoded as client.lua decodes a 2xx
-- answer (core.json_decode with the model's integer keys), then turned into
-- an error object as for a 4xx/5xx answer, with a status and headers taken
-- from the same bytes. Any raise here is a broken contract (abort).

local core = require "healthimaging.core"
local errors = require "healthimaging.errors"
local model = require "healthimaging.model"

local type = type
local pairs = pairs
local error = error
local tostring = tostring
local byte = string.byte
local sub = string.sub
local mtype = math.type
local tointeger = math.tointeger

local INT_KEYS = model.INTEGER_KEYS

-- Statuses that reach errors.from_response: anything but 2xx.
local function error_status(b)
  local s = 100 + (b or 0) * 2
  if s >= 200 and s < 300 then s = s + 300 end
  return s
end

--[[
Checks one decoded table: no JSON null is left (cjson's null is a light
userdata), an array has no holes after nulls were dropped, and a number
under an integer key is a Lua integer whenever it is integral and fits.
]]
local function check_table(t, depth)
  if depth > 70 then error("decoded nesting deeper than decode_max_depth") end
  local n, count, int_keys = #t, 0, 0
  for k, v in pairs(t) do
    count = count + 1
    if mtype(k) == "integer" then int_keys = int_keys + 1 end
    if type(v) == "userdata" then error("a JSON null survived decoding") end
    if type(k) == "string" and INT_KEYS[k] and mtype(v) == "float" and tointeger(v) then
      error("integer key " .. k .. " kept an integral float")
    end
    if type(v) == "table" then check_table(v, depth + 1) end
  end
  if int_keys > 0 and (int_keys ~= count or count ~= n) then
    error("a decoded array has holes or extra keys")
  end
end

return function(data)
  local v, msg = core.json_decode(data, INT_KEYS)
  if v == nil then
    if type(msg) ~= "string" then error("json_decode failed without a message") end
  elseif type(v) == "table" then
    check_table(v, 1)
    local text, emsg = core.json_encode(v)
    if text then
      if type(core.json_decode(text, INT_KEYS)) ~= "table" then
        error("a decoded table did not survive encode + decode")
      end
    elseif type(emsg) ~= "string" then
      error("json_encode failed without a message")
    end
  end

  local b1, b2, b3 = byte(data, 1, 3)
  local headers = {}
  if b2 and b2 % 2 == 0 then headers["x-amzn-errortype"] = sub(data, 2, 2 + b2 % 48) end
  if b3 and b3 % 3 == 0 then headers["x-amzn-requestid"] = sub(data, 3, 3 + b3 % 40) end
  local body = core.json_decode(data)
  local err = errors.from_response(error_status(b1), headers, body)
  if not errors.is_error(err) or type(err.code) ~= "string" or err.code == ""
      or type(err.message) ~= "string" or type(err.retryable) ~= "boolean" then
    error("from_response returned a malformed error object")
  end
  if type(tostring(err)) ~= "string" then error("tostring(err) is not a string") end
end

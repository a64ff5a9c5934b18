-- healthimaging.validate: checks request parameters against the model's
-- constraints before anything is sent, and returns a normalized copy
-- (timestamps as epoch seconds, integral floats as integers) that the
-- serializer can trust. Errors name the path and the rule, never the value:
-- a value may be patient data.

local model = require "healthimaging.model"
local errors = require "healthimaging.errors"
local time = require "healthimaging.time"

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local sort = table.sort
local concat = table.concat
local floor = math.floor
local huge = math.huge
local mtype = math.type
local tointeger = math.tointeger
local utf8len = utf8.len
local find = string.find
local format = string.format

local SHAPES = model.SHAPES

local _M = {}

local fail = errors.validation

-- Rounds epoch seconds to milliseconds, the precision of the JS SDK's Date
-- and of what cjson's 14 significant digits carry for current epochs.
local function to_millis(t)
  local r = floor(t * 1000 + 0.5) / 1000
  return tointeger(r) or r
end

local check -- forward: check(shape_name, value, path) -> normalized | nil, err

-- The member names of a shape, sorted, for error messages.
local function member_list(shape)
  local names = {}
  for name in pairs(shape.members) do names[#names + 1] = name end
  sort(names)
  return concat(names, ", ")
end

-- Member lists in error messages are names from the model, never values;
-- keys are never passed to tostring (a table key's __tostring could raise).
local function check_members(shape, value, path)
  if type(value) ~= "table" then
    return nil, fail(path, "must be a table (" .. shape.type .. "), got " .. type(value))
  end
  local keys = {}
  for k in pairs(value) do
    if type(k) ~= "string" then
      return nil, fail(path, "has a key that is not a member name (" .. type(k) .. ")")
    end
    keys[#keys + 1] = k
  end
  sort(keys)
  local out, set = {}, {}
  for _, k in ipairs(keys) do
    local member = shape.members[k]
    if not member then
      -- A key that is not a member name may be a value put in the wrong
      -- place (a patient id as a key): it is named only when it looks like
      -- a name, a misspelt member.
      local name = (#k <= 40 and find(k, "^[%a_]+$")) and k or "<a key that is not a member name>"
      return nil, fail(path == "" and name or (path .. "." .. name), "is not a member of this structure ("
        .. member_list(shape) .. ")")
    end
    local sub = path == "" and k or (path .. "." .. k)
    local v, err = check(member, value[k], sub)
    if err then return nil, err end
    out[k] = v
    set[#set + 1] = k
  end
  return out, nil, set
end

local function check_structure(shape, value, path)
  local out, err = check_members(shape, value, path)
  if err then return nil, err end
  for _, r in ipairs(shape.required or {}) do
    if out[r] == nil then
      return nil, fail(path == "" and r or (path .. "." .. r), "is required")
    end
  end
  return out
end

local function check_union(shape, value, path)
  local out, err, set = check_members(shape, value, path)
  if err then return nil, err end
  if #set ~= 1 then
    return nil, fail(path, format("must set exactly one member, got %d%s", #set,
      #set > 0 and (" (" .. concat(set, ", ") .. ")") or ""))
  end
  return out
end

local function check_list(shape, value, path)
  if type(value) ~= "table" then
    return nil, fail(path, "must be a list (a Lua sequence), got " .. type(value))
  end
  local n = #value
  local count = 0
  for k in pairs(value) do
    count = count + 1
    if mtype(k) ~= "integer" or k < 1 or k > n then
      return nil, fail(path, "must be a list (a Lua sequence), but has "
        .. (type(k) == "number" and ("the key " .. tostring(k)) or ("a key of type " .. type(k))))
    end
  end
  if count ~= n then return nil, fail(path, "must be a list without holes") end
  if n < shape.min or n > shape.max then
    return nil, fail(path, format("must have %d to %d items, got %d", shape.min, shape.max, n))
  end
  local out = {}
  for i = 1, n do
    local v, err = check(shape.member, value[i], format("%s[%d]", path, i))
    if err then return nil, err end
    out[i] = v
  end
  return out
end

local function check_string(shape, value, path)
  if type(value) ~= "string" then
    return nil, fail(path, "must be a string, got " .. type(value))
  end
  if shape.ascii and find(value, "[\128-\255]") then
    return nil, fail(path, "must contain only ASCII characters")
  end
  local len = utf8len(value)
  if not len then return nil, fail(path, "must be valid UTF-8") end
  if (shape.min and len < shape.min) or (shape.max and len > shape.max) then
    if shape.min == shape.max then
      return nil, fail(path, format("must be %d characters long, got %d", shape.min, len))
    end
    return nil, fail(path, format("must be %d to %d characters long, got %d",
      shape.min or 0, shape.max, len))
  end
  if shape.pattern and not find(value, shape.pattern) then
    return nil, fail(path, shape.rule)
  end
  if shape.enum then
    for _, e in ipairs(shape.enum) do
      if value == e then return value end
    end
    return nil, fail(path, "must be one of " .. concat(shape.enum, ", "))
  end
  return value
end

local function check_integer(shape, value, path)
  local i = type(value) == "number" and tointeger(value) or nil
  if not i then
    return nil, fail(path, "must be an integer, got " .. (type(value) == "number"
      and "a non-integral number" or type(value)))
  end
  if i < shape.min or i > shape.max then
    return nil, fail(path, format("must be between %d and %d, got %d", shape.min, shape.max, i))
  end
  return i
end

-- Timestamps from year 1 to year 9999, the range ISO-8601 and the SDKs'
-- date types can represent; outside it the millisecond form is not exact.
local MIN_EPOCH, MAX_EPOCH = -62135596800, 253402300799

local function check_timestamp(_, value, path)
  if type(value) == "number" then
    if value ~= value or value == huge or value == -huge then
      return nil, fail(path, "must be a finite number of epoch seconds")
    end
    if value < MIN_EPOCH or value > MAX_EPOCH then
      return nil, fail(path, "must be between year 1 and year 9999 (epoch seconds "
        .. MIN_EPOCH .. " to " .. MAX_EPOCH .. ")")
    end
    return to_millis(value)
  elseif type(value) == "string" then
    local t = time.parse_iso8601(value)
    if not t then
      return nil, fail(path, "must be epoch seconds or an ISO-8601 date-time such as 2024-01-31T12:00:00Z")
    end
    return to_millis(t)
  end
  return nil, fail(path, "must be a timestamp (epoch seconds or ISO-8601 string), got " .. type(value))
end

local function check_boolean(_, value, path)
  if type(value) ~= "boolean" then
    return nil, fail(path, "must be a boolean, got " .. type(value))
  end
  return value
end

local CHECKS = {
  structure = check_structure, union = check_union, list = check_list,
  string = check_string, integer = check_integer, timestamp = check_timestamp,
  boolean = check_boolean,
}

check = function(shape_name, value, path)
  local shape = SHAPES[shape_name]
  return CHECKS[shape.type](shape, value, path)
end

--[[
Validates the parameters of SearchImageSets.
Input: params, the table the user gave (never modified).
Returns: a normalized copy, or nil and a ParamValidationError object.
]]
function _M.search_image_sets(params)
  return check("SearchImageSetsRequest", params, "")
end

return _M

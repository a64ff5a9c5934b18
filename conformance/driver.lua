-- conformance/driver.lua: the Lua client as one side of `make conformance`.
-- A JSON-lines loop: each stdin line is a command ({"op": ..., ...}), each
-- stdout line its answer. Answers are in the neutral form the runner
-- compares (timestamps as {"$ts": "seconds"} decimal strings); they are
-- never printed by the runner, which reports mismatches by id and field.
-- Run from the repository root: lua5.4 conformance/driver.lua

package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath

local cjson = require "cjson"          -- Debian's lua-cjson: decoding commands only
local hi = require "healthimaging"
local core = require "healthimaging.core"

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local format = string.format
local gsub = string.gsub
local byte = string.byte
local concat = table.concat
local sort = table.sort
local mtype = math.type

-- {==== JSON output ---------------------------------------------------------

-- Tables that must be written as JSON arrays even when empty.
local ARRAYS = setmetatable({}, { __mode = "k" })

local function array(t)
  ARRAYS[t] = true
  return t
end

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(s)
  return '"' .. gsub(s, '[%c"\\]', function(c) return ESC[c] or format("\\u%04x", byte(c)) end) .. '"'
end

-- Writes v as JSON: strings byte-exact (UTF-8 passes through), integers as
-- integers, floats with 17 significant digits (lua-cjson stops at 14).
local function encode(v)
  local t = type(v)
  if t == "string" then return encode_string(v) end
  if t == "boolean" then return tostring(v) end
  if t == "nil" or v == cjson.null then return "null" end
  if t == "number" then
    if mtype(v) == "integer" then return format("%d", v) end
    if v ~= v or v == math.huge or v == -math.huge then return '"<non-finite>"' end
    -- an integral float keeps its ".0", so the runner sees float where an
    -- integer was due
    if v == math.floor(v) and math.abs(v) < 2 ^ 63 then return format("%.1f", v) end
    return format("%.17g", v)
  end
  if t ~= "table" then return encode_string("<" .. t .. ">") end
  if ARRAYS[v] or #v > 0 then
    local out = {}
    for i = 1, #v do out[i] = encode(v[i]) end
    return "[" .. concat(out, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = encode_string(k) .. ":" .. encode(v[k]) end
  return "{" .. concat(out, ",") .. "}"
end

-- }====

-- {==== Neutral form ----------------------------------------------------------

-- Request values: {"$ts": seconds} is a number of epoch seconds, {"$iso": s}
-- an ISO-8601 string (both are what the Lua client accepts for timestamps).
local function from_neutral(v)
  if type(v) ~= "table" then return v end
  if v["$ts"] ~= nil then return v["$ts"] end
  if v["$iso"] ~= nil then return v["$iso"] end
  local out = {}
  for k, x in pairs(v) do out[k] = from_neutral(x) end
  return out
end

local TIMESTAMP_KEYS = { createdAt = true, updatedAt = true }

-- Response values: timestamps become {"$ts": "%.6f"} (the runner compares
-- instants at the precision both sides have); lists stay lists.
local function to_neutral(v, key)
  if TIMESTAMP_KEYS[key] and type(v) == "number" then
    return { ["$ts"] = format("%.6f", v) }
  end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = to_neutral(x, k) end
  if key == "imageSetsMetadataSummaries" then array(out) end
  return out
end

local function neutral_error(err)
  return {
    code = err.code, message = err.message, status = err.status,
    request_id = err.request_id, attempts = err.attempts,
  }
end

-- }====

local clients = {}
local ops = {}

-- Makes a named client: endpoint, region, keys, optional fixed clock and
-- max_attempts. The host prefix is off, as it is for the peers.
function ops.client(a)
  local opts = {
    region = a.region, endpoint_url = a.endpoint,
    credentials = { access_key_id = a.access_key_id, secret_access_key = a.secret_access_key,
                    session_token = a.session_token },
    disable_host_prefix_injection = true,
    max_attempts = a.max_attempts,
  }
  if a.clock then
    local t = a.clock
    opts.clock = function() return t end
  end
  local c = assert(hi.client(opts))
  clients[a.name] = c
  return { ok = true }
end

-- One SearchImageSets call: the page, or the error.
function ops.search(a)
  local res, err = clients[a.client]:search_image_sets(from_neutral(a.params))
  if not res then return { error = neutral_error(err) } end
  return { page = to_neutral(res) }
end

local function paginate(a)
  local params = from_neutral(a.params)
  params.PaginationConfig = a.config
  return clients[a.client]:get_paginator("search_image_sets"):paginate(params)
end

-- One iteration of the paginator: its pages and the resume token.
function ops.pages(a)
  local pages = paginate(a)
  local out = array {}
  local ok, err = pcall(function()
    for page in pages do out[#out + 1] = to_neutral(page) end
  end)
  if not ok then return { error = neutral_error(err) } end
  return { pages = out, resume_token = pages.resume_token }
end

-- build_full_result of one iteration.
function ops.full(a)
  local ok, res = pcall(function() return paginate(a):build_full_result() end)
  if not ok then return { error = neutral_error(res) } end
  return { result = to_neutral(res) }
end

-- SigV4 signing of a raw request (the test-suite cases): the three stages.
function ops.sign(a)
  local ok, res = pcall(core.sign, from_neutral(a.input))
  if not ok then return { error = { code = "SignError", message = tostring(res) } } end
  return { canonical_request = res.canonical_request, string_to_sign = res.string_to_sign,
           authorization = res.authorization }
end

-- The loop: one command per line; a command that raises answers
-- {"error": {"code": "DriverError"}} instead of ending the driver.
for line in io.lines() do
  local ok, answer = pcall(function()
    local cmd = cjson.decode(line)
    local op = ops[cmd.op]
    if not op then error("unknown op " .. tostring(cmd.op)) end
    return op(cmd)
  end)
  if not ok then answer = { error = { code = "DriverError", message = tostring(answer) } } end
  io.stdout:write(encode(answer), "\n")
  io.stdout:flush()
end

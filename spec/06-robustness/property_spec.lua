-- No input may crash the host: random Lua values (wrong types, cycles, huge
-- strings, NaN and inf, sparse arrays, invalid UTF-8, deep nesting) thrown
-- at search_image_sets, the paginator and its PaginationConfig, and the
-- core's JSON functions. Each call succeeds or answers a validation error,
-- nothing is sent for invalid input, and nothing raises but the documented
-- misuse errors. The generator is seeded: the seed is in the test names
-- (replay with HI_PROPERTY_SEED=<seed>; HI_PROPERTY_CASES sets the count).
local helpers = require "helpers"
local hi = require "healthimaging"
local core = require "healthimaging.core"
local token = require "healthimaging.token"

local SEED = math.tointeger(tonumber(os.getenv("HI_PROPERTY_SEED") or "")) or 20230719
local CASES = math.tointeger(tonumber(os.getenv("HI_PROPERTY_CASES") or "")) or 3000
local ID = "0123456789abcdefghijklmnopqrstuv"
-- Stands for patient data in generated values: no error message may show it.
local PHI = "PHI-7f3a"

--[[
A deterministic generator of its own (splitmix64), so that math.random's
state, which other specs may use, is left alone.
Returns: r(n) -> an integer from 1 to n.
]]
local function generator(seed)
  local s = seed
  return function(n)
    s = s + 0x9E3779B97F4A7C15
    local z = s
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    z = z ~ (z >> 31)
    return (z >> 1) % n + 1
  end
end

local function pick(r, list) return list[r(#list)] end

-- Values made once: building them per case would dominate the run time.
local HUGE_ASCII = ("a"):rep(1 << 20)
local HUGE_INVALID = ("\255"):rep(100000)
local DEEP = {}
do
  local t = DEEP
  for _ = 1, 10000 do t[1] = {} t = t[1] end
end
local SELF = {}
SELF.self, SELF[1], SELF.filters, SELF.searchCriteria = SELF, SELF, SELF, SELF

local function random_bytes(r, n)
  local b = {}
  for i = 1, n do b[i] = string.char(r(256) - 1) end
  return table.concat(b)
end

local STRINGS = {
  "", "0", "EQUAL", "BETWEEN", "ASC", "DESC", "createdAt", "updatedAt", "DICOMStudyDateAndTime",
  ID, ID:upper(), ID .. "0", "1.2.840.10008", "2024-01-31T12:00:00Z", "2024-02-30T00:00:00Z",
  "2024-01-31T25:00:00Z", "2024-01-31T12:00:00.125+02:00", "9999-12-31", "20240101", "None", "x___12",
  "5", "-1", "1e2", " 0x10 ", "nan", "inf",
  "\192\175", "\237\160\128", "\226\130", "\244\144\128\128", "\0", "a\0b", PHI .. "-\195\169",
  HUGE_ASCII, HUGE_INVALID,
}
local NUMBERS = {
  0, 1, -1, 2, 50, 51, 8192, math.maxinteger, math.mininteger, 0.5, -0.0, 2^53, 2^63, -2^63,
  1e308, -1e308, 1e-310, 1704067200.123456, 0 / 0, math.huge, -math.huge,
}
local OTHERS = {
  true, false, print, function() end, coroutine.create(function() end), io.stdout,
  require("cjson").null,
}
-- Keys: the model's member names (so generated tables get deep enough to
-- matter) and keys of every other type; never PHI, as keys are named in errors.
local KEYS = {
  "datastoreId", "searchCriteria", "maxResults", "nextToken", "filters", "sort", "values",
  "operator", "sortField", "sortOrder", "DICOMPatientId", "DICOMAccessionNumber", "DICOMStudyId",
  "DICOMStudyInstanceUID", "DICOMSeriesInstanceUID", "createdAt", "updatedAt",
  "DICOMStudyDateAndTime", "DICOMStudyDate", "DICOMStudyTime", "isPrimary", "PaginationConfig",
  "MaxItems", "PageSize", "StartingToken", "unknown", "", 1, 2, 3, 0, -1, 1.5, 2^53, true, print,
}

local random_value

-- A table: a list, a sparse or oddly keyed array, a map, a cycle or DEEP.
local function random_table(r, depth)
  local kind = r(9)
  if depth > 4 or kind == 1 then return pick(r, { DEEP, SELF, {} }) end
  local t = {}
  if kind == 2 then                                   -- a list
    for i = 1, r(3) do t[i] = random_value(r, depth + 1) end
  elseif kind == 3 then                               -- an array with a hole
    t[1], t[3] = random_value(r, depth + 1), random_value(r, depth + 1)
  elseif kind == 4 then                               -- keys 0, negative, fractional, huge
    t[pick(r, { 0, -1, 1.5, 2^53, math.maxinteger })] = random_value(r, depth + 1)
  elseif kind == 5 then                               -- a table key
    t[{}] = random_value(r, depth + 1)
  elseif kind == 6 then                               -- contains itself
    t[pick(r, KEYS)] = t
    t[pick(r, KEYS)] = random_value(r, depth + 1)
  else                                                -- a map
    for _ = 1, r(4) do t[pick(r, KEYS)] = random_value(r, depth + 1) end
  end
  return t
end

--[[
Any Lua value (nil included), with the edge cases listed above. depth
bounds the generated nesting; DEEP and SELF go further.
]]
random_value = function(r, depth)
  depth = depth or 0
  local kind = r(10)
  if kind == 1 then return nil end
  if kind <= 3 then return pick(r, STRINGS) end
  if kind == 4 then return random_bytes(r, r(40) - 1) end
  if kind == 5 then return PHI .. random_bytes(r, r(8)) end
  if kind <= 7 then return pick(r, NUMBERS) end
  if kind == 8 then return pick(r, OTHERS) end
  return random_table(r, depth)
end

-- {====================================================================
-- Valid parameters, from the model's shapes
-- =====================================================================

local function digits_and_dots(r)
  local s = {}
  for i = 1, r(40) do s[i] = pick(r, { "1", "2", "8", "0", "." }) end
  return table.concat(s)
end

local function valid_attribute(r)
  local member = pick(r, { "DICOMPatientId", "DICOMAccessionNumber", "DICOMStudyId",
    "DICOMStudyInstanceUID", "DICOMSeriesInstanceUID", "createdAt", "updatedAt",
    "DICOMStudyDateAndTime", "isPrimary" })
  local v
  if member == "DICOMStudyInstanceUID" or member == "DICOMSeriesInstanceUID" then
    v = digits_and_dots(r)
  elseif member == "createdAt" or member == "updatedAt" then
    v = pick(r, { r(2000000000), r(2000000000) + 0.25, "2024-01-31T12:00:00Z", "2024-01-31",
      "2024-01-31T12:00:00.125-05:30", -1.5, 0 })
  elseif member == "DICOMStudyDateAndTime" then
    v = { DICOMStudyDate = pick(r, { "20240101", "", "1999" }) }
    if r(2) == 1 then v.DICOMStudyTime = pick(r, { "120000", "", "235959.999" }) end
  elseif member == "isPrimary" then
    v = r(2) == 1
  else
    v = PHI .. pick(r, { "", "-\195\169\228\184\173", "-^PATIENT" })
  end
  return { [member] = v }
end

local function valid_filter(r)
  local values = {}
  for i = 1, r(2) do values[i] = valid_attribute(r) end
  return { operator = pick(r, { "EQUAL", "BETWEEN" }), values = values }
end

local function valid_params(r)
  local p = { datastoreId = ID }
  if r(2) == 1 then p.maxResults = r(50) end
  if r(4) == 1 then p.nextToken = ("t"):rep(r(100)) .. "+/=" end
  if r(3) > 1 then
    local sc = {}
    if r(4) > 1 then
      sc.filters = {}
      for i = 1, r(2) do sc.filters[i] = valid_filter(r) end
    end
    if r(2) == 1 then
      sc.sort = { sortField = pick(r, { "updatedAt", "createdAt", "DICOMStudyDateAndTime" }),
                  sortOrder = pick(r, { "ASC", "DESC" }) }
    end
    p.searchCriteria = sc
  end
  return p
end

-- Every (table, key) of a tree, so that one can be replaced.
local function slots(t, out)
  out = out or {}
  for k, v in pairs(t) do
    out[#out + 1] = { t, k }
    if type(v) == "table" then slots(v, out) end
  end
  return out
end

--[[
Valid parameters, then (most of the time) one or two changes: a value
replaced by a random one (nil deletes it) or a random member added.
]]
local function mutated_params(r)
  local p = valid_params(r)
  if r(5) == 1 then return p, true end
  local all = slots(p)   -- of the valid tree: random values are not walked
  all[#all + 1] = { p, pick(r, KEYS) }
  for _ = 1, r(2) do
    local s = all[r(#all)]
    s[1][s[2]] = random_value(r)
  end
  return p, false
end

-- }====================================================================

-- A short printable rendering of a value for failure messages.
local function show(v, depth, seen)
  depth, seen = depth or 0, seen or {}
  if type(v) == "string" then
    return #v > 40 and string.format("%q..(%d bytes)", v:sub(1, 40), #v) or string.format("%q", v)
  elseif type(v) == "number" then
    return math.type(v) == "integer" and tostring(v) or string.format("%.17g", v)
  elseif type(v) ~= "table" then
    return type(v) == "boolean" and tostring(v) or type(v)
  elseif seen[v] then
    return "<cycle>"
  elseif depth > 5 then
    return "{...}"
  end
  seen[v] = true
  local parts = {}
  for k, x in pairs(v) do
    if #parts >= 8 then parts[#parts + 1] = "..." break end
    parts[#parts + 1] = "[" .. show(k, depth + 1, seen) .. "]=" .. show(x, depth + 1, seen)
  end
  seen[v] = nil
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function new_client()
  local stub = helpers.stub_transport(function()
    return 200, { ["x-amzn-requestid"] = "stub" }, '{"imageSetsMetadataSummaries":[]}'
  end)
  local client = assert(hi.client { region = "us-east-1", credentials = helpers.CREDENTIALS, transport = stub })
  return client, stub
end

--[[
The outcome of one call, checked: "sent" (a result, one request) or
"invalid" (a ParamValidationError that shows no PHI, nothing sent).
Raises a message naming the case otherwise.
]]
local function check_outcome(what, i, input, stub, before, ok, res, err)
  local where = string.format("%s, case %d of seed %d, input %s", what, i, SEED, show(input))
  if not ok then
    error("raised " .. show(res) .. " (" .. tostring(res) .. "): " .. where, 0)
  end
  local sent = #stub.requests - before
  if res ~= nil then
    if type(res) ~= "table" or sent < 1 then
      error("a result without a request (" .. sent .. " sent): " .. where, 0)
    end
    return "sent"
  end
  if not hi.is_error(err) or err.code ~= "ParamValidationError" then
    error("returned " .. tostring(err) .. " instead of a ParamValidationError: " .. where, 0)
  end
  if sent ~= 0 then error(sent .. " request(s) sent for invalid input: " .. where, 0) end
  if tostring(err):find(PHI, 1, true) then error("the error message shows a value: " .. where, 0) end
  return "invalid"
end

local function tally(counts, outcome) counts[outcome] = (counts[outcome] or 0) + 1 end

describe(string.format("random input (seed %d, %d cases each)", SEED, CASES), function()
  it("search_image_sets returns a result or a ParamValidationError and sends nothing invalid", function()
    local r = generator(SEED)
    local client, stub = new_client()
    local counts = {}
    for i = 1, CASES do
      local params, valid
      if r(4) == 1 then params = random_table(r, 0) else params, valid = mutated_params(r) end
      local before = #stub.requests
      local outcome = check_outcome("search_image_sets", i, params, stub, before,
        pcall(client.search_image_sets, client, params))
      if valid and outcome ~= "sent" then
        error(string.format("valid parameters were refused: case %d of seed %d, input %s", i, SEED, show(params)))
      end
      tally(counts, outcome)
    end
    -- Both kinds of outcome are common, or the generator tests nothing.
    assert.is_true((counts.sent or 0) > CASES / 20, "too few valid inputs: " .. show(counts))
    assert.is_true((counts.invalid or 0) > CASES / 4, "too few invalid inputs: " .. show(counts))
  end)

  it("search_image_sets raises only the misuse error when the parameters are not a table", function()
    local r = generator(SEED + 1)
    local client = new_client()
    for _ = 1, 200 do
      local v = random_value(r)
      if type(v) ~= "table" then
        assert.has_error(function() client:search_image_sets(v) end,
          "bad argument #1 to 'search_image_sets' (table expected, got " .. type(v) .. ")")
      end
    end
  end)

  -- A StartingToken: a raw string, boto3's deprecated TOKEN___N form, or
  -- base64 JSON built from random values.
  local function random_starting_token(r)
    local kind = r(4)
    if kind == 1 then return random_value(r) end
    if kind == 2 then return PHI .. "___" .. r(100) end
    local fields = {}
    if r(4) > 1 then fields.nextToken = random_value(r, 3) end
    if r(2) == 1 then fields.boto_truncate_amount = random_value(r, 3) end
    if r(6) == 1 then fields[pick(r, KEYS)] = random_value(r, 3) end
    local json = core.json_encode(fields)
    if kind == 3 and json then return token.base64_encode(json) end
    local nt = r(3) > 1 and pick(r, { "t+/=", PHI }) or nil
    return token.encode(nt, r(2) == 1 and pick(r, { 0, 1, 3 }) or nil)
  end

  local function random_pagination_config(r)
    if r(5) == 1 then return random_value(r) end
    local pc = {}
    if r(2) == 1 then pc.MaxItems = r(2) == 1 and r(100) or random_value(r) end
    if r(2) == 1 then pc.PageSize = r(2) == 1 and r(50) or random_value(r) end
    if r(2) == 1 then pc.StartingToken = random_starting_token(r) end
    if r(10) == 1 then pc[pick(r, KEYS)] = random_value(r) end
    return pc
  end

  it("the paginator yields pages or raises a ParamValidationError, and sends nothing invalid", function()
    local r = generator(SEED + 2)
    local client, stub = new_client()
    local paginator = client:get_paginator("search_image_sets")
    local counts = {}
    for i = 1, CASES do
      local params = r(3) == 1 and mutated_params(r) or valid_params(r)
      params.PaginationConfig = random_pagination_config(r)
      local before = #stub.requests
      local ok, res, err = pcall(function()
        local pages = paginator:paginate(params)
        local ok2, e = pcall(function()
          for page in pages do
            if type(page) ~= "table" then error("a page that is not a table", 0) end
          end
        end)
        if ok2 then return { pages = true } end
        return nil, e
      end)
      tally(counts, check_outcome("paginate", i, params, stub, before, ok, res, err))
    end
    assert.is_true((counts.sent or 0) > CASES / 20, "too few valid inputs: " .. show(counts))
    assert.is_true((counts.invalid or 0) > CASES / 4, "too few invalid inputs: " .. show(counts))
  end)

  it("core.json_encode returns text or nil and a message, and never raises", function()
    local r = generator(SEED + 3)
    for i = 1, CASES do
      local v = random_value(r)
      local ok, text, msg = pcall(core.json_encode, v)
      if not ok then error(string.format("raised %s: case %d, input %s", tostring(text), i, show(v))) end
      if text == nil then
        assert.is_string(msg)
      else
        assert.is_string(text)
        -- What it wrote, it reads back (a lone null has nothing left).
        local back, err = core.json_decode(text)
        assert.is_true(back ~= nil or text == "null", err)
      end
    end
  end)

  it("core.json_decode returns a value or nil and a message for any text, and never raises", function()
    local r = generator(SEED + 4)
    local seeds = {}
    for _ = 1, 64 do
      local text = core.json_encode(random_value(r, 2))
      if text then seeds[#seeds + 1] = text end
    end
    for i = 1, CASES do
      local text
      local kind = r(4)
      if kind == 1 then
        text = pick(r, STRINGS)
      elseif kind == 2 then
        text = random_bytes(r, r(64) - 1)
      else                                       -- valid JSON with a few bytes changed
        text = pick(r, seeds)
        for _ = 1, r(3) do
          local at = r(#text + 1)
          text = text:sub(1, at - 1) .. pick(r, { "[", "{", "}", "]", ",", ":", "null", "\"", "\\u",
            "\255", "1e400", "-", "\0" }) .. text:sub(at + 1)
        end
      end
      local int_keys = pick(r, { {}, { version = true, [1] = true }, { [print] = "x" } })
      local ok, v, msg = pcall(core.json_decode, text, int_keys)
      if not ok then error(string.format("raised %s: case %d, input %s", tostring(v), i, show(text))) end
      if v == nil then assert.is_string(msg) end
    end
  end)
end)

describe("inputs that could make validation loop or recurse without end", function()
  local cyclic = {
    { "a searchCriteria that contains itself", function()
        local sc = {}
        sc.filters, sc.sort, sc.searchCriteria = sc, sc, sc
        return { datastoreId = ID, searchCriteria = sc }
      end },
    { "parameters that are their own searchCriteria", function()
        local p = { datastoreId = ID }
        p.searchCriteria = p
        return p
      end },
    { "a filter whose values contain the filter", function()
        local f = { operator = "EQUAL" }
        f.values = { { DICOMStudyDateAndTime = f } }
        return { datastoreId = ID, searchCriteria = { filters = { f } } }
      end },
    { "a filters list that contains itself", function()
        local l = {}
        l[1] = l
        return { datastoreId = ID, searchCriteria = { filters = l } }
      end },
    { "10000 levels of nesting under searchCriteria", function()
        return { datastoreId = ID, searchCriteria = { filters = DEEP } }
      end },
  }
  for _, case in ipairs(cyclic) do
    it("answers a ParamValidationError for " .. case[1] .. ", sending nothing", function()
      local client, stub = new_client()
      local res, err = client:search_image_sets(case[2]())
      assert.is_nil(res)
      assert.is_true(hi.is_error(err))
      assert.equal("ParamValidationError", err.code)
      assert.equal(0, #stub.requests)
    end)
  end

  it("json_encode answers nil and a message for a table that contains itself", function()
    local text, msg = core.json_encode(SELF)
    assert.is_nil(text)
    assert.is_string(msg)
  end)
end)

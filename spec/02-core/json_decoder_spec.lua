-- core.json_decode is a one-pass parser of its own (faster than cjson.decode
-- plus a walk, see docs/PERFORMANCE.md). Here it is checked against lua-cjson
-- as an oracle: cjson.decode, then nulls removed and the listed keys typed
-- in Lua. On valid JSON both must give the same value, number subtypes
-- included; on any text, core.json_decode may only accept what cjson accepts
-- (it is stricter: RFC 8259 numbers), and then with the same value.
local core = require "healthimaging.core"
local model = require "healthimaging.model"
local cjson = require("cjson").new()

cjson.decode_max_depth(64)
cjson.decode_invalid_numbers(false)

local INT_KEYS = model.INTEGER_KEYS
local NULL = cjson.null

-- The oracle: what json_decode promises, built from cjson's output.
local function oracle(text, keys)
  local ok, v = pcall(cjson.decode, text)
  if not ok then return nil, "cjson refused it" end
  local function walk(x)
    if type(x) ~= "table" then return x end
    local out = {}
    local k1 = next(x)
    if k1 ~= nil and math.type(k1) == "integer" then
      for i = 1, #x do
        if x[i] ~= NULL then out[#out + 1] = walk(x[i]) end
      end
    else
      for k, e in pairs(x) do
        if e ~= NULL then
          e = walk(e)
          if keys and keys[k] and math.type(e) == "float" then e = math.tointeger(e) or e end
          out[k] = e
        end
      end
    end
    return out
  end
  if v == NULL then return nil, "null" end
  return walk(v)
end

-- Deep equality that tells 1 from 1.0; returns true or false, path.
local function same(a, b, path)
  path = path or "$"
  if type(a) ~= type(b) then return false, path end
  if type(a) == "number" then
    if math.type(a) ~= math.type(b) or a ~= b then return false, path end
    if a == 0 and 1 / a ~= 1 / b then return false, path .. " (sign of zero)" end
    return true
  end
  if type(a) ~= "table" then return a == b, path end
  for k, v in pairs(a) do
    local ok, where = same(v, b[k], path .. "." .. tostring(k))
    if not ok then return false, where end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "." .. tostring(k) end
  end
  return true
end

-- A random valid JSON text (deterministic for a seed).
local KEYS = { "version", "DICOMSeriesNumber", "imageSetId", "createdAt", "a", "Patient^Name", "",
               "DICOMNumberOfStudyRelatedSeries", "k\\u00e9y", "nextToken" }
local NUMBERS = { "0", "-0", "1", "-1", "42", "2.0", "2e0", "1E2", "1e-2", "1700000000.125", "0.1", "-0.000123",
                  "9007199254740993", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
                  "123456789012345678901234567890", "1e300", "-1e-300", "4.9e-324", "1.7976931348623157e308",
                  "0.30000000000000004", "3.141592653589793238462643383279", "1e22", "1e23", "123e-22",
                  "12345678901234.5", "100000000000000000000", "5e-324", "2.5E+3" }
local STRINGS = { [[""]], [["plain"]], [["caf\u00e9"]], [["\ud83d\ude00"]], [["q\"b\\s\/n\nt\tr\r\b\f"]],
                  '"Gr\xc3\xbc\xc3\x9fe \xe6\x97\xa5"', [["a\u0000b"]], [["\u20AC\u00A9"]],
                  '"' .. ("x"):rep(300) .. '"', [["Doe^Jane"]] }

local function gen(depth)
  local r = math.random(depth > 5 and 4 or 7)
  if r == 1 then return NUMBERS[math.random(#NUMBERS)] end
  if r == 2 then return STRINGS[math.random(#STRINGS)] end
  if r == 3 then return ({ "true", "false", "null" })[math.random(3)] end
  if r == 4 then return NUMBERS[math.random(#NUMBERS)] end
  local ws = ({ "", " ", "\n\t ", "\r\n" })[math.random(4)]
  local n = math.random(0, 5)
  local parts = {}
  if r == 5 then
    for i = 1, n do parts[i] = ws .. gen(depth + 1) .. ws end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  for i = 1, n do
    parts[i] = ws .. '"' .. KEYS[math.random(#KEYS)] .. '"' .. ws .. ":" .. ws .. gen(depth + 1)
  end
  return "{" .. table.concat(parts, ",") .. ws .. "}"
end

local function agree(text, keys)
  local want, werr = oracle(text, keys)
  local got, gerr = core.json_decode(text, keys)
  if werr == "null" then
    return got == nil and gerr == "the JSON text is null"
  end
  if want == nil then return got == nil end
  if got == nil then return false, "refused: " .. tostring(gerr) end
  return same(want, got)
end

describe("core.json_decode against lua-cjson as an oracle", function()
  it("gives cjson's value, subtypes and all, for 3000 random valid texts", function()
    math.randomseed(20240601)
    for i = 1, 3000 do
      local text = gen(0)
      local ok, where = agree(text, (i % 2 == 0) and INT_KEYS or nil)
      assert(ok, "text #" .. i .. " differs at " .. tostring(where) .. ": " .. text)
    end
  end)

  it("gives cjson's value for every number form, as a top-level value and under a listed key", function()
    for _, n in ipairs(NUMBERS) do
      assert(agree(n), n)
      assert(agree('{"version":' .. n .. ',"other":' .. n .. "}", INT_KEYS), n)
      assert(agree("[" .. n .. "]", INT_KEYS), n)
    end
  end)

  it("accepts a mutated text only if cjson does, and then with the same value", function()
    math.randomseed(7)
    local bytes = { "{", "}", "[", "]", '"', "\\", ",", ":", "0", "-", ".", "e", "n", "u", " ", "\0", "\xff" }
    for i = 1, 3000 do
      local text = gen(0)
      local pos = math.random(#text + 1)
      local kind = math.random(3)
      if kind == 1 then
        text = text:sub(1, pos - 1) .. text:sub(pos + 1)
      elseif kind == 2 then
        text = text:sub(1, pos - 1) .. bytes[math.random(#bytes)] .. text:sub(pos)
      else
        text = text:sub(1, pos - 1)
      end
      local got = core.json_decode(text, INT_KEYS)
      if got ~= nil then
        local want = oracle(text, INT_KEYS)
        assert(want ~= nil, "accepted what cjson refuses, mutation #" .. i .. ": " .. text)
        local ok, where = same(want, got)
        assert(ok, "mutation #" .. i .. " differs at " .. tostring(where) .. ": " .. text)
      end
    end
  end)

  it("refuses what RFC 8259 forbids even where cjson is lenient (numbers, raw control characters)", function()
    for _, text in ipairs { "01", "-01", "1.", ".5", "-.5", "+1", "1e", "1e+", "-", "[1.]", '{"version":01}',
                            '"raw\nnewline"', '"raw\0nul"', '"tab\tinside"' } do
      local v, err = core.json_decode(text, INT_KEYS)
      assert.is_nil(v, text)
      assert.is_string(err, text)
    end
  end)

  it("decodes the emulator's data set as cjson does", function()
    local f = assert(io.open("build/demo/datastore.json", "rb"), "run `make test`: it imports the demo data")
    local text = f:read("a")
    f:close()
    assert.is_true(agree(text, INT_KEYS))
  end)

  it("keeps the last of duplicate keys, a null one included", function()
    assert.is_true(agree('{"a":1,"a":2}'))
    assert.is_true(agree('{"a":1,"a":null}'))
    assert.same({}, core.json_decode('{"a":1,"a":null}'))
    assert.is_true(agree('{"a":null,"a":1}'))
  end)

  it("names the position of a malformed text and nothing of its content", function()
    local v, err = core.json_decode('{"DICOMPatientName":"Doe^Jane" "x":1}')
    assert.is_nil(v)
    assert.equal("expected ',' or '}' at character 32", err)
  end)
end)

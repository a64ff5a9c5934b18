-- JSON in healthimaging.core: a private lua-cjson instance, nulls removed
-- on decode, and integers only for the object keys the caller lists.
-- luacheck: std +busted
local core = require "healthimaging.core"

-- The integer-valued keys of the SearchImageSets response.
local INT_KEYS = {
  version = true, DICOMSeriesNumber = true,
  DICOMNumberOfStudyRelatedSeries = true, DICOMNumberOfStudyRelatedInstances = true,
}

-- A canonical rendering that keeps what assert.same ignores: integer vs
-- float (1 and 1.0 differ), and exact float values.
local function shape(v)
  local tv = type(v)
  if tv == "number" then
    return math.type(v) == "integer" and ("i" .. v) or ("f" .. string.format("%.17g", v))
  elseif tv == "string" then
    return string.format("%q", v)
  elseif tv ~= "table" then
    return tostring(v)
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return shape(a) < shape(b) end)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = shape(k) .. "=" .. shape(v[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

describe("core.json_decode", function()
  -- { description, JSON text, int_keys, expected value (literal types matter) }
  local cases = {
    { "types integers only for listed keys", [[{"version":2,"count":3}]], INT_KEYS,
      { version = 2, count = 3.0 } },
    { "keeps every number a float without int_keys", [[{"version":2,"count":3}]], nil,
      { version = 2.0, count = 3.0 } },
    { "leaves a listed key's fractional value a float", [[{"version":2.5}]], INT_KEYS, { version = 2.5 } },
    { "keeps a timestamp's fraction", [[{"createdAt":1700000000.125,"version":1}]], INT_KEYS,
      { createdAt = 1700000000.125, version = 1 } },
    { "treats 2.0 and 2e0 as integral", [[{"version":2.0,"DICOMSeriesNumber":2e0}]], INT_KEYS,
      { version = 2, DICOMSeriesNumber = 2 } },
    { "keeps an integral value beyond lua_Integer a float", [[{"version":1e300}]], INT_KEYS,
      { version = 1e300 } },
    { "keeps 2^63 a float (it does not fit)", [[{"version":9223372036854775808}]], INT_KEYS,
      { version = 2.0 ^ 63 } },
    { "types -2^63 as math.mininteger (it fits)", [[{"version":-9223372036854775808}]], INT_KEYS,
      { version = math.mininteger } },
    { "leaves a listed key's string, boolean and object alone",
      [[{"version":"3","DICOMSeriesNumber":true,"DICOMNumberOfStudyRelatedSeries":{"a":1}}]], INT_KEYS,
      { version = "3", DICOMSeriesNumber = true, DICOMNumberOfStudyRelatedSeries = { a = 1.0 } } },
    { "does not type numbers inside an array under a listed key", [[{"version":[1,2]}]], INT_KEYS,
      { version = { 1.0, 2.0 } } },
    { "ignores keys mapped to false in int_keys", [[{"version":1}]], { version = false }, { version = 1.0 } },
    { "keeps a top-level number a float", "42", INT_KEYS, 42.0 },
    { "drops object keys whose value is null", [[{"a":null,"b":1,"c":null}]], nil, { b = 1.0 } },
    { "removes nulls from arrays and compacts them", "[null,1,null,2,null]", nil, { 1.0, 2.0 } },
    { "turns an array of nulls into an empty table", "[null,null]", nil, {} },
    { "decodes an empty array as an empty table", "[]", nil, {} },
    { "decodes an empty object as an empty table", "{}", nil, {} },
    { "types nested listed keys inside arrays of objects", [[{
        "imageSetsMetadataSummaries": [
          {"imageSetId":"a1","version":1,"createdAt":1700000000.5,
           "DICOMTags":{"DICOMSeriesNumber":3,"DICOMPatientId":"P1","DICOMStudyDate":null,
                        "DICOMNumberOfStudyRelatedSeries":2,"DICOMNumberOfStudyRelatedInstances":200}},
          null,
          {"imageSetId":"b2","version":7,"DICOMTags":{"DICOMSeriesNumber":null}}
        ],
        "nextToken": null}]], INT_KEYS,
      { imageSetsMetadataSummaries = {
          { imageSetId = "a1", version = 1, createdAt = 1700000000.5,
            DICOMTags = { DICOMSeriesNumber = 3, DICOMPatientId = "P1",
                          DICOMNumberOfStudyRelatedSeries = 2, DICOMNumberOfStudyRelatedInstances = 200 } },
          { imageSetId = "b2", version = 7, DICOMTags = {} },
      } } },
    { "keeps nulls out of nested arrays", "[[null],[1,[null,2]]]", nil, { {}, { 1.0, { 2.0 } } } },
    { "passes UTF-8 bytes through", '"Gr\xc3\xbc\xc3\x9fe \xe6\x97\xa5\xe6\x9c\xac"', nil,
      "Gr\xc3\xbc\xc3\x9fe \xe6\x97\xa5\xe6\x9c\xac" },
    { "decodes \\u escapes to UTF-8", [["caf\u00e9 \u65e5"]], nil, "caf\xc3\xa9 \xe6\x97\xa5" },
    { "decodes a surrogate pair to one 4-byte character", [["\ud83d\ude00"]], nil, "\xf0\x9f\x98\x80" },
    { "decodes \\u0000 to a NUL byte", [["a\u0000b"]], nil, "a\0b" },
    { "decodes the simple escapes", [["q\"b\\s\/n\nt\tr\r"]], nil, "q\"b\\s/n\nt\tr\r" },
    { "keeps the exact bytes of a key", [[{"Patient^Name":"Doe^Jane"}]], nil, { ["Patient^Name"] = "Doe^Jane" } },
    { "decodes 64 levels of nesting", ("["):rep(64) .. ("]"):rep(64), nil,
      (function()
        local v = {}
        for _ = 2, 64 do v = { v } end
        return v
      end)() },
  }
  for _, case in ipairs(cases) do
    it(case[1], function()
      local value, err = core.json_decode(case[2], case[3])
      assert.is_nil(err)
      assert.equal(shape(case[4]), shape(value))
    end)
  end

  it("returns integers that math.type reports as integers", function()
    local v = core.json_decode([[{"version":3,"other":3}]], INT_KEYS)
    assert.equal("integer", math.type(v.version))
    assert.equal("float", math.type(v.other))
  end)

  local malformed = {
    { "", "empty text" },
    { "{", "an unclosed object" },
    { "[1,]", "a trailing comma" },
    { "{'a':1}", "single quotes" },
    { "[1] x", "trailing garbage" },
    { '"unterminated', "an unterminated string" },
    { '"\\ud83d"', "a lone surrogate" },
    { "NaN", "NaN" },
    { "[Infinity]", "Infinity" },
    { "0x10", "a hex number" },
    { ("["):rep(65) .. ("]"):rep(65), "nesting deeper than 64" },
  }
  for _, case in ipairs(malformed) do
    it("returns nil, message for " .. case[2], function()
      local value, err = core.json_decode(case[1])
      assert.is_nil(value)
      assert.is_string(err)
    end)
  end

  it("does not echo the text in its error message", function()
    local value, err = core.json_decode([[{"DICOMPatientName":"Doe^Jane",}]])
    assert.is_nil(value)
    assert.not_matches("Doe", err, 1, true)
  end)

  it("reports a top-level null as nil, message (nothing is left once nulls go)", function()
    assert.same({ nil, "the JSON text is null" }, { core.json_decode("null") })
  end)

  it("raises at once on misuse", function()
    assert.has.error(function() core.json_decode(5) end,
      "bad argument #1 to 'json_decode' (string expected, got number)")
    assert.has.error(function() core.json_decode("{}", "version") end,
      "bad argument #2 to 'json_decode' (table expected, got string)")
  end)
end)

describe("core.json_encode", function()
  local encodes = {
    { "an array", { 1, 2, 3 }, "[1,2,3]" },
    { "an integer", 3, "3" },
    { "a timestamp with its fraction", 1700000000.125, "1700000000.125" },
    { "14 significant digits", math.pi, "3.1415926535898" },
    { "a string with escapes", 'a"b\\c\n/', '"a\\"b\\\\c\\n\\/"' },
    { "an object", { maxResults = 2 }, '{"maxResults":2}' },
    { "an empty table as an object (cjson's choice)", {}, "{}" },
  }
  for _, case in ipairs(encodes) do
    it("encodes " .. case[1], function()
      assert.equal(case[3], core.json_encode(case[2]))
    end)
  end

  it("round-trips a request body through json_decode", function()
    local body = { searchCriteria = { filters = { { operator = "EQUAL",
      values = { { DICOMPatientId = "P\xc3\xa9" } } } } } }
    assert.same(body, core.json_decode(core.json_encode(body)))
  end)

  local cycle = {}
  cycle[1] = cycle
  local deep = {}
  for _ = 1, 64 do deep = { deep } end
  local unencodable = {
    { 0 / 0, "NaN" },
    { math.huge, "inf" },
    { { x = -math.huge }, "-inf inside a table" },
    { print, "a function" },
    { { f = coroutine.create(print) }, "a coroutine inside a table" },
    { cycle, "a cycle" },
    { deep, "nesting deeper than 64" },
    { { 1, nil, 3 }, "an array with a hole" },
    { { [1] = "a", [20] = "b" }, "a sparse array" },
  }
  for _, case in ipairs(unencodable) do
    it("returns nil, message for " .. case[2] .. " instead of raising", function()
      local text, err = core.json_encode(case[1])
      assert.is_nil(text)
      assert.is_string(err)
    end)
  end

  it("raises at once when given no value", function()
    assert.has.error(function() core.json_encode() end, "bad argument #1 to 'json_encode' (value expected)")
  end)
end)

describe("the private cjson instance", function()
  local cjson = require "cjson"
  local SETTINGS = { "encode_number_precision", "encode_invalid_numbers", "decode_invalid_numbers",
                     "decode_max_depth", "encode_max_depth", "encode_sparse_array" }
  local saved

  before_each(function()
    saved = {}
    for _, name in ipairs(SETTINGS) do saved[name] = { cjson[name]() } end
  end)

  after_each(function()
    for _, name in ipairs(SETTINGS) do cjson[name](table.unpack(saved[name])) end
  end)

  -- A host that reconfigures the shared module in every way we rely on.
  local function loosen_global_cjson()
    cjson.encode_number_precision(3)
    cjson.encode_invalid_numbers(true)
    cjson.decode_invalid_numbers(true)
    cjson.decode_max_depth(2)
    cjson.encode_max_depth(2)
    cjson.encode_sparse_array(true)
    -- the host's changes took effect on the shared module
    assert.equal("3.14", cjson.encode(math.pi))
    assert.is_true(cjson.decode("NaN") ~= cjson.decode("NaN"))
  end

  local function assert_ours_unchanged(c)
    assert.equal("3.1415926535898", c.json_encode(math.pi))
    assert.is_nil((c.json_encode(0 / 0)))
    assert.is_nil((c.json_decode("NaN")))
    assert.is_nil((c.json_decode("0x10")))
    assert.equal(1.0, c.json_decode("[[[[1]]]]")[1][1][1][1])
    assert.equal("[[[[1]]]]", c.json_encode({ { { { 1 } } } }))
    assert.is_nil((c.json_encode({ [1] = "a", [20] = "b" })))
  end

  it("is unaffected when the host changes require('cjson') settings afterwards", function()
    loosen_global_cjson()
    assert_ours_unchanged(core)
  end)

  it("is unaffected by settings the host changed before the core was loaded", function()
    loosen_global_cjson()
    local original = package.loaded["healthimaging.core"]
    package.loaded["healthimaging.core"] = nil
    local ok, fresh = pcall(require, "healthimaging.core")
    package.loaded["healthimaging.core"] = original
    assert.is_true(ok, fresh)
    assert.are_not.equal(original, fresh)
    assert_ours_unchanged(fresh)
  end)
end)

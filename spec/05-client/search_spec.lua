-- Searching real DICOM image sets end to end: the client against
-- healthimaging-local loaded with the DICOM files Debian's python3-pydicom
-- ships. Expected results are computed here from the imported data file,
-- independently of the emulator's own search code. Tag values never reach
-- the output: mismatches are reported by image-set id and field name.
local helpers = require "helpers"
local core = require "healthimaging.core"
local hi = require "healthimaging"

local DATA = core.json_decode(helpers.read(helpers.DATA), { version = true, DICOMSeriesNumber = true,
  DICOMNumberOfStudyRelatedSeries = true, DICOMNumberOfStudyRelatedInstances = true })
local SETS = DATA.imageSets
local DS = DATA.datastoreId

local function ids_of(list)
  local t = {}
  for i, s in ipairs(list) do t[i] = s.imageSetId end
  return t
end

local function sorted(t)
  local c = { table.unpack(t) }
  table.sort(c)
  return c
end

-- Everything a search returns, through the paginator.
local function search(client, criteria, page_size)
  return client:get_paginator("search_image_sets"):paginate {
    datastoreId = DS, searchCriteria = criteria,
    PaginationConfig = { PageSize = page_size },
  }:build_full_result().imageSetsMetadataSummaries
end

local function expect_ids(pred)
  local t = {}
  for _, s in ipairs(SETS) do
    if pred(s) then t[#t + 1] = s.imageSetId end
  end
  return sorted(t)
end

local function tag(s, name) return s.DICOMTags and s.DICOMTags[name] end

-- A study date as YYYYMMDD digits (DICOM also allows the old YYYY.MM.DD).
local function study_date(s)
  local d = tag(s, "DICOMStudyDate")
  d = d and d:gsub("%D", "")
  if d and #d == 8 then return d end
end

-- Study date and time as one comparable string (HHMMSS padded, then
-- microseconds), or nil without a study date: those sort last either way.
local function study_dt(s)
  local d = study_date(s)
  if not d then return nil end
  local t = (tag(s, "DICOMStudyTime") or ""):gsub(":", "")
  local whole, frac = t:match("^(%d*)%.?(%d*)$")
  whole, frac = whole or "", frac or ""
  return d .. (whole .. string.rep("0", 6)):sub(1, 6) .. (frac .. string.rep("0", 6)):sub(1, 6)
end

-- A value of `field` that several image sets share, when there is one.
local function common_value(get)
  local count, best, best_n = {}, nil, 0
  for _, s in ipairs(SETS) do
    local v = get(s)
    if v ~= nil then
      count[v] = (count[v] or 0) + 1
      if count[v] > best_n then best, best_n = v, count[v] end
    end
  end
  return best
end

describe("searching image sets imported from real DICOM files", function()
  local emu, client

  setup(function()
    emu = helpers.start_emulator()
    client = helpers.client(emu)
  end)

  teardown(function()
    client:close()
    emu.stop()
  end)

  it("has imported a few dozen series of the pydicom files", function()
    assert.is_true(#SETS >= 25, "only " .. #SETS .. " image sets")
  end)

  it("returns every image set when there are no criteria, with updatedAt DESC by default", function()
    local got = search(client, nil)
    assert.are.same(sorted(ids_of(SETS)), sorted(ids_of(got)))
    for i = 2, #got do
      assert.is_true(got[i - 1].updatedAt >= got[i].updatedAt, "not DESC at position " .. i)
    end
  end)

  for _, field in ipairs { "DICOMPatientId", "DICOMAccessionNumber", "DICOMStudyId",
                           "DICOMStudyInstanceUID", "DICOMSeriesInstanceUID" } do
    it("finds the image sets whose " .. field .. " is EQUAL to a value", function()
      local v = common_value(function(s) return tag(s, field) end)
      assert.is_not_nil(v, "no image set has " .. field)
      local got = search(client, { filters = { { operator = "EQUAL", values = { { [field] = v } } } } })
      local want = expect_ids(function(s) return tag(s, field) == v end)
      assert.is_true(#want >= 1)
      assert.are.same(want, sorted(ids_of(got)))
    end)
  end

  for _, flag in ipairs { true, false } do
    it("finds the image sets whose isPrimary is " .. tostring(flag), function()
      local got = search(client, { filters = { { operator = "EQUAL", values = { { isPrimary = flag } } } } })
      assert.are.same(expect_ids(function(s) return s.isPrimary == flag end), sorted(ids_of(got)))
    end)
  end

  for _, field in ipairs { "createdAt", "updatedAt" } do
    it("finds the image sets whose " .. field .. " is BETWEEN two instants, inclusive", function()
      local times = {}
      for _, s in ipairs(SETS) do times[#times + 1] = s[field] end
      table.sort(times)
      local lo, hi_ = times[math.floor(#times / 4) + 1], times[math.floor(#times * 3 / 4)]
      local got = search(client, { filters = { { operator = "BETWEEN",
        values = { { [field] = lo }, { [field] = hi_ } } } } })
      local want = expect_ids(function(s) return s[field] >= lo and s[field] <= hi_ end)
      assert.is_true(#want >= 2)
      assert.are.same(want, sorted(ids_of(got)))
    end)
  end

  it("accepts the BETWEEN bounds as ISO-8601 strings", function()
    local got = search(client, { filters = { { operator = "BETWEEN",
      values = { { createdAt = "1970-01-01T00:00:00Z" }, { createdAt = "2100-01-01T00:00:00Z" } } } } })
    assert.are.equal(#SETS, #got)
  end)

  it("finds a study-date range with DICOMStudyDateAndTime BETWEEN", function()
    local dates = {}
    for _, s in ipairs(SETS) do
      if study_date(s) then dates[#dates + 1] = study_date(s) end
    end
    table.sort(dates)
    local lo, hi_ = dates[2], dates[#dates - 1]
    local got = search(client, { filters = { { operator = "BETWEEN", values = {
      { DICOMStudyDateAndTime = { DICOMStudyDate = lo, DICOMStudyTime = "000000" } },
      { DICOMStudyDateAndTime = { DICOMStudyDate = hi_, DICOMStudyTime = "235959.999999" } } } } } })
    local want = expect_ids(function(s)
      local d = study_date(s)
      return d ~= nil and d >= lo and d <= hi_
    end)
    assert.is_true(#want >= 2)
    assert.are.same(want, sorted(ids_of(got)))
  end)

  it("AND-s two filters", function()
    local study = common_value(function(s) return tag(s, "DICOMStudyInstanceUID") end)
    local got = search(client, { filters = {
      { operator = "EQUAL", values = { { DICOMStudyInstanceUID = study } } },
      { operator = "EQUAL", values = { { isPrimary = true } } } } })
    local want = expect_ids(function(s) return tag(s, "DICOMStudyInstanceUID") == study and s.isPrimary end)
    assert.are.same(want, sorted(ids_of(got)))
  end)

  local sort_keys = {
    createdAt = function(s) return s.createdAt end,
    updatedAt = function(s) return s.updatedAt end,
    DICOMStudyDateAndTime = study_dt,
  }
  for field, key in pairs(sort_keys) do
    for _, order in ipairs { "ASC", "DESC" } do
      it("sorts by " .. field .. " " .. order .. ", across pages, and echoes the sort", function()
        local full = client:get_paginator("search_image_sets"):paginate {
          datastoreId = DS, searchCriteria = { sort = { sortField = field, sortOrder = order } },
          PaginationConfig = { PageSize = 7 } }:build_full_result()
        local got = full.imageSetsMetadataSummaries
        assert.are.equal(#SETS, #got)
        assert.are.same({ sortField = field, sortOrder = order }, full.sort)
        for i = 2, #got do
          local a, b = key(got[i - 1]), key(got[i])
          if a == nil or b == nil then
            assert.is_true(b == nil, "an image set without study date is not last, at position " .. i)
          elseif order == "ASC" then
            assert.is_true(a <= b, "not ASC at position " .. i)
          else
            assert.is_true(a >= b, "not DESC at position " .. i)
          end
        end
      end)
    end
  end

  it("pages through everything with any page size, with no duplicate and no gap", function()
    local all = sorted(ids_of(search(client, nil, 50)))
    for _, size in ipairs { 1, 4, 13 } do
      local got = ids_of(search(client, nil, size))
      assert.are.same(all, sorted(got))
    end
  end)

  it("stops at MaxItems and resumes from the token with the next image set", function()
    local p = client:get_paginator("search_image_sets")
    local whole = ids_of(search(client, nil, 5))
    local first = p:paginate { datastoreId = DS, PaginationConfig = { MaxItems = 8, PageSize = 5 } }
    local a = ids_of(first:build_full_result().imageSetsMetadataSummaries)
    assert.is_string(first.resume_token)
    local rest = p:paginate { datastoreId = DS, PaginationConfig = { PageSize = 5,
      StartingToken = first.resume_token } }
    local b = ids_of(rest:build_full_result().imageSetsMetadataSummaries)
    assert.are.equal(8, #a)
    for i, id in ipairs(b) do a[8 + i] = id end
    assert.are.same(whole, a)
  end)

  it("answers an empty list as an empty table", function()
    local res, err = client:search_image_sets { datastoreId = DS, searchCriteria = { filters = { {
      operator = "EQUAL", values = { { DICOMPatientId = "no such patient id" } } } } } }
    assert.is_nil(err)
    assert.are.same({}, res.imageSetsMetadataSummaries)
    assert.is_nil(res.nextToken)
  end)

  it("uses one TCP connection for a whole scan (keep-alive)", function()
    local c = helpers.client(emu)
    local _, before = helpers.control(emu, "GET", "/_local/stats")
    search(c, nil, 3)
    local _, after = helpers.control(emu, "GET", "/_local/stats")
    c:close()
    -- one connection for the whole scan, one for the second stats request
    assert.are.equal(2, after.connections - before.connections)
  end)
end)

describe("the response types", function()
  local emu, client, got

  setup(function()
    emu = helpers.start_emulator()
    client = helpers.client(emu)
    got = {}
    for _, s in ipairs(search(client, nil)) do got[s.imageSetId] = s end
  end)

  teardown(function()
    client:close()
    emu.stop()
  end)

  it("makes version, DICOMSeriesNumber and the counts Lua integers", function()
    local checked = 0
    for _, s in pairs(got) do
      assert.are.equal("integer", math.type(s.version))
      for _, k in ipairs { "DICOMSeriesNumber", "DICOMNumberOfStudyRelatedSeries",
                           "DICOMNumberOfStudyRelatedInstances" } do
        local v = s.DICOMTags[k]
        if v ~= nil then
          assert.are.equal("integer", math.type(v), s.imageSetId .. " " .. k)
          checked = checked + 1
        end
      end
    end
    assert.is_true(checked > 30)
  end)

  it("keeps timestamps as epoch seconds with their fractions", function()
    local fractional = 0
    for _, s in ipairs(SETS) do
      local g = got[s.imageSetId]
      assert.are.equal(s.createdAt, g.createdAt)
      assert.are.equal(s.updatedAt, g.updatedAt)
      if g.updatedAt % 1 ~= 0 then fractional = fractional + 1 end
    end
    assert.is_true(fractional > 0, "no timestamp with a fraction in the data")
  end)

  it("never returns cjson.null or a userdata anywhere", function()
    local function walk(v, path)
      assert.are_not.equal("userdata", type(v), path)
      if type(v) == "table" then
        for k, x in pairs(v) do walk(x, path .. "." .. tostring(k)) end
      end
    end
    for id, s in pairs(got) do walk(s, id) end
  end)

  it("returns every DICOM tag as imported, byte for byte", function()
    for _, s in ipairs(SETS) do
      local g = got[s.imageSetId]
      for k, v in pairs(s.DICOMTags) do
        assert.is_true(g.DICOMTags[k] == v, s.imageSetId .. " " .. k .. " differs")
      end
      for k in pairs(g.DICOMTags) do
        assert.is_true(s.DICOMTags[k] ~= nil, s.imageSetId .. " " .. k .. " was not imported")
      end
    end
  end)

  it("decodes non-Latin patient names to the same UTF-8 as pydicom", function()
    -- pydicom reads each charset file; we compare SHA-256 digests so that
    -- no name is ever printed.
    local out = helpers.python([[
import glob, hashlib, os, pydicom
d = os.path.join(os.path.dirname(pydicom.__file__), "data", "charset_files")
for f in sorted(glob.glob(os.path.join(d, "*.dcm"))):
    try:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        uid, name = str(ds.SeriesInstanceUID), ds.get("PatientName")
    except Exception:
        continue
    if name is None or str(name) == "":
        continue
    print(uid, hashlib.sha256(str(name).encode("utf-8")).hexdigest())
]])
    local by_series = {}
    for _, s in pairs(got) do
      if s.DICOMTags.DICOMSeriesInstanceUID then by_series[s.DICOMTags.DICOMSeriesInstanceUID] = s end
    end
    local compared, non_ascii = 0, 0
    for uid, digest in out:gmatch("(%S+) (%x+)\n") do
      local s = by_series[uid]
      if s and s.DICOMTags.DICOMPatientName then
        compared = compared + 1
        local name = s.DICOMTags.DICOMPatientName
        if name:find("[\128-\255]") then non_ascii = non_ascii + 1 end
        assert.is_true(core._sigv4.sha256_hex(name) == digest, "patient name of series " .. uid .. " differs")
      end
    end
    assert.is_true(compared >= 8, "compared only " .. compared)
    assert.is_true(non_ascii >= 6, "only " .. non_ascii .. " non-ASCII names")
  end)
end)

describe("the error object", function()
  local emu, client

  setup(function()
    emu = helpers.start_emulator()
    -- one attempt: the answer of the service itself, not what retries make of it
    client = helpers.client(emu, { max_attempts = 1 })
  end)

  teardown(function()
    client:close()
    emu.stop()
  end)

  after_each(function()
    helpers.control(emu, "DELETE", "/_local/faults")
  end)

  local modeled = {
    { "ValidationException", 400, false },
    { "AccessDeniedException", 403, false },
    { "ResourceNotFoundException", 404, false },
    { "ConflictException", 409, false },
    { "ThrottlingException", 429, true },
    { "InternalServerException", 500, true },
  }
  for _, m in ipairs(modeled) do
    local code, status, retryable = m[1], m[2], m[3]
    it("reports " .. code .. " with its status, message and request id", function()
      assert.are.equal(200, (helpers.control(emu, "POST", "/_local/faults", { code = code, times = 1 })))
      local res, err = client:search_image_sets { datastoreId = DS }
      assert.is_nil(res)
      assert.is_true(hi.is_error(err))
      assert.are.equal(code, err.code)
      assert.are.equal(status, err.status)
      assert.are.equal(retryable, err.retryable)
      assert.is_string(err.message)
      assert.is_true(#err.message > 0)
      assert.is_truthy(err.request_id and err.request_id:find("^%x+%-%x+%-%x+%-%x+%-%x+$"), "request id")
      local text = tostring(err)
      assert.is_truthy(text:find("^" .. code .. ": "))
      assert.is_truthy(text:find("HTTP " .. status, 1, true))
      assert.is_falsy(text:find(helpers.CREDENTIALS.secret_access_key, 1, true))
      -- the next request is not affected
      local res2 = client:search_image_sets { datastoreId = DS }
      assert.is_table(res2 and res2.imageSetsMetadataSummaries)
    end)
  end

  it("reports an unknown data store as ResourceNotFoundException", function()
    local _, err = client:search_image_sets { datastoreId = string.rep("0", 32) }
    assert.are.equal("ResourceNotFoundException", err.code)
    assert.are.equal(404, err.status)
  end)

  it("reports a wrong secret as InvalidSignatureException, without showing the secret", function()
    local c = helpers.client(emu, { credentials = {
      access_key_id = helpers.CREDENTIALS.access_key_id, secret_access_key = "wrong-secret-value" } })
    local _, err = c:search_image_sets { datastoreId = DS }
    c:close()
    assert.are.equal("InvalidSignatureException", err.code)
    assert.are.equal(403, err.status)
    assert.is_falsy(tostring(err):find("wrong-secret-value", 1, true))
  end)

  it("reports an unknown access key as UnrecognizedClientException", function()
    local c = helpers.client(emu, { credentials = { access_key_id = "AKIDUNKNOWN", secret_access_key = "x" } })
    local _, err = c:search_image_sets { datastoreId = DS }
    c:close()
    assert.are.equal("UnrecognizedClientException", err.code)
    assert.are.equal(403, err.status)
  end)

  it("corrects a clock an hour off from the server's Date header, and retries once", function()
    local events = {}
    local c = helpers.client(emu, { max_attempts = 2, clock = function() return os.time() - 3600 end,
                                    debug = function(e) events[#events + 1] = e end })
    local res, err = c:search_image_sets { datastoreId = DS }
    c:close()
    assert.is_nil(err)
    assert.is_table(res.imageSetsMetadataSummaries)
    local retries = {}
    for _, e in ipairs(events) do
      if e.type == "retry" then retries[#retries + 1] = e.code end
    end
    assert.are.same({ "InvalidSignatureException" }, retries)
  end)

  -- As the JS SDK does (make conformance): the corrected retry is an attempt.
  it("with max_attempts = 1, learns the clock offset but makes no second attempt", function()
    local c = helpers.client(emu, { max_attempts = 1, clock = function() return os.time() - 3600 end })
    local _, err = c:search_image_sets { datastoreId = DS }
    assert.are.equal("InvalidSignatureException", err.code)
    assert.are.equal(1, err.attempts)
    local res, err2 = c:search_image_sets { datastoreId = DS }
    c:close()
    assert.is_nil(err2)
    assert.is_table(res.imageSetsMetadataSummaries)
  end)

  it("reports an expired signature when the clock cannot be corrected", function()
    local stub = helpers.stub_transport {
      { status = 403, headers = { ["x-amzn-errortype"] = "InvalidSignatureException" },
        body = '{"message":"Signature expired: 20200101T000000Z is now earlier than 20200101T000500Z"}' },
    }
    local c = assert(hi.client { region = "us-east-1", credentials = helpers.CREDENTIALS, transport = stub })
    local _, err = c:search_image_sets { datastoreId = DS }
    assert.are.equal("InvalidSignatureException", err.code)
    assert.is_truthy(err.message:find("expired", 1, true))
    assert.are.equal(1, #stub.requests)
  end)

  it("reports a refused connection as a retryable ConnectionError", function()
    local c = assert(hi.client { region = "us-east-1", credentials = helpers.CREDENTIALS,
      endpoint_url = "http://127.0.0.1:9", connect_timeout = 2 })
    local _, err = c:search_image_sets { datastoreId = DS }
    assert.are.equal("ConnectionError", err.code)
    assert.is_true(err.retryable)
    assert.is_nil(err.status)
  end)
end)

-- Validation happens before anything is sent, against the model's
-- constraints, and the error names the path and the rule (never the value).
local helpers = require "helpers"
local hi = require "healthimaging"

local ID = "0123456789abcdefghijklmnopqrstuv"

local function client_with_stub()
  local stub = helpers.stub_transport(function()
    return 200, {}, '{"imageSetsMetadataSummaries":[]}'
  end)
  local c = assert(hi.client {
    region = "us-east-1", credentials = helpers.CREDENTIALS, transport = stub,
  })
  return c, stub
end

local function criteria(value, operator)
  return { filters = { { operator = operator or "EQUAL", values = { value } } } }
end

describe("search_image_sets validation", function()
  -- { description, params, path named in the error, rule fragment }
  local cases = {
    { "a missing datastoreId", {}, "datastoreId", "is required" },
    { "a datastoreId that is too short", { datastoreId = "abc" }, "datastoreId",
      "must be 32 characters long, got 3" },
    { "a datastoreId with capitals", { datastoreId = string.rep("A", 32) }, "datastoreId",
      "must match ^[0-9a-z]{32}$" },
    { "a datastoreId that is not a string", { datastoreId = 42 }, "datastoreId", "must be a string, got number" },
    { "an unknown parameter", { datastoreId = ID, maxresults = 3 }, "maxresults", "is not a member" },
    { "maxResults of 0", { datastoreId = ID, maxResults = 0 }, "maxResults", "must be between 1 and 50, got 0" },
    { "maxResults of 51", { datastoreId = ID, maxResults = 51 }, "maxResults", "must be between 1 and 50, got 51" },
    { "a fractional maxResults", { datastoreId = ID, maxResults = 2.5 }, "maxResults",
      "must be an integer, got a non-integral number" },
    { "a NaN maxResults", { datastoreId = ID, maxResults = 0 / 0 }, "maxResults", "must be an integer" },
    { "an empty nextToken", { datastoreId = ID, nextToken = "" }, "nextToken", "must be 1 to 8192 characters long" },
    { "a nextToken of 8193 characters", { datastoreId = ID, nextToken = string.rep("a", 8193) }, "nextToken",
      "must be 1 to 8192 characters long, got 8193" },
    { "a non-ASCII nextToken", { datastoreId = ID, nextToken = "t\195\169" }, "nextToken",
      "must contain only ASCII characters" },
    { "searchCriteria that is a string", { datastoreId = ID, searchCriteria = "CT" }, "searchCriteria",
      "must be a table (structure), got string" },
    { "an empty filters list", { datastoreId = ID, searchCriteria = { filters = {} } }, "searchCriteria.filters",
      "must have 1 to 2 items, got 0" },
    { "three filters", { datastoreId = ID, searchCriteria = { filters = {
        criteria({ isPrimary = true }).filters[1], criteria({ isPrimary = true }).filters[1],
        criteria({ isPrimary = true }).filters[1] } } },
      "searchCriteria.filters", "must have 1 to 2 items, got 3" },
    { "a filters list with a hole", { datastoreId = ID, searchCriteria = { filters = {
        [1] = criteria({ isPrimary = true }).filters[1], [3] = criteria({ isPrimary = true }).filters[1] } } },
      "searchCriteria.filters", "must be a list" },
    { "a filter without operator", { datastoreId = ID, searchCriteria = { filters = { { values = {
        { isPrimary = true } } } } } },
      "searchCriteria.filters[1].operator", "is required" },
    { "an unknown operator", { datastoreId = ID, searchCriteria = criteria({ isPrimary = true }, "LIKE") },
      "searchCriteria.filters[1].operator", "must be one of EQUAL, BETWEEN" },
    { "three values", { datastoreId = ID, searchCriteria = { filters = { { operator = "BETWEEN", values = {
        { createdAt = 1 }, { createdAt = 2 }, { createdAt = 3 } } } } } },
      "searchCriteria.filters[1].values", "must have 1 to 2 items, got 3" },
    { "a value with two members", { datastoreId = ID, searchCriteria = { filters = { { operator = "EQUAL",
        values = { { isPrimary = true }, { DICOMPatientId = "x", DICOMStudyId = "y" } } } } } },
      "searchCriteria.filters[1].values[2]", "must set exactly one member, got 2 (DICOMPatientId, DICOMStudyId)" },
    { "a value with no member", { datastoreId = ID, searchCriteria = criteria({}) },
      "searchCriteria.filters[1].values[1]", "must set exactly one member, got 0" },
    { "an unknown member", { datastoreId = ID, searchCriteria = criteria({ DICOMPatientName = "x" }) },
      "searchCriteria.filters[1].values[1].DICOMPatientName", "is not a member" },
    { "a patient id of 513 characters", { datastoreId = ID, searchCriteria = criteria({
        DICOMPatientId = string.rep("x", 513) }) },
      "searchCriteria.filters[1].values[1].DICOMPatientId", "must be 0 to 512 characters long, got 513" },
    { "a study instance UID with letters", { datastoreId = ID, searchCriteria = criteria({
        DICOMStudyInstanceUID = "1.2.abc" }) },
      "searchCriteria.filters[1].values[1].DICOMStudyInstanceUID", "must match ^[0-9.]+$" },
    { "a series instance UID with letters", { datastoreId = ID, searchCriteria = criteria({
        DICOMSeriesInstanceUID = "1.2.3x" }) },
      "searchCriteria.filters[1].values[1].DICOMSeriesInstanceUID", "must match ^[0-9.]+$" },
    { "invalid UTF-8 in a patient id", { datastoreId = ID, searchCriteria = criteria({
        DICOMPatientId = "\255\254" }) },
      "searchCriteria.filters[1].values[1].DICOMPatientId", "must be valid UTF-8" },
    { "isPrimary as a string", { datastoreId = ID, searchCriteria = criteria({ isPrimary = "true" }) },
      "searchCriteria.filters[1].values[1].isPrimary", "must be a boolean, got string" },
    { "a createdAt that is not a date", { datastoreId = ID, searchCriteria = criteria({ createdAt = "yesterday" },
        "BETWEEN") },
      "searchCriteria.filters[1].values[1].createdAt", "must be epoch seconds or an ISO-8601 date-time" },
    { "an infinite updatedAt", { datastoreId = ID, searchCriteria = criteria({ updatedAt = math.huge },
        "BETWEEN") },
      "searchCriteria.filters[1].values[1].updatedAt", "must be a finite number" },
    { "a February 30th", { datastoreId = ID, searchCriteria = criteria({ updatedAt = "2024-02-30" },
        "BETWEEN") },
      "searchCriteria.filters[1].values[1].updatedAt", "must be epoch seconds or an ISO-8601 date-time" },
    { "a study date and time without the date", { datastoreId = ID, searchCriteria = criteria({
        DICOMStudyDateAndTime = { DICOMStudyTime = "120000" } }, "BETWEEN") },
      "searchCriteria.filters[1].values[1].DICOMStudyDateAndTime.DICOMStudyDate", "is required" },
    { "a study date longer than 36 characters", { datastoreId = ID, searchCriteria = criteria({
        DICOMStudyDateAndTime = { DICOMStudyDate = string.rep("1", 37) } }, "BETWEEN") },
      "searchCriteria.filters[1].values[1].DICOMStudyDateAndTime.DICOMStudyDate",
      "must be 0 to 36 characters long, got 37" },
    { "a sort without sortOrder", { datastoreId = ID, searchCriteria = { sort = { sortField = "createdAt" } } },
      "searchCriteria.sort.sortOrder", "is required" },
    { "a sort on an unknown field", { datastoreId = ID, searchCriteria = { sort = { sortField = "DICOMPatientId",
        sortOrder = "ASC" } } },
      "searchCriteria.sort.sortField", "must be one of updatedAt, createdAt, DICOMStudyDateAndTime" },
    { "a lowercase sort order", { datastoreId = ID, searchCriteria = { sort = { sortField = "createdAt",
        sortOrder = "asc" } } },
      "searchCriteria.sort.sortOrder", "must be one of ASC, DESC" },
    { "a key that is not a name", { datastoreId = ID, searchCriteria = { [1] = "x" } }, "searchCriteria",
      "has a key that is not a member name (number)" },
  }

  for _, case in ipairs(cases) do
    local what, params, path, rule = case[1], case[2], case[3], case[4]
    it("rejects " .. what .. ", naming " .. path .. ", and sends nothing", function()
      local c, stub = client_with_stub()
      local res, err = c:search_image_sets(params)
      assert.is_nil(res)
      assert.are.equal("ParamValidationError", err.code)
      assert.are.equal(path, err.path)
      assert.is_truthy(err.message:find("Invalid parameter " .. path .. ": ", 1, true), err.message)
      assert.is_truthy(err.message:find(rule, 1, true), err.message)
      assert.is_false(err.retryable)
      assert.is_nil(err.status)
      assert.are.equal(0, #stub.requests)
    end)
  end

  it("never shows the rejected value in the message", function()
    local c = client_with_stub()
    local secret_name = "PATIENT-" .. string.rep("Z", 600)
    local _, err = c:search_image_sets { datastoreId = ID, searchCriteria = criteria({ DICOMPatientId = secret_name }) }
    assert.is_falsy(tostring(err):find("PATIENT-", 1, true))
    assert.is_falsy(err.message:find("ZZZ", 1, true))
  end)

  it("raises at once when the parameters are not a table (programmer misuse)", function()
    local c = client_with_stub()
    assert.has_error(function() c:search_image_sets("id") end,
      "bad argument #1 to 'search_image_sets' (table expected, got string)")
  end)

  it("raises at once when called with a dot instead of a colon", function()
    local c = client_with_stub()
    assert.has_error(function() c.search_image_sets({ datastoreId = ID }) end,
      "bad argument #1 to 'search_image_sets' (healthimaging.client expected; use client:search_image_sets)")
  end)

  it("accepts every union member and both operators", function()
    local c, stub = client_with_stub()
    local values = {
      { DICOMPatientId = "P1" }, { DICOMAccessionNumber = "A1" }, { DICOMStudyId = "S1" },
      { DICOMStudyInstanceUID = "1.2.3" }, { DICOMSeriesInstanceUID = "1.2.3.4" },
      { createdAt = 0 }, { updatedAt = "2024-01-31T12:00:00Z" },
      { DICOMStudyDateAndTime = { DICOMStudyDate = "20240131", DICOMStudyTime = "120000" } },
      { isPrimary = false },
    }
    for _, v in ipairs(values) do
      for _, op in ipairs { "EQUAL", "BETWEEN" } do
        local res, err = c:search_image_sets { datastoreId = ID, searchCriteria = criteria(v, op) }
        assert.is_nil(err)
        assert.is_table(res)
      end
    end
    assert.are.equal(#values * 2, #stub.requests)
  end)

  it("leaves the caller's table unchanged", function()
    local c = client_with_stub()
    local params = { datastoreId = ID, searchCriteria = criteria({ createdAt = "2024-01-31T00:00:00Z" }, "BETWEEN") }
    assert.truthy(c:search_image_sets(params))
    assert.are.equal("2024-01-31T00:00:00Z", params.searchCriteria.filters[1].values[1].createdAt)
  end)
end)

describe("an unknown member", function()
  it("is named when it looks like a misspelt name, with the members that exist", function()
    local c = client_with_stub()
    local _, err = c:search_image_sets { datastoreId = ID, searchCriteria = { filter = {} } }
    assert.are.equal("searchCriteria.filter", err.path)
    assert.is_truthy(err.message:find("(filters, sort)", 1, true))
  end)

  it("is not echoed when it could be a value put in the wrong place", function()
    local c = client_with_stub()
    local _, err = c:search_image_sets { datastoreId = ID, searchCriteria = { filters = { { operator = "EQUAL",
      values = { { ["PAT-12345"] = "DICOMPatientId" } } } } } }
    assert.are.equal("searchCriteria.filters[1].values[1].<a key that is not a member name>", err.path)
    assert.is_falsy(tostring(err):find("PAT-12345", 1, true))
  end)
end)

-- bin/healthimaging search-image-sets, as a user runs it: its JSON output is
-- build_full_result, its failures one line on stderr with the AWS CLI's
-- exit codes. Tag values are compared without being printed.
local helpers = require "helpers"
local core = require "healthimaging.core"
local model = require "healthimaging.model"

local DS = helpers.DATASTORE_ID

describe("the healthimaging CLI", function()
  local emu, env

  setup(function()
    emu = helpers.start_emulator()
    env = "env AWS_ACCESS_KEY_ID=" .. helpers.CREDENTIALS.access_key_id
      .. " AWS_SECRET_ACCESS_KEY=" .. helpers.CREDENTIALS.secret_access_key
      .. " AWS_REGION=us-east-1 AWS_PROFILE= AWS_ENDPOINT_URL= AWS_ENDPOINT_URL_MEDICAL_IMAGING= "
  end)

  teardown(function() emu.stop() end)

  local function cli(args)
    return helpers.run(env .. "bin/healthimaging search-image-sets --endpoint-url " .. emu.url .. " " .. args)
  end

  local function library_result(params)
    local c = helpers.client(emu)
    params.datastoreId = DS
    local r = c:get_paginator("search_image_sets"):paginate(params):build_full_result()
    c:close()
    return r
  end

  it("prints build_full_result as JSON", function()
    local code, out, err = cli("--datastore-id " .. DS .. " --page-size 9")
    assert.are.equal(0, code, err)
    assert.are.equal("", err)
    local printed = core.json_decode(out, model.INTEGER_KEYS)
    local ok, where = helpers.same(library_result {}, printed)
    assert.is_true(ok, where)
  end)

  it("takes the search criteria as JSON text or from a file://", function()
    local crit = '{"filters":[{"operator":"EQUAL","values":[{"isPrimary":false}]}],'
      .. '"sort":{"sortField":"createdAt","sortOrder":"ASC"}}'
    local want = library_result { searchCriteria = core.json_decode(crit) }
    local code, out = cli("--datastore-id " .. DS .. " --search-criteria " .. helpers.shell_quote(crit))
    assert.are.equal(0, code)
    local ok, where = helpers.same(want, core.json_decode(out, model.INTEGER_KEYS))
    assert.is_true(ok, where)
    local file = os.tmpname()
    helpers.write(file, crit)
    code, out = cli("--datastore-id " .. DS .. " --search-criteria file://" .. file)
    os.remove(file)
    assert.are.equal(0, code)
    ok, where = helpers.same(want, core.json_decode(out, model.INTEGER_KEYS))
    assert.is_true(ok, where)
  end)

  it("stops at --max-items with NextToken, and --starting-token resumes after it", function()
    local all = library_result {}.imageSetsMetadataSummaries
    local code, out = cli("--datastore-id " .. DS .. " --max-items 6 --page-size 4")
    assert.are.equal(0, code)
    local first = core.json_decode(out, model.INTEGER_KEYS)
    assert.are.equal(6, #first.imageSetsMetadataSummaries)
    assert.is_string(first.NextToken)
    code, out = cli("--datastore-id " .. DS .. " --page-size 4 --starting-token " .. first.NextToken)
    assert.are.equal(0, code)
    local rest = core.json_decode(out, model.INTEGER_KEYS)
    assert.is_nil(rest.NextToken)
    assert.are.equal(#all, 6 + #rest.imageSetsMetadataSummaries)
    for i, s in ipairs(rest.imageSetsMetadataSummaries) do
      assert.are.equal(all[6 + i].imageSetId, s.imageSetId)
    end
  end)

  it("prints a table with --output table", function()
    local code, out = cli("--datastore-id " .. DS .. " --output table --max-items 3")
    assert.are.equal(0, code)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.is_truthy(lines[1]:find("^imageSetId%s+Modality"))
    assert.are.equal("3 image sets", lines[5])
    assert.is_truthy(lines[6]:find("^NextToken: "))
  end)

  -- { what, arguments, exit code, start of the stderr line }
  local failures = {
    { "an invalid datastore id", "--datastore-id short", 252,
      "healthimaging: ParamValidationError: Invalid parameter datastoreId" },
    { "an unknown data store", "--datastore-id " .. string.rep("0", 32), 254,
      "healthimaging: ResourceNotFoundException: " },
    { "search criteria that are not JSON", "--datastore-id " .. DS .. " --search-criteria '{nope'", 252,
      "healthimaging: --search-criteria is not a JSON object" },
    { "a page size over 50", "--datastore-id " .. DS .. " --page-size 51", 252,
      "healthimaging: ParamValidationError: Invalid parameter PaginationConfig.PageSize" },
    { "a max-items that is not a number", "--datastore-id " .. DS .. " --max-items ten", 252,
      "healthimaging: --max-items must be an integer" },
    { "an unknown option", "--datastore-id " .. DS .. " --colour red", 252,
      "healthimaging: unknown option '--colour'" },
    { "a missing datastore id", "", 252, "healthimaging: --datastore-id is required" },
  }
  for _, f in ipairs(failures) do
    it("fails on " .. f[1] .. " with one line on stderr and exit code " .. f[3], function()
      local code, out, err = cli(f[2])
      assert.are.equal(f[3], code)
      assert.are.equal("", out)
      assert.are.equal(1, select(2, err:gsub("\n", "")), "one line")
      assert.is_truthy(err:find(f[4], 1, true), err)
    end)
  end

  it("fails with 255 when the endpoint cannot be reached", function()
    local code, out, err = helpers.run(env .. "bin/healthimaging search-image-sets --endpoint-url http://127.0.0.1:9"
      .. " --datastore-id " .. DS)
    assert.are.equal(255, code)
    assert.are.equal("", out)
    assert.is_truthy(err:find("^healthimaging: ConnectionError: "))
  end)

  it("shows its usage with --help", function()
    local code, out = helpers.run("bin/healthimaging --help")
    assert.are.equal(0, code)
    assert.is_truthy(out:find("usage: healthimaging search-image-sets", 1, true))
  end)
end)

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

  it("says '1 image set' in the table, not '1 image sets'", function()
    local code, out = cli("--datastore-id " .. DS .. " --output table --max-items 1")
    assert.are.equal(0, code)
    assert.is_truthy(out:find("\n1 image set\nNextToken: ", 1, true), "the count line")
  end)

  it("takes a criteria file of exactly 1 MiB (the most it reads)", function()
    local file = os.tmpname()
    local crit = '{"filters":[{"operator":"EQUAL","values":[{"isPrimary":false}]}]}'
    helpers.write(file, crit .. string.rep(" ", 1024 * 1024 - #crit))
    local code, out, err = cli("--datastore-id " .. DS .. " --search-criteria file://" .. file)
    os.remove(file)
    assert.are.equal(0, code, err)
    local ok, where = helpers.same(library_result { searchCriteria = core.json_decode(crit) },
      core.json_decode(out, model.INTEGER_KEYS))
    assert.is_true(ok, where)
  end)

  -- Criteria files for the failures below, made once.
  local too_big = os.tmpname()
  helpers.write(too_big, "{}" .. string.rep(" ", 1024 * 1024 - 1))
  local array_file = os.tmpname()
  helpers.write(array_file, " \n[]\n")

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
    { "a criteria file:// that is a directory", "--datastore-id " .. DS .. " --search-criteria file:///tmp", 252,
      "healthimaging: cannot read --search-criteria file /tmp: " },
    { "a criteria file that never ends (/dev/zero)", "--datastore-id " .. DS .. " --search-criteria file:///dev/zero",
      252, "healthimaging: --search-criteria file /dev/zero is larger than 1 MiB" },
    { "a criteria file of 1 MiB and one byte", "--datastore-id " .. DS .. " --search-criteria file://" .. too_big, 252,
      "is larger than 1 MiB" },
    { "criteria that are a JSON array, not an object", "--datastore-id " .. DS .. " --search-criteria '[]'", 252,
      "healthimaging: --search-criteria is not a JSON object" },
    { "a criteria file holding a JSON array", "--datastore-id " .. DS .. " --search-criteria file://" .. array_file,
      252, "healthimaging: --search-criteria is not a JSON object" },
    { "a hexadecimal --max-items", "--datastore-id " .. DS .. " --max-items 0x10", 252,
      "healthimaging: --max-items must be an integer" },
    { "a --max-items in exponent notation", "--datastore-id " .. DS .. " --max-items 1e3", 252,
      "healthimaging: --max-items must be an integer" },
    { "a --max-items with a leading space", "--datastore-id " .. DS .. " --max-items ' 5'", 252,
      "healthimaging: --max-items must be an integer" },
    { "a --page-size with a decimal point", "--datastore-id " .. DS .. " --page-size 5.0", 252,
      "healthimaging: --page-size must be an integer" },
    { "a hexadecimal --page-size", "--datastore-id " .. DS .. " --page-size=0x10", 252,
      "healthimaging: --page-size must be an integer" },
  }
  for _, f in ipairs(failures) do
    it("fails on " .. f[1] .. " with one line on stderr and exit code " .. f[3], function()
      -- Memory capped (as a host would): reading /dev/zero whole would fail
      -- here at once instead of filling the machine.
      local code, out, err = helpers.run("ulimit -v 600000; " .. env .. "bin/healthimaging search-image-sets"
        .. " --endpoint-url " .. emu.url .. " " .. f[2])
      assert.are.equal(f[3], code)
      assert.are.equal("", out)
      assert.are.equal(1, select(2, err:gsub("\n", "")), "one line")
      assert.is_truthy(err:find(f[4], 1, true), err)
    end)
  end

  it("accepts a signed integer option (+N)", function()
    local code, out, err = cli("--datastore-id " .. DS .. " --max-items +2 --page-size 2")
    assert.are.equal(0, code, err)
    assert.are.equal(2, #core.json_decode(out, model.INTEGER_KEYS).imageSetsMetadataSummaries)
  end)

  it("fails with 255 when the endpoint cannot be reached", function()
    local code, out, err = helpers.run(env .. "bin/healthimaging search-image-sets --endpoint-url http://127.0.0.1:9"
      .. " --datastore-id " .. DS)
    assert.are.equal(255, code)
    assert.are.equal("", out)
    assert.is_truthy(err:find("^healthimaging: ConnectionError: "))
  end)

  teardown(function()
    os.remove(too_big)
    os.remove(array_file)
  end)

  it("shows its usage with --help", function()
    local code, out = helpers.run("bin/healthimaging --help")
    assert.are.equal(0, code)
    assert.is_truthy(out:find("usage: healthimaging search-image-sets", 1, true))
  end)
end)

describe("the healthimaging CLI's JSON output", function()
  -- A server that answers one request with fixed bytes: what the emulator
  -- never sends (a number beyond the double range, bytes that are not
  -- UTF-8) but a service or a proxy in between could.
  local STUB = [[
import http.server, sys
body = open(sys.argv[1], "rb").read()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
server.timeout = 20
print("listening on http://127.0.0.1:%d" % server.server_address[1], flush=True)
server.handle_request()
]]

  -- Runs the CLI against the stub answering `body`: exit code, stdout, stderr.
  local function cli_against(body)
    local script, body_file = os.tmpname(), os.tmpname()
    helpers.write(script, STUB)
    helpers.write(body_file, body)
    local h = assert(io.popen(helpers.PYTHON .. " " .. script .. " " .. body_file))
    local url = (h:read("l") or ""):match("^listening on (http://[%d.]+:%d+)$")
    local code, out, err = 255, "", "the stub server did not start"
    if url then
      code, out, err = helpers.run("env AWS_ACCESS_KEY_ID=AKIDSTUB AWS_SECRET_ACCESS_KEY=stub-secret"
        .. " AWS_REGION=us-east-1 AWS_PROFILE= bin/healthimaging search-image-sets --endpoint-url " .. url
        .. " --datastore-id " .. helpers.DATASTORE_ID)
    end
    h:close()
    os.remove(script)
    os.remove(body_file)
    return code, out, err
  end

  -- Python's json, strict (no Infinity or NaN, UTF-8 only), reads the output
  -- and prints the values that matter, each as ASCII JSON.
  local ORACLE = [[
import json, sys
def refuse(name):
    raise ValueError("not JSON: " + name)
doc = json.loads(sys.stdin.buffer.read().decode("utf-8"), parse_constant=refuse)
s = doc["imageSetsMetadataSummaries"][0]
for v in (s["createdAt"], s["updatedAt"], s["version"], s["DICOMTags"]["DICOMStudyDescription"],
          s["DICOMTags"]["DICOMAccessionNumber"]):
    print(json.dumps(v))
]]

  it("prints numbers beyond the double range as null and bytes that are not UTF-8 as \\ufffd", function()
    local body = '{"imageSetsMetadataSummaries":[{"imageSetId":"0123456789abcdef0123456789abcdef",'
      .. '"version":1,"createdAt":1e400,"updatedAt":-1e400,"isPrimary":true,"DICOMTags":{'
      .. '"DICOMStudyDescription":"a\255b\195\169c\237\160\128d\226\130",'
      .. '"DICOMAccessionNumber":"caf\195\169 \226\130\172 tab\\there"}}]}'
    local code, out, err = cli_against(body)
    assert.are.equal(0, code, err)
    -- Valid UTF-8 stays raw (not escaped); the bad bytes are escaped.
    assert.is_truthy(out:find("caf\195\169 \226\130\172 tab\\there", 1, true))
    assert.is_truthy(out:find('"a\\ufffdb\195\169c\\ufffd\\ufffd\\ufffdd\\ufffd\\ufffd"', 1, true))
    assert.is_truthy(out:find('"createdAt": null', 1, true))
    assert.are.equal(table.concat({
      "null", "null", "1",
      '"a\\ufffdb\\u00e9c\\ufffd\\ufffd\\ufffdd\\ufffd\\ufffd"',
      '"caf\\u00e9 \\u20ac tab\\there"', "" }, "\n"), helpers.python(ORACLE, out))
  end)
end)

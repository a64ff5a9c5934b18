-- The service's endpoint rules (transcribed in healthimaging.endpoints),
-- checked against every case of botocore's endpoint-tests-1.json, and
-- against botocore's own rules engine running the rule set itself (Debian's
-- python3-botocore, with its partitions data) for many more regions.
local helpers = require "helpers"
local endpoints = require "healthimaging.endpoints"
local core = require "healthimaging.core"
local hi = require "healthimaging"

local DIR = helpers.REFERENCE .. "/medical-imaging/"
local TESTS = DIR .. "endpoint-tests-1.json"
local RULES = DIR .. "endpoint-rule-set-1.json"

describe("the endpoint rules", function()
  if not helpers.exists(TESTS) or not helpers.exists(RULES) then
    it("match endpoint-tests-1.json", function()
      pending(TESTS .. " or " .. RULES .. " is absent: the endpoint rules are not checked against "
        .. "botocore's test cases or its rules engine")
    end)
    return
  end

  local cases = core.json_decode(helpers.read(TESTS)).testCases

  it("have test cases to check", function()
    assert.is_true(#cases >= 20, "only " .. #cases .. " cases")
  end)

  for i, case in ipairs(cases) do
    it("give case " .. i .. " its expected answer: " .. case.documentation, function()
      local url, err = endpoints.resolve(case.params or {})
      if case.expect.error then
        assert.is_nil(url)
        assert.are.equal(case.expect.error, err)
      else
        assert.are.equal(case.expect.endpoint.url, url)
      end
    end)
  end

  for i, case in ipairs(cases) do
    local p = case.params or {}
    if p.Region and not p.Endpoint then
      it("send case " .. i .. " through the client: " .. case.documentation, function()
        local stub = helpers.stub_transport { { status = 200, body = '{"imageSetsMetadataSummaries":[]}' } }
        helpers.with_aws_env({}, function()
          local c = assert(hi.client { region = p.Region, use_fips_endpoint = p.UseFIPS,
            use_dualstack_endpoint = p.UseDualStack, transport = stub, credentials = helpers.CREDENTIALS })
          local res, err = c:search_image_sets { datastoreId = helpers.DATASTORE_ID }
          if case.expect.error then
            assert.is_nil(res)
            assert.are.equal("EndpointResolutionError", err.code)
            assert.are.equal(case.expect.error, err.message)
            assert.are.equal(0, #stub.requests)
          else
            assert.is_table(res)
            local want = case.expect.endpoint.url:gsub("^https://", "https://runtime-")
            assert.are.equal(want .. "/datastore/" .. helpers.DATASTORE_ID .. "/searchImageSets",
              stub.requests[1].url)
          end
        end)
      end)
    end
  end

  it("agree with botocore's rules engine running the rule set, in every partition botocore's data knows", function()
    -- Regions: every one Debian's botocore lists, plus names its regexes
    -- match and one they do not. Partitions newer than that data (aws-iso-e,
    -- aws-iso-f, aws-eusc) are left out: there the old data itself differs.
    local code = [==[
import json, sys, itertools
from botocore.endpoint_provider import EndpointProvider
from botocore.loaders import create_loader
rules = json.load(open(sys.argv[1]))
parts = create_loader().load_data("partitions")
provider = EndpointProvider(rules, parts)
regions = ["us-east-9", "eu-west-8", "cn-south-7", "us-gov-north-4", "us-iso-north-2", "us-isob-west-3",
           "xx-nowhere-1", "local"]
for p in parts["partitions"]:
    regions.extend(sorted(p["regions"]))
out = []
for region, fips, ds, ep in itertools.product(regions, (False, True), (False, True), (None, "http://127.0.0.1:9")):
    params = {"Region": region, "UseFIPS": fips, "UseDualStack": ds}
    if ep:
        params["Endpoint"] = ep
    try:
        out.append([params, {"url": provider.resolve_endpoint(**params).url}])
    except Exception as e:
        out.append([params, {"error": str(e)}])
print(json.dumps(out))
]==]
    local script = os.tmpname()
    helpers.write(script, code)
    local code_, out = helpers.run(helpers.PYTHON .. " " .. script .. " " .. RULES)
    os.remove(script)
    assert.are.equal(0, code_, "the botocore oracle failed")
    local results = core.json_decode(out)
    assert.is_true(#results > 100)
    for _, r in ipairs(results) do
      local params, want = r[1], r[2]
      local url, err = endpoints.resolve(params)
      local what = core.json_encode(params)
      if want.url then
        assert.are.equal(want.url, url, what)
      else
        assert.is_nil(url, what)
        assert.matches(err, want.error, 1, true)
      end
    end
  end)

  it("name every partition of the SDKs' partitions data, each with its suffixes", function()
    local seen = {}
    for _, p in ipairs(endpoints.PARTITIONS) do seen[#seen + 1] = p.name end
    assert.are.same({ "aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f", "aws-eusc" },
      seen)
    assert.are.equal("https://medical-imaging.eu-isoe-west-1.cloud.adc-e.uk",
      endpoints.resolve { Region = "eu-isoe-west-1" })
    assert.are.equal("https://medical-imaging-fips.us-isof-south-1.csp.hci.ic.gov",
      endpoints.resolve { Region = "us-isof-south-1", UseFIPS = true })
    assert.are.equal("https://medical-imaging.eusc-de-east-1.amazonaws.eu",
      endpoints.resolve { Region = "eusc-de-east-1" })
    assert.are.equal("https://medical-imaging.il-central-1.api.aws",
      endpoints.resolve { Region = "il-central-1", UseDualStack = true })
    assert.are.same({ nil, endpoints.MESSAGES.dualstack },
      { endpoints.resolve { Region = "us-isof-south-1", UseDualStack = true } })
  end)
end)

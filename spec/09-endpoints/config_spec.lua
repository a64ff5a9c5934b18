-- Where the region and the endpoint come from: options, environment and
-- the shared config file, in the SDKs' order; the `runtime-` host prefix.
-- A stub transport shows the URL and Host each request would use (the
-- transport seam is stubbed, never the network); one case runs for real.
local helpers = require "helpers"
local hi = require "healthimaging"

local DS = helpers.DATASTORE_ID
local OK = { status = 200, body = '{"imageSetsMetadataSummaries":[]}' }
local PATH = "/datastore/" .. DS .. "/searchImageSets"

-- One request with the client options `opts`; returns the request the
-- transport got (or nil) and the error.
local function sent(opts)
  local stub = helpers.stub_transport { OK }
  local o = { credentials = helpers.CREDENTIALS, transport = stub }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = assert(hi.client(o))
  local res, err = c:search_image_sets { datastoreId = DS }
  if res then return stub.requests[1] end
  assert.are.equal(0, #stub.requests)
  return nil, err
end

local function host_of(req)
  for _, h in ipairs(req.headers) do
    if h[1]:lower() == "host" then return h[2] end
  end
end

local function config_file(text)
  local path = os.tmpname()
  helpers.write(path, text)
  return path
end

describe("the region", function()
  local cfg

  setup(function()
    cfg = config_file("[default]\nregion = eu-west-1\n[profile p]\nregion = ap-south-1\n[profile bad]\n"
      .. "region = us-east-1 # inline comments are part of the value\n[profile nested]\nregion =\n  a = b\n")
  end)

  teardown(function() os.remove(cfg) end)

  local ORDER = {
    { "the option first", { AWS_REGION = "us-west-2", AWS_DEFAULT_REGION = "us-west-1" }, { region = "ca-central-1" },
      "ca-central-1" },
    { "AWS_REGION before AWS_DEFAULT_REGION", { AWS_REGION = "us-west-2", AWS_DEFAULT_REGION = "us-west-1" }, {},
      "us-west-2" },
    { "AWS_DEFAULT_REGION before the profile", { AWS_DEFAULT_REGION = "us-west-1" }, {}, "us-west-1" },
    { "the default profile's region", {}, {}, "eu-west-1" },
    { "the named profile's region", { AWS_PROFILE = "p" }, {}, "ap-south-1" },
  }
  for _, case in ipairs(ORDER) do
    it("comes from " .. case[1], function()
      case[2].AWS_CONFIG_FILE = cfg
      helpers.with_aws_env(case[2], function()
        local req = assert(sent(case[3]))
        assert.are.equal("https://runtime-medical-imaging." .. case[4] .. ".amazonaws.com" .. PATH, req.url)
        local auth
        for _, h in ipairs(req.headers) do
          if h[1] == "Authorization" then auth = h[2] end
        end
        assert.matches("/" .. case[4] .. "/medical-imaging/aws4_request", auth, 1, true)
      end)
    end)
  end

  it("comes from the credentials file's profile too, as botocore merges it", function()
    local cred = config_file("[default]\nregion = sa-east-1\n")
    helpers.with_aws_env({ AWS_SHARED_CREDENTIALS_FILE = cred }, function()
      assert.are.equal("https://runtime-medical-imaging.sa-east-1.amazonaws.com" .. PATH, sent().url)
    end)
    os.remove(cred)
  end)

  it("is a clear error before any request when there is none", function()
    helpers.with_aws_env({}, function()
      local req, err = sent()
      assert.is_nil(req)
      assert.are.equal("NoRegionError", err.code)
      assert.matches("AWS_REGION", err.message, 1, true)
    end)
  end)

  it("must be a host label", function()
    for _, vars in ipairs { { AWS_PROFILE = "bad" }, { AWS_PROFILE = "nested" }, { AWS_REGION = "us east 1" },
                            { AWS_REGION = "-us-east-1" }, { AWS_REGION = string.rep("a", 64) } } do
      vars.AWS_CONFIG_FILE = cfg
      helpers.with_aws_env(vars, function()
        local req, err = sent()
        assert.is_nil(req)
        assert.are.equal("InvalidRegionError", err.code)
      end)
    end
  end)
end)

describe("the endpoint", function()
  local cfg

  setup(function()
    cfg = config_file(table.concat({
      "[default]",
      "region = us-east-1",
      "endpoint_url = http://profile-global.example:1",
      "services = local",
      "[services local]",
      "medical_imaging =",
      "  endpoint_url = http://services-section.example:2",
      "sts =",
      "  endpoint_url = http://sts.example:3",
      "[profile global-only]",
      "region = us-east-1",
      "endpoint_url = http://profile-global.example:1/base/",
      "[profile missing-services]",
      "region = us-east-1",
      "services = nowhere",
      "[profile ignore]",
      "region = us-east-1",
      "endpoint_url = http://profile-global.example:1",
      "ignore_configured_endpoint_urls = true",
      "[profile fips]",
      "region = us-gov-west-1",
      "use_fips_endpoint = true",
      "[profile dual]",
      "region = cn-north-1",
      "use_dualstack_endpoint = TRUE",
      "[profile noprefix]",
      "region = us-east-1",
      "disable_host_prefix_injection = true",
    }, "\n") .. "\n")
  end)

  teardown(function() os.remove(cfg) end)

  local function env(vars)
    vars.AWS_CONFIG_FILE = cfg
    return vars
  end

  local PRECEDENCE = {
    { "the endpoint_url option first", { AWS_ENDPOINT_URL_MEDICAL_IMAGING = "http://env-service.example:4",
      AWS_ENDPOINT_URL = "http://env-global.example:5" }, { endpoint_url = "http://option.example:6" },
      "http://runtime-option.example:6" },
    { "AWS_ENDPOINT_URL_MEDICAL_IMAGING next", { AWS_ENDPOINT_URL_MEDICAL_IMAGING = "http://env-service.example:4",
      AWS_ENDPOINT_URL = "http://env-global.example:5" }, {}, "http://runtime-env-service.example:4" },
    { "AWS_ENDPOINT_URL next", { AWS_ENDPOINT_URL = "http://env-global.example:5" }, {},
      "http://runtime-env-global.example:5" },
    { "the services section next", {}, {}, "http://runtime-services-section.example:2" },
    { "the profile's endpoint_url next, keeping its path", { AWS_PROFILE = "global-only" }, {},
      "http://runtime-profile-global.example:1/base" },
    { "the service's rules last", { AWS_PROFILE = "fips" }, {},
      "https://runtime-medical-imaging-fips.us-gov-west-1.amazonaws.com" },
  }
  for _, case in ipairs(PRECEDENCE) do
    it("is " .. case[1], function()
      helpers.with_aws_env(env(case[2]), function()
        local req = assert(sent(case[3]))
        assert.are.equal(case[4] .. PATH, req.url)
        assert.are.equal(case[4]:match("^https?://([^/]+)"), host_of(req))
      end)
    end)
  end

  it("ignores the environment's and the files' endpoints with AWS_IGNORE_CONFIGURED_ENDPOINT_URLS, not the option",
  function()
    helpers.with_aws_env(env { AWS_IGNORE_CONFIGURED_ENDPOINT_URLS = "true",
                               AWS_ENDPOINT_URL = "http://env-global.example:5" }, function()
      assert.are.equal("https://runtime-medical-imaging.us-east-1.amazonaws.com" .. PATH, sent().url)
      assert.are.equal("http://runtime-option.example:6" .. PATH,
        sent({ endpoint_url = "http://option.example:6" }).url)
    end)
    helpers.with_aws_env(env { AWS_PROFILE = "ignore" }, function()
      assert.are.equal("https://runtime-medical-imaging.us-east-1.amazonaws.com" .. PATH, sent().url)
    end)
  end)

  it("is an error when the profile names a services section that does not exist", function()
    helpers.with_aws_env(env { AWS_PROFILE = "missing-services" }, function()
      local req, err = sent()
      assert.is_nil(req)
      assert.are.equal("InvalidConfigError", err.code)
      assert.matches("'nowhere'", err.message, 1, true)
    end)
  end)

  it("takes use_fips_endpoint and use_dualstack_endpoint from the option, the environment or the profile", function()
    local cases = {
      { { AWS_USE_DUALSTACK_ENDPOINT = "true", AWS_IGNORE_CONFIGURED_ENDPOINT_URLS = "true" }, {},
        "https://runtime-medical-imaging.us-east-1.api.aws" },
      { { AWS_USE_FIPS_ENDPOINT = "True", AWS_IGNORE_CONFIGURED_ENDPOINT_URLS = "true" }, {},
        "https://runtime-medical-imaging-fips.us-east-1.amazonaws.com" },
      { { AWS_USE_FIPS_ENDPOINT = "true", AWS_IGNORE_CONFIGURED_ENDPOINT_URLS = "true" },
        { use_fips_endpoint = false }, "https://runtime-medical-imaging.us-east-1.amazonaws.com" },
      { { AWS_IGNORE_CONFIGURED_ENDPOINT_URLS = "true" }, { use_fips_endpoint = true, use_dualstack_endpoint = true },
        "https://runtime-medical-imaging-fips.us-east-1.api.aws" },
      { { AWS_PROFILE = "dual" }, {}, "https://runtime-medical-imaging.cn-north-1.api.amazonwebservices.com.cn" },
      { { AWS_USE_FIPS_ENDPOINT = "yes", AWS_IGNORE_CONFIGURED_ENDPOINT_URLS = "true" }, {},
        "https://runtime-medical-imaging.us-east-1.amazonaws.com" },
    }
    for _, case in ipairs(cases) do
      helpers.with_aws_env(env(case[1]), function()
        assert.are.equal(case[3] .. PATH, sent(case[2]).url)
      end)
    end
  end)

  it("refuses FIPS or dual-stack with a custom endpoint, as the rules do", function()
    helpers.with_aws_env(env {}, function()
      local _, err = sent { use_fips_endpoint = true }
      assert.are.equal("EndpointResolutionError", err.code)
      assert.are.equal("Invalid Configuration: FIPS and custom endpoint are not supported", err.message)
      _, err = sent { use_dualstack_endpoint = true, endpoint_url = "http://127.0.0.1:1" }
      assert.are.equal("Invalid Configuration: Dualstack and custom endpoint are not supported", err.message)
    end)
  end)

  describe("host prefix", function()
    local CASES = {
      { "is put before the service's host", {}, {}, "https://runtime-medical-imaging.us-east-1.amazonaws.com" },
      { "is put before a custom host name", {}, { endpoint_url = "https://proxy.example/x" },
        "https://runtime-proxy.example/x" },
      { "is left out with the option", {}, { disable_host_prefix_injection = true },
        "https://medical-imaging.us-east-1.amazonaws.com" },
      { "is left out with AWS_DISABLE_HOST_PREFIX_INJECTION", { AWS_DISABLE_HOST_PREFIX_INJECTION = "true" }, {},
        "https://medical-imaging.us-east-1.amazonaws.com" },
      { "is left out with the profile's disable_host_prefix_injection", { AWS_PROFILE = "noprefix" }, {},
        "https://medical-imaging.us-east-1.amazonaws.com" },
      { "follows the option over the environment", { AWS_DISABLE_HOST_PREFIX_INJECTION = "true" },
        { disable_host_prefix_injection = false }, "https://runtime-medical-imaging.us-east-1.amazonaws.com" },
      { "is never put before an IPv4 literal", {}, { endpoint_url = "http://127.0.0.1:8089" },
        "http://127.0.0.1:8089" },
      { "is never put before an IPv6 literal", {}, { endpoint_url = "http://[::1]:8089" }, "http://[::1]:8089" },
      { "is never put before localhost", {}, { endpoint_url = "http://LocalHost:8089" }, "http://localhost:8089" },
    }
    for _, case in ipairs(CASES) do
      it(case[1], function()
        case[2].AWS_IGNORE_CONFIGURED_ENDPOINT_URLS = "true"
        helpers.with_aws_env(env(case[2]), function()
          local req = assert(sent(case[3]))
          assert.are.equal(case[4] .. PATH, req.url)
        end)
      end)
    end
  end)

  it("from the services section reaches the emulator for a real, signed search", function()
    local emu = helpers.start_emulator()
    local file = config_file("[default]\nregion = us-east-1\nservices = here\n[services here]\n"
      .. "medical_imaging =\n  endpoint_url = " .. emu.url .. "\n")
    helpers.with_aws_env({ AWS_CONFIG_FILE = file }, function()
      local c = assert(hi.client { credentials = helpers.CREDENTIALS })
      local res, err = c:search_image_sets { datastoreId = DS, maxResults = 2 }
      c:close()
      assert.is_nil(err and tostring(err))
      assert.are.equal(2, #res.imageSetsMetadataSummaries)
    end)
    emu.stop()
    os.remove(file)
  end)
end)

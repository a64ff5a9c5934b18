-- Container credentials and EC2 instance metadata, end to end against
-- `healthimaging-local serve-identity` on loopback: the ECS/EKS agent's
-- Authorization check, IMDSv2's token, the IMDSv1 fallback (refused token
-- request, or one that outlives the 1 s timeout), IMDS disabled. Each case
-- that finds credentials ends with a search the emulator accepts with
-- exactly the identity handed out.
local helpers = require "helpers"
local hi = require "healthimaging"
local core = require "healthimaging.core"
local credentials = require "healthimaging.credentials"

local DS = helpers.DATASTORE_ID
local ISSUED = { "ASIAMETADATA00000001", "metadata-secret-1", "metadata-token-1" }

describe("container credentials and instance metadata", function()
  local emu, idn, tmp

  setup(function()
    emu = helpers.start_emulator { args = "--credentials " .. table.concat(ISSUED, ":") }
  end)

  teardown(function() emu.stop() end)

  before_each(function() tmp = {} end)

  after_each(function()
    if idn then idn.stop(); idn = nil end
    for _, p in ipairs(tmp) do os.remove(p) end
  end)

  local function identity(extra)
    idn = helpers.start_identity("--issue " .. table.concat(ISSUED, ":") .. " " .. (extra or ""))
    return idn
  end

  -- (the waits between container attempts are recorded, not slept)
  local function search()
    local rec = helpers.key_recorder()
    local c = assert(hi.client { region = "us-east-1", endpoint_url = emu.url, transport = rec,
                                 sleep = function() end })
    local res, err = c:search_image_sets { datastoreId = DS, maxResults = 1 }
    rec.close()
    return res, err, rec.keys
  end

  local function accepted(res, err, keys)
    assert.is_nil(err and tostring(err))
    assert.is_table(res.imageSetsMetadataSummaries)
    assert.are.same({ ISSUED[1] }, keys)
  end

  local function kinds(events)
    local out = {}
    for i, e in ipairs(events) do out[i] = e.kind end
    return out
  end

  describe("container credentials", function()
    it("fetch FULL_URI with AWS_CONTAINER_AUTHORIZATION_TOKEN as the Authorization header", function()
      identity "--container-token secret-agent-token"
      helpers.with_aws_env({ AWS_CONTAINER_CREDENTIALS_FULL_URI = idn.url .. "/container/v2/credentials",
                             AWS_CONTAINER_AUTHORIZATION_TOKEN = "secret-agent-token" }, function()
        accepted(search())
      end)
      local e = idn.events()
      assert.are.equal(1, #e)
      assert.are.same({ "container", "/container/v2/credentials", true }, { e[1].kind, e[1].path, e[1].authorized })
    end)

    it("read the token from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE first, again on every fetch", function()
      identity "--container-token from-the-file"
      local tf = os.tmpname()
      tmp[#tmp + 1] = tf
      helpers.write(tf, "from-the-file")
      helpers.with_aws_env({ AWS_CONTAINER_CREDENTIALS_FULL_URI = idn.url .. "/container/creds",
                             AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE = tf,
                             AWS_CONTAINER_AUTHORIZATION_TOKEN = "from-the-variable" }, function()
        accepted(search())
        helpers.write(tf, "rotated")
        local res, err = search()
        assert.is_nil(res)
        assert.are.equal("CredentialRetrievalError", err.code)
        assert.are.equal(401, err.status)
        assert.is_nil(tostring(err):find("rotated", 1, true))
      end)
    end)

    it("report a refused token after three attempts, sending nothing to the service", function()
      identity "--container-token expected"
      local slept = 0
      helpers.with_aws_env({ AWS_CONTAINER_CREDENTIALS_FULL_URI = idn.url .. "/container/creds",
                             AWS_CONTAINER_AUTHORIZATION_TOKEN = "wrong-token-value" }, function()
        local rec = helpers.key_recorder()
        local c = assert(hi.client { region = "us-east-1", endpoint_url = emu.url, transport = rec,
                                     sleep = function(s) slept = slept + s end })
        local res, err = c:search_image_sets { datastoreId = DS }
        assert.is_nil(res)
        assert.are.equal(401, err.status)
        assert.is_nil(tostring(err):find("wrong-token-value", 1, true))
        assert.are.same({}, rec.keys)
      end)
      assert.are.equal(3, #idn.events())
      assert.are.equal(2, slept)
    end)

    it("refuse a token that is not a legal header value, asking nothing", function()
      identity ""
      helpers.with_aws_env({ AWS_CONTAINER_CREDENTIALS_FULL_URI = idn.url .. "/container/creds",
                             AWS_CONTAINER_AUTHORIZATION_TOKEN = "line1\r\nX-Injected: yes" }, function()
        local _, err = search()
        assert.are.equal("InvalidConfigError", err.code)
      end)
      assert.are.same({}, (idn.events()))
    end)

    it("allow http only to loopback and the ECS/EKS agents, https anywhere", function()
      local cases = {
        { "http://127.0.0.1:51679/creds", true }, { "http://127.0.0.2/creds", true },
        { "http://[::1]:8080/creds", true }, { "http://localhost/creds", true },
        { "http://169.254.170.2/v2/credentials/x", true }, { "http://169.254.170.23/v1/credentials", true },
        { "http://[fd00:ec2::23]/v1/credentials", true }, { "https://creds.example.com/path", true },
        { "http://creds.example.com/path", false }, { "http://192.0.2.10/creds", false },
        { "http://169.254.169.254/latest", false }, { "http://128.0.0.1/", false },
        { "ftp://127.0.0.1/creds", false }, { "not a url", false },
      }
      for _, case in ipairs(cases) do
        helpers.with_aws_env({ AWS_CONTAINER_CREDENTIALS_FULL_URI = case[1] }, function()
          local url, err = credentials.container_url()
          if case[2] then
            assert.are.equal(case[1], url)
          else
            assert.is_nil(url, case[1])
            assert.are.equal("InvalidConfigError", err.code)
          end
        end)
      end
    end)

    it("put RELATIVE_URI on 169.254.170.2, ahead of FULL_URI", function()
      helpers.with_aws_env({ AWS_CONTAINER_CREDENTIALS_RELATIVE_URI = "/v2/credentials/abc",
                             AWS_CONTAINER_CREDENTIALS_FULL_URI = "http://127.0.0.1/x" }, function()
        assert.are.equal("http://169.254.170.2/v2/credentials/abc", credentials.container_url())
      end)
    end)

    it("come before instance metadata", function()
      identity ""
      helpers.with_aws_env({ AWS_CONTAINER_CREDENTIALS_FULL_URI = idn.url .. "/container/creds",
                             AWS_EC2_METADATA_DISABLED = false, AWS_EC2_METADATA_SERVICE_ENDPOINT = idn.url },
        function() accepted(search()) end)
      assert.are.same({ "container" }, kinds(idn.events()))
    end)
  end)

  describe("instance metadata", function()
    local function imds_env(vars)
      vars = vars or {}
      vars.AWS_EC2_METADATA_DISABLED = vars.AWS_EC2_METADATA_DISABLED or false
      vars.AWS_EC2_METADATA_SERVICE_ENDPOINT = vars.AWS_EC2_METADATA_SERVICE_ENDPOINT or idn.url
      return vars
    end

    it("use IMDSv2: a token from PUT, then the role and its credentials with the token", function()
      identity "--imds-mode v2-only --imds-role app-role"
      helpers.with_aws_env(imds_env(), function() accepted(search()) end)
      local e = idn.events()
      assert.are.same({ "imds-token", "imds-get", "imds-get" }, kinds(e))
      assert.are.equal("21600", e[1].ttl)
      assert.are.same({ "/latest/meta-data/iam/security-credentials/", true }, { e[2].path, e[2].token })
      assert.are.same({ "/latest/meta-data/iam/security-credentials/app-role", true }, { e[3].path, e[3].token })
    end)

    it("fall back to IMDSv1 when the token request is refused", function()
      identity "--imds-mode v1-only"
      helpers.with_aws_env(imds_env(), function() accepted(search()) end)
      local e = idn.events()
      assert.are.same({ "imds-token", "imds-get", "imds-get" }, kinds(e))
      assert.is_false(e[2].token)
      assert.is_false(e[3].token)
    end)

    it("fall back to IMDSv1 when the token request outlives the 1 s timeout", function()
      identity "--imds-token-delay 3"
      local t0 = core.monotime()
      helpers.with_aws_env(imds_env(), function() accepted(search()) end)
      local took = core.monotime() - t0
      assert.is_true(took >= 0.9 and took < 2.8, "took " .. took .. " s")
      local e = idn.events()
      assert.is_false(e[#e].token)
    end)

    it("do not fall back when IMDSv1 is disabled", function()
      identity "--imds-mode v1-only"
      helpers.with_aws_env(imds_env { AWS_EC2_METADATA_V1_DISABLED = "true" }, function()
        local res, err, keys = search()
        assert.is_nil(res)
        assert.are.equal("NoCredentialsError", err.code)
        assert.matches("IMDSv1 is disabled", err.message, 1, true)
        assert.are.same({}, keys)
      end)
      assert.are.same({ "imds-token" }, kinds(idn.events()))
    end)

    it("are not asked when a client is created, only at its first request", function()
      identity ""
      helpers.with_aws_env(imds_env(), function()
        local c = assert(hi.client { region = "us-east-1", endpoint_url = emu.url })
        assert.are.same({}, (idn.events()))
        assert.is_table((c:search_image_sets { datastoreId = DS }))
        assert.are.equal(3, #idn.events())
        c:close()
      end)
    end)

    it("are never asked when AWS_EC2_METADATA_DISABLED is true", function()
      identity ""
      helpers.with_aws_env(imds_env { AWS_EC2_METADATA_DISABLED = "TRUE" }, function()
        local res, err, keys = search()
        assert.is_nil(res)
        assert.are.equal("NoCredentialsError", err.code)
        assert.are.same({}, keys)
      end)
      assert.are.same({}, (idn.events()))
    end)

    it("take the endpoint from the profile's ec2_metadata_service_endpoint", function()
      identity ""
      local cfg = os.tmpname()
      tmp[#tmp + 1] = cfg
      helpers.write(cfg, "[default]\nec2_metadata_service_endpoint = " .. idn.url .. "/\n")
      helpers.with_aws_env({ AWS_EC2_METADATA_DISABLED = false, AWS_CONFIG_FILE = cfg }, function()
        accepted(search())
      end)
    end)

    it("mean no credentials, not an error of their own, when nothing answers", function()
      helpers.with_aws_env({ AWS_EC2_METADATA_DISABLED = false,
                             AWS_EC2_METADATA_SERVICE_ENDPOINT = "http://127.0.0.1:9" }, function()
        local t0 = core.monotime()
        local _, err = search()
        assert.are.equal("NoCredentialsError", err.code)
        assert.matches("EC2 instance metadata", err.message, 1, true)
        assert.is_true(core.monotime() - t0 < 3)
      end)
    end)

    it("refuse an endpoint that is not a URL", function()
      helpers.with_aws_env({ AWS_EC2_METADATA_DISABLED = false,
                             AWS_EC2_METADATA_SERVICE_ENDPOINT = "169.254.169.254" }, function()
        local _, err = search()
        assert.are.equal("InvalidIMDSEndpointError", err.code)
      end)
    end)
  end)
end)

-- Temporary credentials from STS, end to end: `healthimaging-local
-- serve-identity` plays STS (AssumeRole verified with SigV4, unsigned
-- AssumeRoleWithWebIdentity) and hands out exactly the credentials each
-- case names; the emulator accepts only those, and the search that ends
-- each case shows which one signed it.
local helpers = require "helpers"

local ROLE = "arn:aws:iam::123456789012:role/healthimaging-reader"
local ROLE2 = "arn:aws:iam::123456789012:role/healthimaging-admin"
local BASE = { "AKIDBASEPROFILE00001", "base-profile-secret" }
local ENVKEY = { "AKIDENVSOURCE0000001", "env-source-secret" }
local ISSUED = {
  { "ASIAISSUEDBYSTS00001", "issued-secret-1", "issued-token-1" },
  { "ASIAISSUEDBYSTS00002", "issued-secret-2", "issued-token-2" },
}
local WEB_TOKEN = "eyJ.web-identity-token.sig"

local function arg(id) return table.concat(id, ":") end

local file = helpers.temp_file

describe("credentials from STS", function()
  local emu, idn, tmp

  setup(function()
    emu = helpers.start_emulator { args = "--credentials " .. arg(ISSUED[1]) .. " --credentials " .. arg(ISSUED[2]) }
  end)

  teardown(function() emu.stop() end)

  before_each(function() tmp = {} end)

  after_each(function()
    if idn then idn.stop(); idn = nil end
    for _, p in ipairs(tmp) do os.remove(p) end
  end)

  -- Starts the STS stand-in that issues `issue` (list of identities) in order.
  local function identity(issue, extra)
    local args = {}
    for _, id in ipairs(issue) do args[#args + 1] = "--issue " .. arg(id) end
    args[#args + 1] = "--source-credentials " .. arg(BASE)
    args[#args + 1] = "--source-credentials " .. arg(ENVKEY)
    args[#args + 1] = "--web-identity-token " .. helpers.shell_quote(WEB_TOKEN)
    args[#args + 1] = "--role-arn " .. ROLE .. " --role-arn " .. ROLE2
    idn = helpers.start_identity(table.concat(args, " ") .. " " .. (extra or ""))
    return idn
  end

  local function tmpfile(text)
    local p = file(text)
    tmp[#tmp + 1] = p
    return p
  end

  local function search(extra) return helpers.search_recording_keys(emu, nil, extra) end
  local accepted_as = helpers.accepted_as

  local function env(vars)
    vars.AWS_REGION = vars.AWS_REGION or "us-east-1"
    vars.AWS_ENDPOINT_URL_STS = vars.AWS_ENDPOINT_URL_STS or idn.url
    return vars
  end

  describe("web identity", function()
    it("exchanges AWS_WEB_IDENTITY_TOKEN_FILE for a role's credentials, unsigned", function()
      identity { ISSUED[1] }
      local tf = tmpfile(WEB_TOKEN)
      helpers.with_aws_env(env { AWS_WEB_IDENTITY_TOKEN_FILE = tf, AWS_ROLE_ARN = ROLE,
                                 AWS_ROLE_SESSION_NAME = "ci-job-42" }, function()
        accepted_as(ISSUED[1], search())
      end)
      local events = idn.events()
      assert.are.equal(1, #events)
      assert.are.equal("AssumeRoleWithWebIdentity", events[1].kind)
      assert.are.equal(ROLE, events[1].roleArn)
      assert.are.equal("ci-job-42", events[1].roleSessionName)
    end)

    it("reads web_identity_token_file and role_arn from the profile, with a session name of its own", function()
      identity { ISSUED[1] }
      local tf = tmpfile(WEB_TOKEN)
      local cfg = tmpfile("[profile ci]\nweb_identity_token_file = " .. tf .. "\nrole_arn = " .. ROLE2 .. "\n")
      helpers.with_aws_env(env { AWS_CONFIG_FILE = cfg, AWS_PROFILE = "ci" }, function()
        accepted_as(ISSUED[1], search())
      end)
      local e = idn.events()[1]
      assert.are.equal(ROLE2, e.roleArn)
      assert.matches("^healthimaging%-lua%-%d+$", e.roleSessionName)
    end)

    it("reports a token STS refuses with STS's code, never showing the token", function()
      identity { ISSUED[1] }
      local secret_token = "not-a-valid-token-do-not-print"
      local tf = tmpfile(secret_token)
      helpers.with_aws_env(env { AWS_WEB_IDENTITY_TOKEN_FILE = tf, AWS_ROLE_ARN = ROLE }, function()
        local res, err, keys = search()
        assert.is_nil(res)
        assert.are.equal("InvalidIdentityToken", err.code)
        assert.are.equal(400, err.status)
        assert.is_nil(tostring(err):find(secret_token, 1, true))
        assert.are.same({}, keys)
      end)
    end)

    it("reports a missing token file with its path, and a token file without a role ARN", function()
      identity { ISSUED[1] }
      helpers.with_aws_env(env { AWS_WEB_IDENTITY_TOKEN_FILE = "/nonexistent/token", AWS_ROLE_ARN = ROLE }, function()
        local _, err = search()
        assert.are.equal("CredentialRetrievalError", err.code)
        assert.matches("/nonexistent/token", err.message, 1, true)
      end)
      helpers.with_aws_env(env { AWS_WEB_IDENTITY_TOKEN_FILE = "/nonexistent/token" }, function()
        local _, err = search()
        assert.are.equal("InvalidConfigError", err.code)
        assert.matches("AWS_ROLE_ARN", err.message, 1, true)
      end)
      assert.are.same({}, (idn.events()))
    end)
  end)

  describe("a profile with role_arn", function()
    local function files(config_text, cred_text)
      return { AWS_CONFIG_FILE = tmpfile(config_text), AWS_SHARED_CREDENTIALS_FILE = tmpfile(cred_text or "") }
    end
    local BASE_CREDS = "[base]\naws_access_key_id = " .. BASE[1] .. "\naws_secret_access_key = " .. BASE[2] .. "\n"

    it("assumes the role with source_profile's keys, passing session name, external id and duration", function()
      identity { ISSUED[1] }
      local vars = files("[profile reader]\nrole_arn = " .. ROLE .. "\nsource_profile = base\n"
        .. "role_session_name = reader-session\nexternal_id = ext-123\nduration_seconds = 1800\n", BASE_CREDS)
      vars.AWS_PROFILE = "reader"
      helpers.with_aws_env(env(vars), function() accepted_as(ISSUED[1], search()) end)
      local events = idn.events()
      assert.are.equal(1, #events)
      local e = events[1]
      assert.are.equal("AssumeRole", e.kind)
      assert.are.equal(BASE[1], e.signedBy)
      assert.are.equal("us-east-1", e.region)
      assert.are.equal(ROLE, e.roleArn)
      assert.are.equal("reader-session", e.roleSessionName)
      assert.are.equal("ext-123", e.externalId)
      assert.are.equal("1800", e.durationSeconds)
    end)

    it("chains roles: each AssumeRole signed with the credentials of the one before", function()
      identity { ISSUED[1], ISSUED[2] }
      local vars = files("[profile admin]\nrole_arn = " .. ROLE2 .. "\nsource_profile = reader\n"
        .. "[profile reader]\nrole_arn = " .. ROLE .. "\nsource_profile = base\n", BASE_CREDS)
      helpers.with_aws_env(env(vars), function() accepted_as(ISSUED[2], search { profile = "admin" }) end)
      local events = idn.events()
      assert.are.equal(2, #events)
      assert.are.same({ BASE[1], ROLE }, { events[1].signedBy, events[1].roleArn })
      assert.are.same({ ISSUED[1][1], ROLE2 }, { events[2].signedBy, events[2].roleArn })
    end)

    it("assumes the role even when the profile holds keys of its own and names itself as source (botocore)", function()
      identity { ISSUED[1] }
      local vars = files("[profile self]\nrole_arn = " .. ROLE .. "\nsource_profile = self\n",
        "[self]\naws_access_key_id = " .. BASE[1] .. "\naws_secret_access_key = " .. BASE[2] .. "\n")
      vars.AWS_PROFILE = "self"
      helpers.with_aws_env(env(vars), function() accepted_as(ISSUED[1], search()) end)
      assert.are.equal(BASE[1], idn.events()[1].signedBy)
    end)

    it("takes the source credentials from credential_source = Environment", function()
      identity { ISSUED[1] }
      local vars = files("[default]\nrole_arn = " .. ROLE .. "\ncredential_source = Environment\n")
      vars.AWS_ACCESS_KEY_ID, vars.AWS_SECRET_ACCESS_KEY = ENVKEY[1], ENVKEY[2]
      helpers.with_aws_env(env(vars), function()
        -- the environment's keys come first in the chain: name the profile to skip them
        accepted_as(ISSUED[1], search { profile = "default" })
      end)
      assert.are.equal(ENVKEY[1], idn.events()[1].signedBy)
    end)

    it("takes the source credentials from credential_source = EcsContainer", function()
      identity({ ISSUED[1], ISSUED[2] }, "--container-token container-auth")
      local vars = files("[default]\nrole_arn = " .. ROLE .. "\ncredential_source = EcsContainer\n")
      vars.AWS_CONTAINER_CREDENTIALS_FULL_URI = idn.url .. "/container/creds"
      vars.AWS_CONTAINER_AUTHORIZATION_TOKEN = "container-auth"
      helpers.with_aws_env(env(vars), function() accepted_as(ISSUED[2], search()) end)
      local events = idn.events()
      assert.are.equal("container", events[1].kind)
      assert.are.same({ "AssumeRole", ISSUED[1][1] }, { events[2].kind, events[2].signedBy })
    end)

    it("reaches STS through the services section's sts endpoint_url", function()
      identity { ISSUED[1] }
      local vars = files("[profile reader]\nrole_arn = " .. ROLE .. "\nsource_profile = base\nservices = local\n"
        .. "[services local]\nsts =\n  endpoint_url = " .. idn.url .. "\n", BASE_CREDS)
      vars.AWS_PROFILE = "reader"
      vars.AWS_ENDPOINT_URL_STS = false
      helpers.with_aws_env(env(vars), function() accepted_as(ISSUED[1], search()) end)
    end)

    it("reports STS's refusal (AccessDenied) and sends nothing to the service", function()
      identity { ISSUED[1] }
      local vars = files("[profile other]\nrole_arn = arn:aws:iam::123456789012:role/not-allowed\n"
        .. "source_profile = base\n", BASE_CREDS)
      vars.AWS_PROFILE = "other"
      helpers.with_aws_env(env(vars), function()
        local res, err, keys = search()
        assert.is_nil(res)
        assert.are.equal("AccessDenied", err.code)
        assert.are.equal(403, err.status)
        assert.is_string(err.request_id)
        assert.are.same({}, keys)
      end)
    end)

    it("reports a source secret STS does not recognize, without showing it", function()
      identity { ISSUED[1] }
      local vars = files("[profile reader]\nrole_arn = " .. ROLE .. "\nsource_profile = base\n",
        "[base]\naws_access_key_id = " .. BASE[1] .. "\naws_secret_access_key = wrong-secret-do-not-print\n")
      vars.AWS_PROFILE = "reader"
      helpers.with_aws_env(env(vars), function()
        local _, err = search()
        assert.are.equal("SignatureDoesNotMatch", err.code)
        assert.is_nil(tostring(err):find("wrong-secret", 1, true))
      end)
    end)

    local BAD = {
      { "a source_profile that does not exist", "[default]\nrole_arn = " .. ROLE .. "\nsource_profile = nope\n",
        "InvalidConfigError", "'nope'" },
      { "both source_profile and credential_source",
        "[default]\nrole_arn = " .. ROLE .. "\nsource_profile = base\ncredential_source = Environment\n",
        "InvalidConfigError", "both" },
      { "neither source_profile nor credential_source", "[default]\nrole_arn = " .. ROLE .. "\n",
        "PartialCredentialsError", "neither" },
      { "an unknown credential_source", "[default]\nrole_arn = " .. ROLE .. "\ncredential_source = Laptop\n",
        "InvalidConfigError", "'Laptop'" },
      { "a source_profile loop",
        "[default]\nrole_arn = " .. ROLE .. "\nsource_profile = a\n[profile a]\nrole_arn = " .. ROLE
          .. "\nsource_profile = default\n",
        "InfiniteLoopConfigError", "loop" },
      { "a source profile without credentials", "[default]\nrole_arn = " .. ROLE .. "\nsource_profile = empty\n"
          .. "[profile empty]\nregion = us-east-1\n", "InvalidConfigError", "must have credentials" },
      { "mfa_serial (no prompt here)", "[default]\nrole_arn = " .. ROLE .. "\nsource_profile = base\n"
          .. "mfa_serial = arn:aws:iam::123456789012:mfa/me\n", "InvalidConfigError", "mfa_serial" },
      { "credential_source Environment with no keys in the environment",
        "[default]\nrole_arn = " .. ROLE .. "\ncredential_source = Environment\n",
        "CredentialRetrievalError", "Environment" },
    }
    for _, case in ipairs(BAD) do
      it("refuses " .. case[1] .. ", calling nothing", function()
        identity { ISSUED[1] }
        helpers.with_aws_env(env(files(case[2], BASE_CREDS)), function()
          local res, err, keys = search()
          assert.is_nil(res)
          assert.are.equal(case[3], err.code)
          assert.matches(case[4], err.message, 1, true)
          assert.are.same({}, keys)
        end)
        assert.are.same({}, (idn.events()))
      end)
    end
  end)
end)

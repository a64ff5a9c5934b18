-- The credential chain with long-term keys, end to end: each case runs a
-- search against the emulator, which accepts only the identities below (a
-- key with its exact secret and session token); the pass-through transport
-- shows which key signed the accepted request. The environment is isolated
-- (helpers.with_aws_env): the machine's own AWS setup never leaks in.
local helpers = require "helpers"
local hi = require "healthimaging"

local DS = helpers.DATASTORE_ID

local ID = {
  explicit = { "AKIDEXPLICIT00000001", "explicit-secret-1" },
  fn = { "ASIAFUNCTION00000001", "function-secret-1", "function-token-1" },
  env = { "AKIDENVIRONMENT00001", "environment-secret-1" },
  env_token = { "ASIAENVIRONMENT00002", "environment-secret-2", "environment-token-2" },
  credfile = { "AKIDCREDFILE00000001", "credfile-secret-1" },
  credfile_work = { "ASIACREDFILEWORK0001", "credfile-work-secret", "credfile-work-token" },
  config = { "AKIDCONFIGFILE000001", "configfile-secret-1" },
}

local function arg_of(id) return table.concat(id, ":") end

local function creds_table(id)
  return { access_key_id = id[1], secret_access_key = id[2], session_token = id[3] }
end

local file = helpers.temp_file

describe("the credential chain", function()
  local emu, cred_path, cfg_path

  setup(function()
    local args = {}
    for _, id in pairs(ID) do args[#args + 1] = "--credentials " .. arg_of(id) end
    emu = helpers.start_emulator { args = table.concat(args, " ") }
    cred_path = file(table.concat({
      "[default]",
      "aws_access_key_id = " .. ID.credfile[1],
      "aws_secret_access_key = " .. ID.credfile[2],
      "",
      "[work]",
      "aws_access_key_id=" .. ID.credfile_work[1],
      "aws_secret_access_key=" .. ID.credfile_work[2],
      "aws_session_token=" .. ID.credfile_work[3],
      "",
      "# a profile section written as in the config file is another profile here",
      "[profile cfgonly]",
      "aws_access_key_id = AKIDNOTTHISONE000001",
      "aws_secret_access_key = not-this-one",
    }, "\n") .. "\n")
    cfg_path = file(table.concat({
      "[default]",
      "region = us-east-1",
      "[profile work]",
      "aws_access_key_id = AKIDSHADOWEDBYCREDS1",
      "aws_secret_access_key = shadowed-by-the-credentials-file",
      "[profile cfgonly]",
      "aws_access_key_id = " .. ID.config[1],
      "aws_secret_access_key = " .. ID.config[2],
      "[profile half]",
      "aws_access_key_id = AKIDHALF000000000001",
    }, "\n") .. "\n")
  end)

  teardown(function()
    emu.stop()
    os.remove(cred_path)
    os.remove(cfg_path)
  end)

  -- One search with the client options `extra`; returns res, err and the
  -- key ids the requests were signed with.
  local function search(extra) return helpers.search_recording_keys(emu, { region = "us-east-1" }, extra) end
  local accepted_as = helpers.accepted_as

  local files = function(vars)
    vars = vars or {}
    vars.AWS_SHARED_CREDENTIALS_FILE = vars.AWS_SHARED_CREDENTIALS_FILE or cred_path
    vars.AWS_CONFIG_FILE = vars.AWS_CONFIG_FILE or cfg_path
    return vars
  end

  it("takes explicit credentials first, before the environment and the files", function()
    helpers.with_aws_env(files { AWS_ACCESS_KEY_ID = ID.env[1], AWS_SECRET_ACCESS_KEY = ID.env[2] }, function()
      accepted_as(ID.explicit, search { credentials = creds_table(ID.explicit) })
    end)
  end)

  it("calls a credentials function, again for each request when its result has no expiration", function()
    local calls = 0
    helpers.with_aws_env(files(), function()
      local rec = helpers.key_recorder()
      local c = assert(hi.client { region = "us-east-1", endpoint_url = emu.url, transport = rec,
        credentials = function() calls = calls + 1; return creds_table(ID.fn) end })
      assert.are.equal(0, calls)
      assert.is_table((c:search_image_sets { datastoreId = DS, maxResults = 1 }))
      assert.is_table((c:search_image_sets { datastoreId = DS, maxResults = 1 }))
      assert.are.equal(2, calls)
      assert.are.same({ ID.fn[1], ID.fn[1] }, rec.keys)
    end)
  end)

  it("keeps what a credentials function returns until its expiration comes near", function()
    local calls = 0
    helpers.with_aws_env(files(), function()
      local rec = helpers.key_recorder()
      local c = assert(hi.client { region = "us-east-1", endpoint_url = emu.url, transport = rec,
        credentials = function()
          calls = calls + 1
          local t = creds_table(ID.fn)
          t.expiration = os.time() + 3600
          return t
        end })
      for _ = 1, 3 do assert.is_table((c:search_image_sets { datastoreId = DS, maxResults = 1 })) end
      assert.are.equal(1, calls)
    end)
  end)

  it("turns a failing credentials function into an error and sends nothing", function()
    helpers.with_aws_env(files(), function()
      local res, err, keys = search { credentials = function() error("vault is sealed") end }
      assert.is_nil(res)
      assert.are.equal("CredentialRetrievalError", err.code)
      assert.matches("vault is sealed", err.message, 1, true)
      assert.are.same({}, keys)
      res, err = search { credentials = function() return nil, "no token yet" end }
      assert.is_nil(res)
      assert.matches("no token yet", err.message, 1, true)
      res, err = search { credentials = function() return { access_key_id = "AKID" } end }
      assert.is_nil(res)
      assert.are.equal("InvalidCredentials", err.code)
    end)
  end)

  it("refuses explicit credentials without a secret, before sending anything", function()
    helpers.with_aws_env(files(), function()
      local _, err, keys = search { credentials = { access_key_id = ID.explicit[1] } }
      assert.are.equal("InvalidCredentials", err.code)
      assert.are.same({}, keys)
    end)
  end)

  it("takes the environment before the shared files", function()
    helpers.with_aws_env(files { AWS_ACCESS_KEY_ID = ID.env[1], AWS_SECRET_ACCESS_KEY = ID.env[2] }, function()
      accepted_as(ID.env, search())
    end)
  end)

  it("sends AWS_SESSION_TOKEN with the environment's keys", function()
    helpers.with_aws_env({ AWS_ACCESS_KEY_ID = ID.env_token[1], AWS_SECRET_ACCESS_KEY = ID.env_token[2],
                           AWS_SESSION_TOKEN = ID.env_token[3] }, function()
      accepted_as(ID.env_token, search())
    end)
  end)

  it("refuses AWS_ACCESS_KEY_ID without AWS_SECRET_ACCESS_KEY, sending nothing", function()
    helpers.with_aws_env(files { AWS_ACCESS_KEY_ID = ID.env[1] }, function()
      local res, err, keys = search()
      assert.is_nil(res)
      assert.are.equal("PartialCredentialsError", err.code)
      assert.matches("AWS_SECRET_ACCESS_KEY", err.message, 1, true)
      assert.are.same({}, keys)
    end)
  end)

  it("ignores AWS_SECRET_ACCESS_KEY alone, as botocore does, and goes on to the files", function()
    helpers.with_aws_env(files { AWS_SECRET_ACCESS_KEY = "a-lonely-secret" }, function()
      accepted_as(ID.credfile, search())
    end)
  end)

  it("reads [default] of the shared credentials file", function()
    helpers.with_aws_env(files(), function() accepted_as(ID.credfile, search()) end)
  end)

  it("reads the profile AWS_PROFILE names, with its session token", function()
    helpers.with_aws_env(files { AWS_PROFILE = "work" }, function() accepted_as(ID.credfile_work, search()) end)
  end)

  it("prefers the credentials file's keys to the config file's for the same profile", function()
    helpers.with_aws_env(files(), function() accepted_as(ID.credfile_work, search { profile = "work" }) end)
  end)

  it("reads keys from the config file's [profile NAME] when the credentials file has none", function()
    helpers.with_aws_env(files { AWS_PROFILE = "cfgonly" }, function() accepted_as(ID.config, search()) end)
  end)

  it("refuses a config-file key without its secret", function()
    helpers.with_aws_env(files { AWS_PROFILE = "half" }, function()
      local _, err, keys = search()
      assert.are.equal("PartialCredentialsError", err.code)
      assert.are.same({}, keys)
    end)
  end)

  it("skips the environment's keys when the profile is a client option (botocore), not with AWS_PROFILE", function()
    local vars = files { AWS_ACCESS_KEY_ID = ID.env[1], AWS_SECRET_ACCESS_KEY = ID.env[2] }
    helpers.with_aws_env(vars, function() accepted_as(ID.credfile_work, search { profile = "work" }) end)
    vars.AWS_PROFILE = "work"
    helpers.with_aws_env(vars, function() accepted_as(ID.env, search()) end)
  end)

  it("fails with ProfileNotFound for a named profile that neither file has", function()
    helpers.with_aws_env(files(), function()
      local _, err, keys = search { profile = "nosuch" }
      assert.are.equal("ProfileNotFound", err.code)
      assert.matches("(nosuch)", err.message, 1, true)
      assert.are.same({}, keys)
    end)
    helpers.with_aws_env(files { AWS_PROFILE = "nosuch" }, function()
      local _, err = search()
      assert.are.equal("ProfileNotFound", err.code)
    end)
  end)

  it("answers NoCredentialsError naming the profile when nothing provides credentials", function()
    helpers.with_aws_env({}, function()
      local res, err, keys = search()
      assert.is_nil(res)
      assert.are.equal("NoCredentialsError", err.code)
      assert.matches("'default'", err.message, 1, true)
      assert.are.same({}, keys)
    end)
  end)

  it("reads no file and makes no request when the client is created, only at the first request", function()
    local broken = file("[default]\nthis line is neither\n")
    helpers.with_aws_env({ AWS_CONFIG_FILE = broken }, function()
      local c = hi.client { region = "us-east-1", endpoint_url = emu.url }
      assert.is_table(c)
      local _, err = c:search_image_sets { datastoreId = DS }
      assert.are.equal("ConfigParseError", err.code)
      assert.matches("line 2", err.message, 1, true)
    end)
    os.remove(broken)
  end)

  it("never shows a secret in errors or in tostring of credentials", function()
    local secret = "do-not-show-this-secret-value"
    local bad = file("[default]\naws_access_key_id = AKIDX\naws_secret_access_key " .. secret .. "\n")
    helpers.with_aws_env({ AWS_SHARED_CREDENTIALS_FILE = bad }, function()
      local _, err = search()
      assert.are.equal("ConfigParseError", err.code)
      assert.is_nil(tostring(err):find(secret, 1, true))
    end)
    os.remove(bad)
    local credentials = require "healthimaging.credentials"
    local c = credentials.make({ access_key_id = "AKIDSHOWN", secret_access_key = secret,
                                 session_token = "token-" .. secret }, "spec")
    assert.is_nil(tostring(c):find(secret, 1, true))
    assert.matches("AKIDSHOWN", tostring(c), 1, true)
  end)
end)

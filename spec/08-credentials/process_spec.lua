-- credential_process, end to end: real scripts run without a shell, their
-- Version 1 JSON read, and a search the emulator accepts with exactly the
-- identity the script printed.
local helpers = require "helpers"
local hi = require "healthimaging"

local DS = helpers.DATASTORE_ID
local PROC = {
  { "ASIAPROCESS000000001", "process-secret-1", "process-token-1" },
  { "ASIAPROCESS000000002", "process-secret-2", "process-token-2" },
  { "AKIDPROCESSSTATIC001", "process-static-secret" },
}

local function arg(id) return table.concat(id, ":") end

describe("credential_process", function()
  local emu, dir

  setup(function()
    local args = {}
    for _, id in ipairs(PROC) do args[#args + 1] = "--credentials " .. arg(id) end
    emu = helpers.start_emulator { args = table.concat(args, " ") }
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. helpers.shell_quote(dir)))
  end)

  teardown(function()
    emu.stop()
    os.execute("rm -rf " .. helpers.shell_quote(dir))
  end)

  -- An executable script in the temporary folder; returns its path.
  local n = 0
  local function script(body)
    n = n + 1
    local path = dir .. "/cred-" .. n .. ".sh"
    helpers.write(path, "#!/bin/sh\n" .. body .. "\n")
    assert(os.execute("chmod +x " .. helpers.shell_quote(path)))
    return path
  end

  -- A script printing the identities of PROC in turn (a counter in a file),
  -- with an Expiration `ttl` seconds ahead when ttl is given.
  local function issuing(ids, ttl)
    local counter = dir .. "/count-" .. (n + 1)
    local lines = { "c=$(cat " .. counter .. " 2>/dev/null || echo 0); c=$((c + 1)); echo $c > " .. counter }
    for i, id in ipairs(ids) do
      local fields = { '"Version": 1', '"AccessKeyId": "' .. id[1] .. '"', '"SecretAccessKey": "' .. id[2] .. '"' }
      if id[3] then fields[#fields + 1] = '"SessionToken": "' .. id[3] .. '"' end
      if ttl then
        fields[#fields + 1] = '"Expiration": "\'"$(date -u -d @$(( $(date +%s) + ' .. ttl
          .. ' )) +%Y-%m-%dT%H:%M:%SZ)"\'"'
      end
      lines[#lines + 1] = "if [ $c -ge " .. i .. " ]; then out='{" .. table.concat(fields, ", ") .. "}'; fi"
    end
    lines[#lines + 1] = 'printf "%s" "$out"'
    return script(table.concat(lines, "\n")), counter
  end

  local function config_with(process_line)
    local cfg = dir .. "/config-" .. n
    helpers.write(cfg, "[default]\ncredential_process = " .. process_line .. "\n")
    return cfg
  end

  local function search(c)
    return c:search_image_sets { datastoreId = DS, maxResults = 1 }
  end

  local function client(extra)
    local rec = helpers.key_recorder()
    local opts = { region = "us-east-1", endpoint_url = emu.url, transport = rec }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return assert(hi.client(opts)), rec
  end

  it("signs with the temporary credentials a script prints, and runs it once while they are fresh", function()
    local path, counter = issuing({ PROC[1] }, 3600)
    helpers.with_aws_env({ AWS_CONFIG_FILE = config_with(path) }, function()
      local c, rec = client()
      assert.is_table((search(c)))
      assert.is_table((search(c)))
      assert.are.same({ PROC[1][1], PROC[1][1] }, rec.keys)
      assert.are.equal("1", helpers.read(counter):match("%d+"))
    end)
  end)

  it("keeps credentials without Expiration for good", function()
    local path, counter = issuing({ PROC[3] })
    helpers.with_aws_env({ AWS_CONFIG_FILE = config_with(path) }, function()
      local c, rec = client { clock = function() return os.time() + 200 end }
      for _ = 1, 3 do assert.is_table((search(c))) end
      assert.are.same({ PROC[3][1], PROC[3][1], PROC[3][1] }, rec.keys)
      assert.are.equal("1", helpers.read(counter):match("%d+"))
    end)
  end)

  it("runs the script again when its credentials near their Expiration", function()
    local path, counter = issuing({ PROC[1], PROC[2] }, 1100)
    helpers.with_aws_env({ AWS_CONFIG_FILE = config_with(path) }, function()
      local offset = 0
      local c, rec = client { clock = function() return os.time() + offset end }
      assert.is_table((search(c)))
      offset = 100    -- 1000 s left: outside the 15-minute window
      assert.is_table((search(c)))
      offset = 250    -- 850 s left, under 15 minutes: refresh (the emulator allows 5 minutes of skew)
      assert.is_table((search(c)))
      assert.are.same({ PROC[1][1], PROC[1][1], PROC[2][1] }, rec.keys)
      assert.are.equal("2", helpers.read(counter):match("%d+"))
    end)
  end)

  it("passes arguments split as shlex does, with no shell in between", function()
    local args_file = dir .. "/args"
    local path = script('for a in "$@"; do printf "%s\\n" "$a"; done > ' .. args_file .. "\n"
      .. "printf '{\"Version\": 1, \"AccessKeyId\": \"" .. PROC[3][1] .. "\", \"SecretAccessKey\": \""
      .. PROC[3][2] .. "\"}'")
    helpers.with_aws_env({ AWS_CONFIG_FILE = config_with(path .. [[ 'one two' "three $HOME" ;four |five]]) },
      function()
        local c, rec = client()
        assert.is_table((search(c)))
        assert.are.same({ PROC[3][1] }, rec.keys)
      end)
    assert.are.equal("one two\nthree $HOME\n;four\n|five\n", helpers.read(args_file))
  end)

  local secret_out = '{"Version": 1, "AccessKeyId": "AKIDX", "SecretAccessKey": "printed-secret-value"'
  local FAILURES = {
    { "a non-zero exit, with the first line of stderr", "echo 'token expired, run login' >&2; exit 3",
      "exited with status 3: token expired, run login" },
    { "an unsupported Version", "printf '{\"Version\": 2, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\"}'",
      "unsupported Version 2" },
    { "a missing Version", "printf '{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\"}'",
      "Version (missing" },
    { "output that is not JSON, without showing it", "printf '%s' '" .. secret_out .. "'",
      "not a JSON object" },
    { "a missing SecretAccessKey", "printf '{\"Version\": 1, \"AccessKeyId\": \"A\"}'",
      "lacks AccessKeyId or SecretAccessKey" },
    { "an Expiration that is not a date",
      "printf '{\"Version\": 1, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\", \"Expiration\": \"soon\"}'",
      "Expiration is not an ISO-8601" },
    { "a script killed by a signal", "kill -KILL $$", "killed by signal 9" },
  }
  for _, case in ipairs(FAILURES) do
    it("reports " .. case[1] .. ", sending nothing", function()
      local path = script(case[2])
      helpers.with_aws_env({ AWS_CONFIG_FILE = config_with(path) }, function()
        local c, rec = client()
        local res, err = search(c)
        assert.is_nil(res)
        assert.are.equal("CredentialRetrievalError", err.code)
        assert.matches(case[3], err.message, 1, true)
        assert.is_nil(tostring(err):find("printed-secret-value", 1, true))
        assert.are.same({}, rec.keys)
      end)
    end)
  end

  it("reports a program that cannot be found, and a command line that cannot be split", function()
    helpers.with_aws_env({ AWS_CONFIG_FILE = config_with("/nonexistent/credential-helper --json") }, function()
      local _, err = search((client()))
      assert.are.equal("CredentialRetrievalError", err.code)
      assert.are.equal("ProcessNotFound", err.reason)
    end)
    helpers.with_aws_env({ AWS_CONFIG_FILE = config_with("helper 'unclosed") }, function()
      local _, err = search((client()))
      assert.are.equal("InvalidConfigError", err.code)
      assert.matches("no closing quotation", err.message, 1, true)
    end)
  end)

  it("comes after the shared credentials file and before the config file's keys", function()
    local path = issuing({ PROC[3] })
    local cfg = dir .. "/config-order"
    helpers.write(cfg, "[default]\ncredential_process = " .. path
      .. "\naws_access_key_id = AKIDCONFIGNOTUSED001\naws_secret_access_key = x\n")
    local cred = dir .. "/cred-order"
    helpers.write(cred, "[default]\naws_access_key_id = " .. PROC[1][1] .. "\naws_secret_access_key = "
      .. PROC[1][2] .. "\naws_session_token = " .. PROC[1][3] .. "\n")
    helpers.with_aws_env({ AWS_CONFIG_FILE = cfg }, function()
      local c, rec = client()
      assert.is_table((search(c)))
      assert.are.same({ PROC[3][1] }, rec.keys)
    end)
    helpers.with_aws_env({ AWS_CONFIG_FILE = cfg, AWS_SHARED_CREDENTIALS_FILE = cred }, function()
      local c, rec = client()
      assert.is_table((search(c)))
      assert.are.same({ PROC[1][1] }, rec.keys)
    end)
  end)
end)

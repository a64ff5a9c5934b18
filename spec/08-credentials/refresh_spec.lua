-- Temporary credentials are cached and refreshed before they expire; a
-- failed refresh keeps the old ones while they are still valid. The
-- credentials come from `serve-identity` (IMDS, and STS web identity) with
-- a lifetime of 16 minutes; the client's clock option moves time forward
-- (within the emulator's 5-minute signature window), and every search is
-- one the emulator accepts with exactly the identity expected at that time.
local helpers = require "helpers"
local hi = require "healthimaging"
local credentials = require "healthimaging.credentials"

local DS = helpers.DATASTORE_ID
local ISSUED = {
  { "ASIAREFRESH000000001", "refresh-secret-1", "refresh-token-1" },
  { "ASIAREFRESH000000002", "refresh-secret-2", "refresh-token-2" },
}
local LIFETIME = 960   -- 16 minutes: one minute outside the 15-minute refresh window

describe("temporary credentials", function()
  local emu, idn

  setup(function()
    emu = helpers.start_emulator { args = "--credentials " .. table.concat(ISSUED[1], ":")
      .. " --credentials " .. table.concat(ISSUED[2], ":") }
  end)

  teardown(function() emu.stop() end)

  after_each(function()
    if idn then idn.stop(); idn = nil end
  end)

  local function identity(extra)
    idn = helpers.start_identity("--issue " .. table.concat(ISSUED[1], ":") .. " --issue "
      .. table.concat(ISSUED[2], ":") .. " --duration " .. LIFETIME .. " " .. (extra or ""))
  end

  -- A client whose clock is `offset()` seconds ahead; returns it and its recorder.
  local function client(offset)
    local rec = helpers.key_recorder()
    local c = assert(hi.client { region = "us-east-1", endpoint_url = emu.url, transport = rec,
                                 clock = function() return os.time() + offset() end })
    return c, rec
  end

  local function fetches(kind)
    local n = 0
    for _, e in ipairs(idn.events()) do
      if e.kind == kind then n = n + 1 end
    end
    return n
  end

  local function imds_env()
    return { AWS_EC2_METADATA_DISABLED = false, AWS_EC2_METADATA_SERVICE_ENDPOINT = idn.url }
  end

  it("are fetched once and reused while more than 15 minutes remain", function()
    identity()
    local offset = 0
    helpers.with_aws_env(imds_env(), function()
      local c, rec = client(function() return offset end)
      for _, t in ipairs { 0, 30, 55 } do
        offset = t
        assert.is_table((c:search_image_sets { datastoreId = DS }))
      end
      assert.are.same({ ISSUED[1][1], ISSUED[1][1], ISSUED[1][1] }, rec.keys)
    end)
    assert.are.equal(1, fetches("imds-token"))
  end)

  it("are refreshed once fewer than 15 minutes remain, and the new ones sign", function()
    identity()
    local offset = 0
    helpers.with_aws_env(imds_env(), function()
      local c, rec = client(function() return offset end)
      assert.is_table((c:search_image_sets { datastoreId = DS }))
      offset = 90
      assert.is_table((c:search_image_sets { datastoreId = DS }))
      offset = 100
      assert.is_table((c:search_image_sets { datastoreId = DS }))
      assert.are.same({ ISSUED[1][1], ISSUED[2][1], ISSUED[2][1] }, rec.keys)
    end)
    assert.are.equal(2, fetches("imds-token"))
  end)

  it("keep working when a refresh fails while they are still valid, and refresh later", function()
    identity()
    local offset = 0
    helpers.with_aws_env(imds_env(), function()
      local c, rec = client(function() return offset end)
      assert.is_table((c:search_image_sets { datastoreId = DS }))
      -- the token request and the IMDSv1 fallback's first request both fail
      helpers.control(idn, "POST", "/_identity/fail", { times = 2, status = 500 })
      offset = 90
      local res, err = c:search_image_sets { datastoreId = DS }
      assert.is_nil(err and tostring(err))
      assert.is_table(res)
      assert.are.equal(2, fetches("injected-failure"))
      local seen = #idn.events()
      offset = 100   -- within 30 s of the failure: no new attempt
      assert.is_table((c:search_image_sets { datastoreId = DS }))
      assert.are.equal(seen, #idn.events())
      offset = 125   -- 30 s later: the refresh is tried again and succeeds
      assert.is_table((c:search_image_sets { datastoreId = DS }))
      assert.are.equal(2, fetches("imds-token"))
      assert.are.same({ ISSUED[1][1], ISSUED[1][1], ISSUED[1][1], ISSUED[2][1] }, rec.keys)
    end)
  end)

  it("fail, sending nothing, when the refresh fails and the old ones are about to expire", function()
    identity()
    local offset = 0
    helpers.with_aws_env(imds_env(), function()
      local c, rec = client(function() return offset end)
      assert.is_table((c:search_image_sets { datastoreId = DS }))
      helpers.control(idn, "POST", "/_identity/fail", { times = 100, status = 503 })
      offset = LIFETIME - 30   -- less than a minute of validity left
      local res, err = c:search_image_sets { datastoreId = DS }
      assert.is_nil(res)
      assert.are.equal("CredentialRetrievalError", err.code)
      assert.are.same({ ISSUED[1][1] }, rec.keys)
    end)
  end)

  it("from web identity read the token file again on refresh", function()
    identity "--web-identity-token first-token --web-identity-token second-token"
    local tf = os.tmpname()
    helpers.write(tf, "first-token")
    local offset = 0
    helpers.with_aws_env({ AWS_WEB_IDENTITY_TOKEN_FILE = tf, AWS_ROLE_ARN = "arn:aws:iam::123456789012:role/ci",
                           AWS_ENDPOINT_URL_STS = idn.url }, function()
      local c, rec = client(function() return offset end)
      assert.is_table((c:search_image_sets { datastoreId = DS }))
      helpers.write(tf, "second-token")
      offset = 120
      assert.is_table((c:search_image_sets { datastoreId = DS }))
      assert.are.same({ ISSUED[1][1], ISSUED[2][1] }, rec.keys)
    end)
    os.remove(tf)
    assert.are.equal(2, fetches("AssumeRoleWithWebIdentity"))
  end)

  it("follow the refresh rules of the cache, step by step", function()
    local now, calls, answer = 1000, 0, nil
    local cache = credentials._Cache.new(function()
      calls = calls + 1
      if answer == "fail" then return nil, { code = "Down" } end
      return credentials.make({ access_key_id = "AKID" .. calls, secret_access_key = "s",
                                expiration = now + 3600 }, "spec")
    end, function() return now end)
    assert.are.equal("AKID1", cache:get().access_key_id)
    now = 1000 + 3600 - 901                 -- just outside the window
    assert.are.equal("AKID1", cache:get().access_key_id)
    now = 1000 + 3600 - 899                 -- inside: refresh
    assert.are.equal("AKID2", cache:get().access_key_id)
    local exp2 = cache:get().expiration
    answer = "fail"
    now = exp2 - 899
    assert.are.equal("AKID2", cache:get().access_key_id)    -- failed, old kept
    assert.are.equal(3, calls)
    now = now + 29
    assert.are.equal("AKID2", cache:get().access_key_id)    -- no retry within 30 s
    assert.are.equal(3, calls)
    now = exp2 - 59                                          -- under a minute left
    local c, err = cache:get()
    assert.is_nil(c)
    assert.are.equal("Down", err.code)
    assert.are.equal(4, calls)
  end)
end)

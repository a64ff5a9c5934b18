-- https against the emulator's https mode, whose test CA is made when it
-- starts: the client verifies the server's certificate always; it succeeds
-- with that CA as ca_bundle or AWS_CA_BUNDLE, and without it fails at once
-- with a TLSError that says why and is not retried.
local helpers = require "helpers"

local DS = helpers.DATASTORE_ID
local SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

local emu

setup(function() emu = helpers.start_https_emulator() end)
teardown(function() if emu then emu.stop() end end)

-- The emulator's /_local API, over https with its CA.
local function control(method, path, body)
  return helpers.control(emu, method, path, body)
end

local function search(c) return c:search_image_sets { datastoreId = DS, maxResults = 3 } end

-- Runs fn with AWS_CA_BUNDLE set to value (false: unset).
local function with_bundle(value, fn) helpers.with_env({ AWS_CA_BUNDLE = value }, fn) end

describe("https", function()
  it("serves https with a CA made at start, announced as a file", function()
    assert.matches("^https://127%.0%.0%.1:%d+$", emu.url)
    assert.is_true(helpers.exists(emu.ca))
    assert.matches("BEGIN CERTIFICATE", helpers.read(emu.ca))
  end)

  it("succeeds with that CA as ca_bundle", function()
    with_bundle(false, function()
      local res, err = search(helpers.client(emu, { ca_bundle = emu.ca }))
      assert.is_nil(err)
      assert.are.equal(3, #res.imageSetsMetadataSummaries)
    end)
  end)

  it("succeeds with that CA in AWS_CA_BUNDLE", function()
    with_bundle(emu.ca, function()
      local res, err = search(helpers.client(emu))
      assert.is_nil(err)
      assert.are.equal(3, #res.imageSetsMetadataSummaries)
    end)
  end)

  it("fails without it: a TLSError, not retryable, that says the certificate was not verified", function()
    for _, bundle in ipairs { false, SYSTEM_BUNDLE } do
      with_bundle(false, function()
        local before = select(2, control("GET", "/_local/stats"))
        local waits = {}
        local c = helpers.client(emu, { ca_bundle = bundle or nil, sleep = function(s) waits[#waits + 1] = s end })
        local res, err = search(c)
        assert.is_nil(res)
        assert.are.equal("TLSError", err.code)
        assert.is_false(err.retryable)
        assert.are.equal(1, err.attempts)
        assert.are.same({}, waits)
        assert.matches("^TLS verification failed: .*certificate", err.message)
        assert.are.equal(before.requests, select(2, control("GET", "/_local/stats")).requests)
      end)
    end
  end)

  it("prefers the ca_bundle option over AWS_CA_BUNDLE", function()
    with_bundle(emu.ca, function()
      local _, err = search(helpers.client(emu, { ca_bundle = SYSTEM_BUNDLE }))
      assert.are.equal("TLSError", err.code)
    end)
  end)

  it("recovers from faults over TLS as over plain http", function()
    with_bundle(false, function()
      local c = helpers.client(emu, { ca_bundle = emu.ca, sleep = function() end })
      local clean = assert(search(c))
      for _, kind in ipairs { "cut", "drop", "reset", "truncated", "throttle" } do
        control("POST", "/_local/faults", { kind = kind })
        local res, err = search(c)
        assert.is_nil(err, kind)
        assert.is_true(helpers.same(clean, res), kind)
      end
      control("POST", "/_local/faults", { kind = "cut", times = 3 })
      local _, err = search(c)
      assert.are.equal("ConnectionError", err.code)
      assert.is_true(err.retryable)
    end)
  end)
end)

-- healthimaging: a client of AWS HealthImaging's SearchImageSets for Lua,
-- over a C core (SigV4, libcurl, a private lua-cjson). This file is the
-- public face: hi.client{...} and the error helpers; the pipeline lives in
-- healthimaging.client and the paginator in healthimaging.paginator.
--
-- local hi = require "healthimaging"
-- local client = assert(hi.client{ region = "us-east-1" })
-- for s in client:get_paginator("search_image_sets"):paginate{ datastoreId = id }:items() do ... end

local core = require "healthimaging.core"
local client = require "healthimaging.client"
local errors = require "healthimaging.errors"

local _M = { _VERSION = core._VERSION }

--[[
Creates a client.
Input: opts, the table of client options in README.md ("Client options"):
region, endpoint_url, credentials, profile, timeout, connect_timeout,
max_attempts, retry_mode, ca_bundle, proxy, use_fips_endpoint,
use_dualstack_endpoint, disable_host_prefix_injection, transport, debug and
the testing aids clock, sleep, random, monotime. An unknown option or one of
the wrong type is an error.
Returns: client, or nil, err.
]]
function _M.client(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'client' (table expected, got " .. type(opts) .. ")", 2)
  end
  return client.new(opts)
end

-- True when v is an error object returned or raised by this library.
_M.is_error = errors.is_error

return _M

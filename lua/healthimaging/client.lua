-- healthimaging.client: the SearchImageSets client and its one-way pipeline:
-- params -> validate -> serialize -> endpoint -> sign -> transport -> parse.
-- Each step lives in its own module; this file only wires them. The
-- transport is a seam (any object with :request(req) returning status,
-- headers, body or nil, err), so a non-blocking transport can replace the
-- blocking libcurl one; nothing here assumes that a call does not yield.

local core = require "healthimaging.core"
local model = require "healthimaging.model"
local errors = require "healthimaging.errors"
local config = require "healthimaging.config"
local credentials = require "healthimaging.credentials"
local validate = require "healthimaging.validate"
local request = require "healthimaging.request"
local paginator = require "healthimaging.paginator"
local retry = require "healthimaging.retry"
local time = require "healthimaging.time"

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local error = error
local setmetatable = setmetatable
local getmetatable = getmetatable
local tostring = tostring
local os_time = os.time
local lower = string.lower
local find = string.find

local _M = { _VERSION = core._VERSION }
local mt = { __index = _M, __name = "healthimaging.client" }

mt.__tostring = function(self)
  return "healthimaging.client (" .. (self.opts.region or "region unresolved") .. ")"
end

local USER_AGENT = "healthimaging-lua/" .. core._VERSION

-- Options a client accepts; anything else is a typo worth an error.
local OPTIONS = {
  region = "string", endpoint_url = "string", credentials = "table|function", profile = "string",
  use_fips_endpoint = "boolean", use_dualstack_endpoint = "boolean",
  timeout = "number", connect_timeout = "number", transport = "table", clock = "function",
  disable_host_prefix_injection = "boolean", ca_bundle = "string", proxy = "string",
  max_attempts = "number", retry_mode = "string", debug = "function",
  -- testing aids: the signing clock, the wait between attempts, the jitter
  -- source and the monotonic clock of the adaptive rate limiter
  sleep = "function", random = "function", monotime = "function",
}

-- Longest timeout accepted, in seconds (the transport's own limit).
local MAX_TIMEOUT = 2147483
local RETRY_MODES = { standard = true, adaptive = true, legacy = true }

-- Checks the values of options whose type is right; returns what is wrong.
local function option_problem(opts)
  for _, k in ipairs { "timeout", "connect_timeout" } do
    local v = opts[k]
    if v ~= nil and not (v > 0 and v <= MAX_TIMEOUT) then
      return "client option '" .. k .. "' must be a number of seconds above 0 and at most " .. MAX_TIMEOUT
    end
  end
  local n = opts.max_attempts
  if n ~= nil and not (math.tointeger(n) and n >= 1) then
    return "client option 'max_attempts' must be an integer of at least 1"
  end
  if opts.retry_mode ~= nil and not RETRY_MODES[opts.retry_mode] then
    return "client option 'retry_mode' must be standard or adaptive"
  end
  return nil
end

-- Checks credentials before they reach the signer, without showing them.
local function credentials_problem(c)
  if type(c.access_key_id) ~= "string" or not find(c.access_key_id, "^[%w%p]+$") then
    return "access_key_id must be a non-empty string of printable characters without spaces"
  end
  if type(c.secret_access_key) ~= "string" or c.secret_access_key == "" then
    return "secret_access_key must be a non-empty string"
  end
  local t = c.session_token
  if t ~= nil and (type(t) ~= "string" or find(t, "%c")) then
    return "session_token must be a string without control characters"
  end
  return nil
end

local profile, transport -- defined below; new() binds getters to them

--[[
Creates a client. No file or network I/O happens here: region, endpoint and
credentials are resolved on first use.
Input: opts (see README), or nil.
Returns: client, or nil, err for options of the wrong type.
]]
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #1 to 'client' (table expected, got " .. type(opts) .. ")", 2)
  end
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if not want then
      return nil, errors.new { code = "InvalidClientOption", message = "unknown client option '" .. tostring(k) .. "'" }
    end
    if not string.find("|" .. want .. "|", "|" .. type(v) .. "|", 1, true) then
      return nil, errors.new {
        code = "InvalidClientOption",
        message = "client option '" .. k .. "' must be a " .. want:gsub("|", " or ") .. ", got " .. type(v),
      }
    end
  end
  local bad = option_problem(opts)
  if bad then return nil, errors.new { code = "InvalidClientOption", message = bad } end
  local self = { opts = opts }
  -- The getters the config and paginator modules call back: made once here,
  -- not a closure per call (transport_of runs on every attempt).
  self._profile_of = function() return profile(self) end
  self._transport_of = function() return transport(self) end
  return setmetatable(self, mt)
end

local function check_self(self, fname)
  if getmetatable(self) ~= mt then
    error("bad argument #1 to '" .. fname .. "' (healthimaging.client expected; use client:" .. fname .. ")", 3)
  end
end

-- The profile's settings, read once and only when a value needs them.
profile = function(self)
  if not self._profile then
    self._profile = config.load_profile(config.profile_name(self.opts))
  end
  return self._profile
end

-- Region and endpoint, resolved once.
local function resolve_endpoint(self)
  if self._endpoint then return self._endpoint end
  local region, err = config.region(self.opts, self._profile_of)
  if not region then return nil, err end
  local ep
  ep, err = config.endpoint(self.opts, region, self._profile_of)
  if not ep then return nil, err end
  self._region, self._endpoint = region, ep
  return ep
end

-- Retry settings: option, environment, profile, then the SDK defaults.
local function retryer(self)
  if self._retry then return self._retry end
  local opts = self.opts
  local attempts, mode, err = config.retry_settings(opts, self._profile_of)
  if not attempts then return nil, mode or err end
  self._retry = retry.new {
    max_attempts = attempts, mode = mode, random = opts.random, now = opts.monotime or core.monotime,
  }
  return self._retry
end

transport = function(self)
  if not self._transport then
    local ep = self._endpoint
    self._transport = self.opts.transport or core.http_new {
      timeout = self.opts.timeout or 30,
      connect_timeout = self.opts.connect_timeout or 5,
      ca_bundle = config.ca_bundle(self.opts, self._profile_of),
      proxy = config.proxy(self.opts, ep.scheme, ep.hostname),
    }
  end
  return self._transport
end

-- Waits between attempts: the option (a testing aid), the transport's own
-- sleep (a non-blocking transport yields there), or the core's.
local function sleep(self, seconds)
  if seconds <= 0 then return end
  if self.opts.sleep then return self.opts.sleep(seconds) end
  local t = transport(self)
  if t.sleep then return t:sleep(seconds) end
  return core.sleep(seconds)
end

-- Now, corrected by the clock offset learnt from a skewed answer.
local function now(self)
  return (self.opts.clock and self.opts.clock() or os_time()) + (self._clock_offset or 0)
end

-- Hands an event to the debug hook, if any; the hook gets no secret and no body.
local function emit(self, event)
  local hook = self.opts.debug
  if hook then hook(event) end
end

local REDACTED_HEADERS = { authorization = true, ["x-amz-security-token"] = true }

local function redacted(headers)
  local out = {}
  for i, h in ipairs(headers) do
    out[i] = { h[1], REDACTED_HEADERS[lower(h[1])] and "<redacted>" or h[2] }
  end
  return out
end

--[[
Checks the shape of a decoded success answer: an object with the required
list of summaries (each an object whose members have the model's types),
and a string token if any. A body that
is not one must never pass for an empty last page, which would end a scan
silently. Returns: nil when it is fine, else what is wrong.
]]
local RESULT_KEY = model.PAGINATOR.result_key
local mtype = math.type

-- A member of the wrong type, by name (never by value), or nil. It checks
-- what the library promises (ids are strings, integers are integers,
-- timestamps numbers, flags booleans) by direct field reads: this runs for
-- every image set of a scan, and a loop over every member costs more than
-- the decoding (docs/PERFORMANCE.md).
local function summary_problem(s)
  if type(s) ~= "table" then return "is not an object" end
  if type(s.imageSetId) ~= "string" then return "has no imageSetId string" end
  local v = s.version
  if v ~= nil and mtype(v) ~= "integer" then return "version is not an integer" end
  v = s.createdAt
  if v ~= nil and type(v) ~= "number" then return "createdAt is not a number" end
  v = s.updatedAt
  if v ~= nil and type(v) ~= "number" then return "updatedAt is not a number" end
  v = s.lastAccessedAt
  if v ~= nil and type(v) ~= "number" then return "lastAccessedAt is not a number" end
  v = s.isPrimary
  if v ~= nil and type(v) ~= "boolean" then return "isPrimary is not a boolean" end
  v = s.storageTier
  if v ~= nil and type(v) ~= "string" then return "storageTier is not a string" end
  local tags = s.DICOMTags
  if tags ~= nil then
    if type(tags) ~= "table" then return "DICOMTags is not an object" end
    v = tags.DICOMSeriesNumber
    if v ~= nil and mtype(v) ~= "integer" then return "DICOMTags.DICOMSeriesNumber is not an integer" end
    v = tags.DICOMNumberOfStudyRelatedSeries
    if v ~= nil and mtype(v) ~= "integer" then
      return "DICOMTags.DICOMNumberOfStudyRelatedSeries is not an integer"
    end
    v = tags.DICOMNumberOfStudyRelatedInstances
    if v ~= nil and mtype(v) ~= "integer" then
      return "DICOMTags.DICOMNumberOfStudyRelatedInstances is not an integer"
    end
  end
  return nil
end

local function response_problem(res, derr)
  if type(res) ~= "table" then return "not JSON" .. (derr and (" (" .. derr .. ")") or "") end
  if res[1] ~= nil then return "a JSON array, not an object" end
  local list = res[RESULT_KEY]
  if type(list) ~= "table" then return "no " .. RESULT_KEY .. " list" end
  for i = 1, #list do
    local bad = summary_problem(list[i])
    if bad then return RESULT_KEY .. "[" .. i .. "] " .. bad end
  end
  local nt = res[model.PAGINATOR.output_token]
  if nt ~= nil and type(nt) ~= "string" then return "nextToken is not a string" end
  return nil
end

--[[
Signs and sends one attempt, then parses the answer.
Returns: the typed response table, or nil, err.
]]
local function attempt(self, wire, ep, creds)
  local headers = {
    { "Host", ep.host },
    { "Content-Type", "application/json" },
    { "User-Agent", USER_AGENT },
  }
  local signed = core.sign {
    method = wire.method, path = ep.base .. wire.path, query = wire.query, headers = headers,
    body = wire.body, region = self._region, service = model.SERVICE.signing_name,
    access_key_id = creds.access_key_id, secret_access_key = creds.secret_access_key,
    session_token = creds.session_token, amz_date = time.amz_date(now(self)),
  }
  for _, h in ipairs(signed.headers) do headers[#headers + 1] = h end
  headers[#headers + 1] = { "Authorization", signed.authorization }

  local url = ep.url_base .. wire.path
  if wire.query ~= "" then url = url .. "?" .. wire.query end
  if self.opts.debug then
    emit(self, { type = "request", method = wire.method, url = url, headers = redacted(headers),
                 body_bytes = #wire.body })
  end
  -- paginator.send is t:request, except in a prefetch (see there).
  local status, rheaders, body = paginator.send(self._transport_of, {
    method = wire.method, url = url, headers = headers, body = wire.body,
  })
  if not status then return nil, errors.from_transport(rheaders) end
  if math.type(status) ~= "integer" or type(rheaders) ~= "table" or type(body) ~= "string" then
    return nil, errors.new {
      code = "TransportError",
      message = "the transport answered something other than status (integer), headers (table), body (string)",
    }
  end
  if self.opts.debug then
    emit(self, { type = "response", status = status, headers = rheaders, body_bytes = #body,
                 request_id = rheaders["x-amzn-requestid"] })
  end
  if status >= 200 and status < 300 then
    local res, derr = core.json_decode(body, model.INTEGER_KEYS)
    local bad = response_problem(res, derr)
    if bad then
      return nil, errors.new {
        code = "ResponseParserError",
        message = "the response body is not a SearchImageSets answer: " .. bad,
        status = status,
        request_id = rheaders["x-amzn-requestid"],
        retryable = true,
      }
    end
    return res
  end
  local decoded = core.json_decode(body or "")
  return nil, errors.from_response(status, rheaders, decoded)
end

--[[
Learns the clock offset from a skewed answer's Date header.
Returns: true when the offset changed (so one more attempt is worth it).
]]
local function correct_skew(self, err)
  if not errors.is_clock_skew(err) or not err.server_time then return false end
  local offset = err.server_time - (self.opts.clock and self.opts.clock() or os_time())
  if self._clock_offset == offset then return false end
  self._clock_offset = offset
  return true
end

-- The credential chain of this client (healthimaging.credentials), made on
-- first use; it caches and refreshes the credentials it finds.
local function credential_resolver(self)
  if not self._credentials then
    local opts = self.opts
    local p = self._profile_of
    self._credentials = credentials.new {
      opts = opts, profile = p,
      region = function() return self._region or config.region(opts, p) end,
      now = function() return opts.clock and opts.clock() or os_time() end,
      sleep = function(seconds) return sleep(self, seconds) end,
      ca_bundle = function() return config.ca_bundle(opts, p) end,
      proxy = function(scheme, host) return config.proxy(opts, scheme, host) end,
    }
  end
  return self._credentials
end

--[[
Sends a wire request with the client's retry policy: every attempt signed
afresh, backoff between attempts, an immediate attempt after a clock-skew
correction (within max_attempts).
Returns: the typed response table, or nil, err (err.attempts tells how many).
]]
local function send(self, wire)
  local ep, err = resolve_endpoint(self)
  if not ep then return nil, err end
  local creds
  creds, err = credential_resolver(self):get()
  if not creds then return nil, err end
  local bad = credentials_problem(creds)
  if bad then return nil, errors.new { code = "InvalidCredentials", message = bad } end
  local r
  r, err = retryer(self)
  if not r then return nil, err end

  local n, skew_retried, cost = 0, false, nil
  while true do
    n = n + 1
    sleep(self, r:before_attempt())
    local res
    res, err = attempt(self, wire, ep, creds)
    r:after_attempt(err ~= nil and err.throttling == true)
    if res then
      r:on_success(cost)
      return res
    end
    err.attempts = n
    local delay, spent
    -- The offset is learnt in any case; the retry it allows is an attempt
    -- like any other, within max_attempts (as the JS SDK counts it).
    if not skew_retried and correct_skew(self, err) and n < r.max_attempts then
      skew_retried, delay = true, 0
    else
      delay, spent = r:retry_delay(err, n)  -- spent: the quota taken, or why not
      if not delay then
        err.retry_stopped = spent
        return nil, err
      end
      cost = (cost or 0) + spent
    end
    emit(self, { type = "retry", attempt = n, code = err.code, delay = delay })
    sleep(self, delay)
  end
end

--[[
SearchImageSets.
Input: params = { datastoreId, searchCriteria, maxResults, nextToken }.
Returns: the response table ({ imageSetsMetadataSummaries, nextToken, sort }),
or nil, err. Nothing is sent when validation fails.
]]
function _M:search_image_sets(params)
  check_self(self, "search_image_sets")
  if type(params) ~= "table" then
    error("bad argument #1 to 'search_image_sets' (table expected, got " .. type(params) .. ")", 2)
  end
  local ok, res, err = pcall(function()
    local p, verr = validate.search_image_sets(params)
    if not p then return nil, verr end
    local wire, serr = request.search_image_sets(p)
    if not wire then return nil, serr end
    return send(self, wire)
  end)
  if not ok then return nil, errors.from_raise(res) end
  return res, err
end

--[[
Returns a paginator for an operation, named as in boto3 ("search_image_sets")
or as in the model ("SearchImageSets"). opts = { max_pages = N } caps the
pages of one iteration.
]]
function _M:get_paginator(name, opts)
  check_self(self, "get_paginator")
  if name ~= "search_image_sets" and name ~= "SearchImageSets" then
    error("bad argument #1 to 'get_paginator' (no paginator named '" .. tostring(name)
      .. "'; this client has 'search_image_sets')", 2)
  end
  if opts ~= nil and (type(opts) ~= "table" or (opts.max_pages ~= nil and not (math.tointeger(opts.max_pages)
      and opts.max_pages >= 1))) then
    error("bad argument #2 to 'get_paginator' (table with an integer max_pages >= 1 expected)", 2)
  end
  return paginator.new(self, opts)
end

--[[
Frees the transport now instead of at garbage collection. The client can
still be used; a new transport is made on the next call.
]]
function _M:close()
  check_self(self, "close")
  local t = self._transport
  self._transport = nil
  if t and t ~= self.opts.transport and t.close then t:close() end
end

mt.__close = function(self) self:close() end

return _M

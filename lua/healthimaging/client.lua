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
local validate = require "healthimaging.validate"
local request = require "healthimaging.request"
local paginator = require "healthimaging.paginator"

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local error = error
local setmetatable = setmetatable
local getmetatable = getmetatable
local tostring = tostring
local os_time = os.time
local os_date = os.date
local floor = math.floor

local _M = { _VERSION = core._VERSION }
local mt = { __index = _M, __name = "healthimaging.client" }

mt.__tostring = function(self)
  return "healthimaging.client (" .. (self.opts.region or "region unresolved") .. ")"
end

local USER_AGENT = "healthimaging-lua/" .. core._VERSION

-- Options a client accepts; anything else is a typo worth an error.
local OPTIONS = {
  region = "string", endpoint_url = "string", credentials = "table", profile = "string",
  timeout = "number", connect_timeout = "number", transport = "table", clock = "function",
  disable_host_prefix_injection = "boolean", ca_bundle = "string",
}

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
    if type(v) ~= want then
      return nil, errors.new {
        code = "InvalidClientOption",
        message = "client option '" .. k .. "' must be a " .. want .. ", got " .. type(v),
      }
    end
  end
  local self = { opts = opts }
  return setmetatable(self, mt)
end

local function check_self(self, fname)
  if getmetatable(self) ~= mt then
    error("bad argument #1 to '" .. fname .. "' (healthimaging.client expected; use client:" .. fname .. ")", 3)
  end
end

-- The profile's settings, read once and only when a value needs them.
local function profile(self)
  if not self._profile then
    self._profile = config.load_profile(config.profile_name(self.opts))
  end
  return self._profile
end

-- Region and endpoint, resolved once.
local function resolve_endpoint(self)
  if self._endpoint then return self._endpoint end
  local region, err = config.region(self.opts, function() return profile(self) end)
  if not region then return nil, err end
  local ep
  ep, err = config.endpoint(self.opts, region)
  if not ep then return nil, err end
  self._region, self._endpoint = region, ep
  return ep
end

local function transport(self)
  if not self._transport then
    self._transport = self.opts.transport or core.http_new {
      timeout = self.opts.timeout or 30,
      connect_timeout = self.opts.connect_timeout or 5,
      ca_bundle = self.opts.ca_bundle,
    }
  end
  return self._transport
end

-- The signing time as X-Amz-Date; the clock option is a testing aid.
local function amz_date(self)
  local now = self.opts.clock and self.opts.clock() or os_time()
  return os_date("!%Y%m%dT%H%M%SZ", floor(now))
end

--[[
Signs and sends one wire request, then parses the answer.
Returns: the typed response table, or nil, err.
]]
local function send(self, wire)
  local ep, err = resolve_endpoint(self)
  if not ep then return nil, err end
  local creds
  creds, err = config.credentials(self.opts, function() return profile(self) end)
  if not creds then return nil, err end

  local headers = {
    { "Host", ep.host },
    { "Content-Type", "application/json" },
    { "User-Agent", USER_AGENT },
  }
  local signed = core.sign {
    method = wire.method, path = ep.base .. wire.path, query = wire.query, headers = headers,
    body = wire.body, region = self._region, service = model.SERVICE.signing_name,
    access_key_id = creds.access_key_id, secret_access_key = creds.secret_access_key,
    session_token = creds.session_token, amz_date = amz_date(self),
  }
  for _, h in ipairs(signed.headers) do headers[#headers + 1] = h end
  headers[#headers + 1] = { "Authorization", signed.authorization }

  local url = ep.url_base .. wire.path
  if wire.query ~= "" then url = url .. "?" .. wire.query end
  local status, rheaders, body = transport(self):request {
    method = wire.method, url = url, headers = headers, body = wire.body,
  }
  if not status then
    local terr = rheaders
    if not errors.is_error(terr) then terr = errors.new(terr) end
    return nil, terr
  end
  if status >= 200 and status < 300 then
    local res, derr = core.json_decode(body, model.INTEGER_KEYS)
    if type(res) ~= "table" then
      return nil, errors.new {
        code = "ResponseParserError",
        message = "the response body is not a JSON object" .. (derr and (": " .. derr) or ""),
        status = status,
        request_id = rheaders["x-amzn-requestid"],
      }
    end
    if res[model.PAGINATOR.result_key] == nil then res[model.PAGINATOR.result_key] = {} end
    return res
  end
  local decoded = core.json_decode(body or "")
  return nil, errors.from_response(status, rheaders, decoded)
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
or as in the model ("SearchImageSets").
]]
function _M:get_paginator(name)
  check_self(self, "get_paginator")
  if name ~= "search_image_sets" and name ~= "SearchImageSets" then
    error("bad argument #1 to 'get_paginator' (no paginator named '" .. tostring(name)
      .. "'; this client has 'search_image_sets')", 2)
  end
  return paginator.new(self)
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

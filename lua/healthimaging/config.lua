-- healthimaging.config: where a client's region, endpoint and credentials
-- come from: explicit options, then the environment, then the shared AWS
-- files (~/.aws/credentials and ~/.aws/config, or AWS_SHARED_CREDENTIALS_FILE
-- and AWS_CONFIG_FILE) of the chosen profile. Nothing here reads a file
-- until a value is asked for; the files are read at most once per client.

local errors = require "healthimaging.errors"
local model = require "healthimaging.model"

local type = type
local tonumber = tonumber
local pairs = pairs
local open = io.open
local match = string.match
local find = string.find
local lower = string.lower
local sub = string.sub
local gsub = string.gsub

local _M = {}

-- The environment lookup; specs replace it to simulate variables.
_M.getenv = os.getenv

local function env(name)
  local v = _M.getenv(name)
  if v == "" then return nil end
  return v
end

-- The first non-empty value among several environment variables.
local function first_env(...)
  for i = 1, select("#", ...) do
    local v = env((select(i, ...)))
    if v then return v end
  end
end

--[[
Parses an AWS shared config/credentials file as botocore does: `[section]`
headers, `key = value` lines, full-line comments with # or ;, and indented
`key = value` lines under a key with an empty value (nested sections such
as `s3 =` or `medical_imaging =`), kept as a sub-table.
Input: text. Returns: { [section] = { key = value or { key = value } } }.
]]
function _M.parse_ini(text)
  local sections, current, nested = {}, nil, nil
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    line = gsub(line, "\r$", "")
    local indented = find(line, "^[ \t]") ~= nil
    local trimmed = match(line, "^%s*(.-)%s*$")
    local comment = trimmed == "" or find(trimmed, "^[#;]")
    if not comment and not indented and find(trimmed, "^%[") then
      local name = match(trimmed, "^%[%s*(.-)%s*%]")
      if name then
        current = sections[name] or {}
        sections[name] = current
      else
        current = nil
      end
      nested = nil
    elseif not comment and current then
      local k, v = match(trimmed, "^([^=]-)%s*=%s*(.-)$")
      if k and k ~= "" then
        -- inline comments need a space before the marker, as in botocore
        v = gsub(v, "%s+[#;].*$", "")
        k = lower(k)
        if indented and nested then
          nested[k] = v
        elseif v == "" then
          nested = {}
          current[k] = nested
        else
          current[k] = v
          nested = nil
        end
      end
    end
  end
  return sections
end

local function read_file(path)
  local f = open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

local function home_path(rel)
  local home = env("HOME") or ""
  return home .. "/" .. rel
end

local function expand(path)
  if sub(path, 1, 2) == "~/" then return home_path(sub(path, 3)) end
  return path
end

--[[
Returns: the settings of a profile merged from both shared files:
{ config = {...}, credentials = {...} } (tables, possibly empty).
]]
function _M.load_profile(profile)
  local cfg_path = expand(env("AWS_CONFIG_FILE") or "~/.aws/config")
  local cred_path = expand(env("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials")
  local cfg = _M.parse_ini(read_file(cfg_path) or "")
  local cred = _M.parse_ini(read_file(cred_path) or "")
  local cfg_section = profile == "default" and (cfg["default"] or cfg["profile default"])
    or cfg["profile " .. profile]
  return { config = cfg_section or {}, credentials = cred[profile] or {} }
end

-- The profile name of a client: option, AWS_PROFILE, AWS_DEFAULT_PROFILE, "default".
function _M.profile_name(opts)
  return opts.profile or first_env("AWS_PROFILE", "AWS_DEFAULT_PROFILE") or "default"
end

--[[
Region: explicit option, AWS_REGION, AWS_DEFAULT_REGION, then the profile.
Input: opts, and a function returning the loaded profile.
Returns: region or nil, err.
]]
function _M.region(opts, profile)
  local r = opts.region or first_env("AWS_REGION", "AWS_DEFAULT_REGION") or profile().config.region
  if not r then
    return nil, errors.new {
      code = "NoRegionError",
      message = "no region: set region in the client options, AWS_REGION, "
        .. "AWS_DEFAULT_REGION or the profile's region",
    }
  end
  if not find(r, "^[%w%-]+$") then
    return nil, errors.new { code = "InvalidRegionError", message = "region must be letters, digits and '-'" }
  end
  return r
end

--[[
Credentials: explicit table, then the environment, then the shared
credentials file, then the config file of the profile.
Returns: { access_key_id, secret_access_key, session_token } or nil, err.
]]
function _M.credentials(opts, profile)
  local c = opts.credentials
  if c then
    if type(c) ~= "table" or type(c.access_key_id) ~= "string" or type(c.secret_access_key) ~= "string" then
      return nil, errors.new {
        code = "InvalidCredentials",
        message = "credentials must be a table with access_key_id and secret_access_key strings",
      }
    end
    return c
  end
  local key, secret = env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")
  if key or secret then
    if not (key and secret) then
      return nil, errors.new {
        code = "PartialCredentialsError",
        message = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together",
      }
    end
    return { access_key_id = key, secret_access_key = secret, session_token = env("AWS_SESSION_TOKEN") }
  end
  local p = profile()
  for _, src in pairs { p.credentials, p.config } do
    if src.aws_access_key_id and src.aws_secret_access_key then
      return {
        access_key_id = src.aws_access_key_id,
        secret_access_key = src.aws_secret_access_key,
        session_token = src.aws_session_token,
      }
    end
  end
  return nil, errors.new {
    code = "NoCredentialsError",
    message = "no credentials: give credentials in the client options, set AWS_ACCESS_KEY_ID and "
      .. "AWS_SECRET_ACCESS_KEY, or add keys to the profile '" .. _M.profile_name(opts) .. "'",
  }
end

-- True for hosts the `runtime-` prefix must never be put before: an IP
-- literal or localhost, where the prefixed name could never resolve.
local function is_literal_host(host)
  return find(host, "^%d+%.%d+%.%d+%.%d+$") or find(host, "^%[") or lower(host) == "localhost"
end

--[[
Parses an endpoint URL: scheme://host[:port][/base].
Returns: { scheme, host, port (string or nil), base } or nil, err.
]]
function _M.parse_endpoint(url)
  local scheme, authority, base = match(url, "^(%a[%w+.-]*)://([^/?#]+)([^?#]*)$")
  scheme = scheme and lower(scheme)
  if not scheme or (scheme ~= "http" and scheme ~= "https") or find(authority, "@") then
    return nil, errors.new {
      code = "InvalidEndpointError",
      message = "endpoint_url must be http://host[:port][/path] or https://...",
    }
  end
  local host, port = match(authority, "^(%[[^%]]+%]):?(%d*)$")
  if not host then host, port = match(authority, "^([^:]+):?(%d*)$") end
  if not host then
    return nil, errors.new { code = "InvalidEndpointError", message = "endpoint_url has a bad host or port" }
  end
  base = gsub(base, "/+$", "")
  return { scheme = scheme, host = lower(host), port = port ~= "" and port or nil, base = base }
end

--[[
Endpoint: explicit option, AWS_ENDPOINT_URL_MEDICAL_IMAGING, AWS_ENDPOINT_URL,
else the service's regional endpoint. The operation's host prefix is put in
front of the host unless disabled or the host is an IP literal or localhost.
Input: opts, region.
Returns: { url_base = "scheme://host[:port]/base", host = "Host header" } or nil, err.
]]
function _M.endpoint(opts, region)
  local url = opts.endpoint_url or first_env("AWS_ENDPOINT_URL_MEDICAL_IMAGING", "AWS_ENDPOINT_URL")
  if not url then
    local suffix = find(region, "^cn%-") and "amazonaws.com.cn" or "amazonaws.com"
    url = "https://" .. model.SERVICE.endpoint_prefix .. "." .. region .. "." .. suffix
  end
  local ep, err = _M.parse_endpoint(url)
  if not ep then return nil, err end
  local host = ep.host
  if not opts.disable_host_prefix_injection and not is_literal_host(host) then
    host = model.SERVICE.host_prefix .. host
  end
  local hostport = ep.port and (host .. ":" .. ep.port) or host
  return { url_base = ep.scheme .. "://" .. hostport .. ep.base, host = hostport, base = ep.base,
           scheme = ep.scheme, hostname = host }
end

local RETRY_MODES = { standard = true, adaptive = true }

--[[
Retry settings: options max_attempts and retry_mode, then AWS_MAX_ATTEMPTS and
AWS_RETRY_MODE, then the profile's max_attempts and retry_mode; defaults 3
and standard. ("legacy" is read as standard: this client has one policy.)
Returns: max_attempts, mode, or nil, err.
]]
function _M.retry_settings(opts, profile)
  local attempts = opts.max_attempts or env("AWS_MAX_ATTEMPTS")
  local mode = opts.retry_mode or env("AWS_RETRY_MODE")
  if attempts == nil or mode == nil then
    local cfg = profile().config
    attempts = attempts or cfg.max_attempts
    mode = mode or cfg.retry_mode
  end
  local n = math.tointeger(tonumber(attempts or 3))
  if not n or n < 1 then
    return nil, errors.new { code = "InvalidConfiguration", message = "max_attempts must be an integer of at least 1" }
  end
  mode = mode or "standard"
  if mode == "legacy" then mode = "standard" end
  if not RETRY_MODES[mode] then
    return nil, errors.new { code = "InvalidConfiguration", message = "retry_mode must be standard or adaptive" }
  end
  return n, mode
end

-- The CA bundle: option, AWS_CA_BUNDLE, the profile's ca_bundle, else the system's.
function _M.ca_bundle(opts, profile)
  return opts.ca_bundle or env("AWS_CA_BUNDLE") or profile().config.ca_bundle
end

-- True when NO_PROXY (comma-separated names, domain suffixes or "*") covers host.
local function no_proxy_covers(host)
  local list = first_env("NO_PROXY", "no_proxy")
  if not list then return false end
  for entry in list:gmatch("[^,%s]+") do
    entry = lower(entry):gsub("^%*?%.", "")
    if entry == "*" or host == entry or (#host > #entry and sub(host, -#entry - 1) == "." .. entry) then
      return true
    end
  end
  return false
end

--[[
The proxy for an endpoint: the option, else HTTPS_PROXY/https_proxy for
https and HTTP_PROXY/http_proxy for http, unless NO_PROXY covers the host.
Returns: a proxy URL or nil for a direct connection.
]]
function _M.proxy(opts, scheme, host)
  if opts.proxy then return opts.proxy end
  if no_proxy_covers(host) then return nil end
  if scheme == "https" then return first_env("HTTPS_PROXY", "https_proxy") end
  return first_env("HTTP_PROXY", "http_proxy")
end

return _M

-- healthimaging.credentials: the AWS credential provider chain, in botocore's
-- order (README, "Configuration"), with caching and refresh of temporary
-- credentials. Nothing happens at require or at client creation: the chain
-- runs on the first request. HTTP (STS, container, IMDS) uses libcurl
-- handles of its own; credential_process runs through core.spawn, no shell.
-- No secret (secret key, session token, web identity token, container
-- token, process output) ever goes into an error, a log or tostring.

local core = require "healthimaging.core"
local config = require "healthimaging.config"
local errors = require "healthimaging.errors"
local time = require "healthimaging.time"
local request = require "healthimaging.request"

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local os_time = os.time
local match = string.match
local find = string.find
local gsub = string.gsub
local sub = string.sub
local lower = string.lower
local format = string.format
local concat = table.concat
local sort = table.sort

local env = config.env
local str = config.str

local _M = {}

-- Refresh timing (seconds). botocore's advisory window: temporary
-- credentials are refreshed once fewer than 15 minutes remain. When a
-- refresh fails, the old credentials stay in use while at least KEEP_MARGIN
-- seconds of validity remain, and no new refresh is tried for
-- RETRY_AFTER_FAILURE seconds (a dead IMDS would otherwise cost a timeout on
-- every request).
_M.ADVISORY_REFRESH = 15 * 60
_M.KEEP_MARGIN = 60
_M.RETRY_AFTER_FAILURE = 30

-- IMDS (botocore's defaults): 1 s timeout, 1 attempt, a 6 h token.
_M.IMDS_DEFAULT_ENDPOINT = "http://169.254.169.254"
_M.IMDS_IPV6_ENDPOINT = "http://[fd00:ec2::254]"
_M.IMDS_TOKEN_TTL = "21600"
-- Container credentials (botocore's ContainerMetadataFetcher): 2 s, 3
-- attempts 1 s apart; RELATIVE_URI goes to the ECS agent's address.
_M.CONTAINER_HOST = "http://169.254.170.2"
_M.CONTAINER_TIMEOUT = 2
_M.CONTAINER_ATTEMPTS = 3
-- Hosts FULL_URI may name over plain http, besides loopback addresses
-- (ECS and EKS Pod Identity agents; botocore's _ALLOWED_HOSTS).
_M.CONTAINER_HOSTS = { ["169.254.170.2"] = true, ["169.254.170.23"] = true, ["fd00:ec2::23"] = true,
                       localhost = true }
-- credential_process: killed after this many seconds; output capped.
_M.PROCESS_TIMEOUT = 60
_M.PROCESS_MAX_OUTPUT = 1024 * 1024
-- STS calls
_M.STS_TIMEOUT = 10
_M.STS_VERSION = "2011-06-15"

local USER_AGENT = "healthimaging-lua/" .. core._VERSION

-- {======================================================================
-- Credentials values
-- =======================================================================

-- What tostring shows of credentials: where they came from and the key id,
-- never the secret or the token.
local creds_mt = { __name = "healthimaging.credentials" }
creds_mt.__tostring = function(c)
  return "credentials (" .. tostring(c.source) .. ", access key id " .. tostring(c.access_key_id)
    .. (c.expiration and (", expire at " .. os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(c.expiration))) or "")
    .. ")"
end

local function fail(code, message, extra)
  local e = { code = code, message = message }
  for k, v in pairs(extra or {}) do e[k] = v end
  return errors.new(e)
end

-- Expiration as epoch seconds: a number as is, an ISO-8601 string parsed.
local function expiration_of(v)
  if v == nil then return nil, true end
  if type(v) == "number" then return v, true end
  if type(v) == "string" then
    local t = time.parse_iso8601(v)
    if t then return t, true end
  end
  return nil, false
end

--[[
Makes a credentials value after checking its fields.
Input: t = { access_key_id, secret_access_key, session_token, expiration },
source (a provider name for messages). Returns: credentials or nil, err.
]]
local function make(t, source)
  local key, secret, token = t.access_key_id, t.secret_access_key, t.session_token
  if type(key) ~= "string" or key == "" or type(secret) ~= "string" or secret == "" then
    return nil, fail("InvalidCredentials", source .. ": access_key_id and secret_access_key must be non-empty strings")
  end
  if token ~= nil and type(token) ~= "string" then
    return nil, fail("InvalidCredentials", source .. ": session_token must be a string")
  end
  if token == "" then token = nil end
  local exp, ok = expiration_of(t.expiration)
  if not ok then
    return nil, fail("InvalidCredentials", source .. ": expiration must be epoch seconds or an ISO-8601 date-time")
  end
  return setmetatable({ access_key_id = key, secret_access_key = secret, session_token = token,
                        expiration = exp, source = source }, creds_mt)
end
_M.make = make

-- }======================================================================

-- {======================================================================
-- A cache with refresh
-- =======================================================================

local Cache = {}
Cache.__index = Cache

--[[
Wraps fetch (a function returning credentials or nil, err) in a cache.
Static credentials (no expiration) are kept for good, unless `always` (a
user function without expiration is asked every time). Temporary ones are
refreshed inside the advisory window; see the constants above.
]]
function Cache.new(fetch, now, always)
  return setmetatable({ fetch = fetch, now = now, always = always }, Cache)
end

function Cache:get()
  local now = self.now()
  local c = self.creds
  if c then
    if c.expiration == nil then
      if not self.always then return c end
    elseif now < c.expiration - _M.ADVISORY_REFRESH then
      return c
    elseif self.next_try and now < self.next_try and now < c.expiration - _M.KEEP_MARGIN then
      return c
    end
  end
  local fresh, err = self.fetch()
  if fresh then
    self.creds, self.next_try, self.last_error = fresh, nil, nil
    if fresh.expiration and now >= fresh.expiration - _M.ADVISORY_REFRESH then
      -- already inside the window: do not ask again on every request
      self.next_try = now + _M.RETRY_AFTER_FAILURE
    end
    return fresh
  end
  if c and c.expiration and now < c.expiration - _M.KEEP_MARGIN then
    self.next_try, self.last_error = now + _M.RETRY_AFTER_FAILURE, err
    return c
  end
  return nil, err
end

_M._Cache = Cache   -- for the specs

-- }======================================================================

-- {======================================================================
-- HTTP for the providers (own libcurl handles, no proxy unless given)
-- =======================================================================

--[[
One request on a fresh handle, closed afterwards.
Input: req { method, url, headers, body }, o { timeout, ca_bundle, proxy }.
Returns: status, headers, body or nil, err (a transport error object).
]]
local function http(req, o)
  local ok, h = pcall(core.http_new, { timeout = o.timeout, connect_timeout = o.timeout,
                                       ca_bundle = o.ca_bundle, proxy = o.proxy })
  if not ok then return nil, fail("CredentialRetrievalError", "cannot make an HTTP handle: " .. tostring(h)) end
  local ok2, status, headers, body = pcall(h.request, h, req)
  h:close()
  if not ok2 then return nil, fail("CredentialRetrievalError", "bad request: " .. tostring(status)) end
  if not status then
    local e = headers
    if not errors.is_error(e) then e = errors.new(e) end
    return nil, e
  end
  return status, headers, body
end

local function has_crlf(s)
  return find(s, "[\r\n%z]") ~= nil
end

-- }======================================================================

-- {======================================================================
-- STS (AssumeRole signed, AssumeRoleWithWebIdentity unsigned)
-- =======================================================================

local XML_ENTITIES = { amp = "&", lt = "<", gt = ">", quot = '"', apos = "'" }

local function xml_unescape(s)
  return (gsub(s, "&(#?x?)(%w+);", function(kind, name)
    if kind == "" then return XML_ENTITIES[name] end
    local n = tonumber(name, kind == "#x" and 16 or 10)
    if n and n < 128 then return string.char(n) end
    if n and utf8 then return utf8.char(n) end
  end))
end

-- The text of the first <tag>...</tag> in xml (tags without attributes).
local function xml_text(xml, tag)
  local v = match(xml, "<" .. tag .. ">(.-)</" .. tag .. ">")
  return v and xml_unescape(v)
end

-- application/x-www-form-urlencoded, keys sorted (stable, for signing).
local function form(params)
  local keys = {}
  for k in pairs(params) do keys[#keys + 1] = k end
  sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    parts[i] = request.uri_encode(k) .. "=" .. request.uri_encode(tostring(params[k]))
  end
  return concat(parts, "&")
end

--[[
Calls an STS action.
Input: ctx, params (Action, ...), creds (credentials to sign with, or nil for
an unsigned call), what (a name for messages).
Returns: credentials (source = what) or nil, err (the STS error code when
STS answered one).
]]
local function sts_call(ctx, params, creds, what)
  local region, err = ctx.region()
  if not region then return nil, err end
  local p = ctx.profile()
  local url
  url, err = config.sts_endpoint(region, p)
  if not url then return nil, err end
  local ep
  ep, err = config.parse_endpoint(url)
  if not ep then return nil, err end
  params.Version = _M.STS_VERSION
  local body = form(params)
  local hostport = ep.port and (ep.host .. ":" .. ep.port) or ep.host
  local path = ep.base .. "/"
  local headers = {
    { "Host", hostport },
    { "Content-Type", "application/x-www-form-urlencoded; charset=utf-8" },
    { "User-Agent", USER_AGENT },
  }
  if creds then
    local signed, serr = core.sign {
      method = "POST", path = path, query = "", headers = headers, body = body,
      region = region, service = "sts",
      access_key_id = creds.access_key_id, secret_access_key = creds.secret_access_key,
      session_token = creds.session_token, amz_date = time.amz_date(ctx.now()),
    }
    if not signed then return nil, fail("CredentialRetrievalError", what .. ": cannot sign: " .. tostring(serr)) end
    for _, h in ipairs(signed.headers) do headers[#headers + 1] = h end
    headers[#headers + 1] = { "Authorization", signed.authorization }
  end
  local status, rheaders, rbody = http({ method = "POST", url = ep.scheme .. "://" .. hostport .. path,
                                         headers = headers, body = body },
    { timeout = _M.STS_TIMEOUT, ca_bundle = ctx.ca_bundle(), proxy = ctx.proxy(ep.scheme, ep.host) })
  if not status then
    rheaders.message = what .. ": " .. tostring(rheaders.message)
    return nil, rheaders
  end
  rbody = rbody or ""
  local request_id = rheaders["x-amzn-requestid"] or xml_text(rbody, "RequestId")
  if status ~= 200 then
    local e = match(rbody, "<Error>(.-)</Error>") or ""
    return nil, fail(xml_text(e, "Code") or ("HTTP" .. status),
      what .. " failed: " .. (xml_text(e, "Message") or ("HTTP status " .. status)),
      { status = status, request_id = request_id, retryable = status >= 500 or status == 429 })
  end
  local c = match(rbody, "<Credentials>(.-)</Credentials>")
  if not c then
    return nil, fail("CredentialRetrievalError", what .. ": the STS answer has no Credentials",
      { status = status, request_id = request_id })
  end
  local exp = xml_text(c, "Expiration")
  local out, merr = make({ access_key_id = xml_text(c, "AccessKeyId"),
                           secret_access_key = xml_text(c, "SecretAccessKey"),
                           session_token = xml_text(c, "SessionToken"), expiration = exp }, what)
  if not out then return nil, merr end
  if not out.expiration then
    return nil, fail("CredentialRetrievalError", what .. ": the STS answer has no valid Expiration")
  end
  return out
end

-- A default role session name, as botocore's "botocore-session-<epoch>".
local function session_name(ctx)
  return "healthimaging-lua-" .. format("%d", math.floor(ctx.now()))
end

-- }======================================================================

-- {======================================================================
-- Providers. Each: function(ctx, profile) -> fetch | nil (not configured
-- here) | nil, err (configured but wrong: the chain stops).
-- =======================================================================

local providers = {}

--[[
Static keys of a profile section (shared credentials file or config file):
aws_access_key_id with aws_secret_access_key, and aws_session_token (or
the older aws_security_token). A key without its secret is an error.
]]
local function static_keys(section, what)
  local key, secret = str(section.aws_access_key_id), str(section.aws_secret_access_key)
  if not key then return nil end
  if not secret then
    return nil, fail("PartialCredentialsError", what .. ": aws_access_key_id is set without aws_secret_access_key")
  end
  local c, err = make({ access_key_id = key, secret_access_key = secret,
                        session_token = str(section.aws_session_token) or str(section.aws_security_token) }, what)
  if not c then return nil, err end
  return function() return c end
end

-- Environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
-- (or AWS_SECURITY_TOKEN), AWS_CREDENTIAL_EXPIRATION; read again on refresh.
function providers.environment()
  local function read()
    local key, secret = env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")
    if not key then return nil end
    if not secret then
      return nil, fail("PartialCredentialsError",
        "environment: AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY")
    end
    return make({ access_key_id = key, secret_access_key = secret,
                  session_token = env("AWS_SESSION_TOKEN") or env("AWS_SECURITY_TOKEN"),
                  expiration = env("AWS_CREDENTIAL_EXPIRATION") }, "environment")
  end
  if not env("AWS_ACCESS_KEY_ID") then return nil end
  local first, err = read()
  if not first then return nil, err end
  local used = false
  return function()
    if not used then used = true; return first end
    local c, rerr = read()
    if not c then
      return nil, rerr or fail("CredentialRetrievalError", "environment: AWS_ACCESS_KEY_ID is no longer set")
    end
    return c
  end
end

-- The file named by a token-file setting, read whole (tokens rotate: read
-- on every fetch). Returns text or nil, err (the path, never the content).
local function read_token(path, what)
  local t, why = config.read_small_file(path)
  if not t then
    return nil, fail("CredentialRetrievalError", what .. ": cannot read the token file " .. path
      .. (why == "too large" and (" (larger than " .. config.MAX_FILE_BYTES .. " bytes)") or ""))
  end
  return t
end

--[[
Web identity: AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN and
AWS_ROLE_SESSION_NAME, each else the profile's web_identity_token_file,
role_arn, role_session_name (the environment is not read when the profile
was chosen by the client option, as botocore does). STS
AssumeRoleWithWebIdentity, unsigned.
]]
local function web_identity(ctx, section, use_env)
  local function get(key, var)
    return (use_env and env(var)) or str(section[key])
  end
  local token_file = get("web_identity_token_file", "AWS_WEB_IDENTITY_TOKEN_FILE")
  if not token_file then return nil end
  local role_arn = get("role_arn", "AWS_ROLE_ARN")
  if not role_arn then
    return nil, fail("InvalidConfigError", "web identity: a token file is configured but no role ARN "
      .. "(AWS_ROLE_ARN or role_arn in the profile)")
  end
  local name = get("role_session_name", "AWS_ROLE_SESSION_NAME")
  return function()
    local token, err = read_token(token_file, "web identity")
    if not token then return nil, err end
    return sts_call(ctx, { Action = "AssumeRoleWithWebIdentity", RoleArn = role_arn,
                           RoleSessionName = name or session_name(ctx), WebIdentityToken = token },
      nil, "AssumeRoleWithWebIdentity")
  end
end

function providers.web_identity(ctx, p)
  return web_identity(ctx, p.config, not p.explicit)
end

function providers.shared_credentials_file(_, p)
  return static_keys(p.credentials, "shared credentials file [" .. p.name .. "]")
end

function providers.config_file(_, p)
  return static_keys(p.config_file, "config file profile " .. p.name)
end

-- The first line of a process's stderr, cut short and printable only.
local function first_line(s)
  local l = match(s or "", "^[^\n]*") or ""
  l = gsub(l, "[%c\128-\255]", "?")
  if #l > 200 then l = sub(l, 1, 200) .. "..." end
  return l
end

--[[
credential_process: the command line of the profile split as shlex does
(no shell), run with its output captured; exit 0 and a JSON object with
Version 1, AccessKeyId, SecretAccessKey, optional SessionToken and
Expiration (ISO-8601; without it the credentials never expire).
]]
function providers.process(_, p)
  local cmd = str(p.config.credential_process)
  if not cmd then return nil end
  local argv, why = config.shell_split(cmd)
  if not argv or #argv == 0 then
    return nil, fail("InvalidConfigError", "credential_process of profile " .. p.name .. " cannot be split: "
      .. (why or "it is empty"))
  end
  return function()
    local ok, res, err = pcall(core.spawn, argv, { timeout = _M.PROCESS_TIMEOUT, max_output = _M.PROCESS_MAX_OUTPUT })
    if not ok then return nil, fail("CredentialRetrievalError", "credential_process: " .. tostring(res)) end
    if not res then
      return nil, fail("CredentialRetrievalError", "credential_process: " .. tostring(err.message),
        { reason = err.code })
    end
    if res.exit_code ~= 0 then
      local how = res.exit_code and ("exited with status " .. res.exit_code) or ("was killed by signal " .. res.signal)
      local line = first_line(res.stderr)
      return nil, fail("CredentialRetrievalError", "credential_process " .. how
        .. (line ~= "" and (": " .. line) or ""))
    end
    local doc = core.json_decode(res.stdout)
    if type(doc) ~= "table" then
      return nil, fail("CredentialRetrievalError", "credential_process: the output is not a JSON object")
    end
    if doc.Version ~= 1 then
      return nil, fail("CredentialRetrievalError", "credential_process: unsupported Version "
        .. (type(doc.Version) == "number" and tostring(doc.Version) or "(missing or not a number)")
        .. "; supported versions: 1")
    end
    if type(doc.AccessKeyId) ~= "string" or type(doc.SecretAccessKey) ~= "string" then
      return nil, fail("CredentialRetrievalError",
        "credential_process: the output lacks AccessKeyId or SecretAccessKey")
    end
    if doc.Expiration ~= nil and (type(doc.Expiration) ~= "string" or not time.parse_iso8601(doc.Expiration)) then
      return nil, fail("CredentialRetrievalError", "credential_process: Expiration is not an ISO-8601 date-time")
    end
    return make({ access_key_id = doc.AccessKeyId, secret_access_key = doc.SecretAccessKey,
                  session_token = doc.SessionToken, expiration = doc.Expiration }, "credential_process")
  end
end

-- True for the hosts a FULL_URI may name over plain http: loopback
-- addresses (127.0.0.0/8, ::1) and the ECS/EKS agents' addresses.
local function container_host_allowed(host)
  host = lower(gsub(host, "^%[(.*)%]$", "%1"))
  if _M.CONTAINER_HOSTS[host] then return true end
  if host == "::1" or find(host, "^0*:0*:0*:0*:0*:0*:0*:0*1$") then return true end
  local a, b, c, d = match(host, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a then
    a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
    return a == 127 and b <= 255 and c <= 255 and d <= 255
  end
  return false
end
_M.container_host_allowed = container_host_allowed

--[[
The container credentials URL from the environment: RELATIVE_URI (on
169.254.170.2), else FULL_URI (https to any host; http only to loopback or
the ECS/EKS agents). Returns: url, or nil when neither is set, or nil, err.
]]
function _M.container_url()
  local rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
  if rel then return _M.CONTAINER_HOST .. rel end
  local full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI")
  if not full then return nil end
  local ep = config.parse_endpoint((gsub(full, "[?#].*$", "")))
  if not ep then
    return nil, fail("InvalidConfigError", "AWS_CONTAINER_CREDENTIALS_FULL_URI is not an http(s) URL")
  end
  if ep.scheme ~= "https" and not container_host_allowed(ep.host) then
    return nil, fail("InvalidConfigError", "AWS_CONTAINER_CREDENTIALS_FULL_URI: unsupported host '" .. ep.host
      .. "'; over http it must be a loopback address, 169.254.170.2, 169.254.170.23 or fd00:ec2::23")
  end
  return full
end

function providers.container(ctx)
  local url, err = _M.container_url()
  if not url then return nil, err end
  return function()
    local token
    local token_file = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    if token_file then
      token, err = read_token(token_file, "container credentials")
      if not token then return nil, err end
    else
      token = env("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    end
    if token and has_crlf(token) then
      return nil, fail("InvalidConfigError", "container credentials: the authorization token is not a legal "
        .. "header value (it contains CR, LF or NUL)")
    end
    local headers = { { "Accept", "application/json" }, { "User-Agent", USER_AGENT } }
    if token then headers[#headers + 1] = { "Authorization", token } end
    local last
    for attempt = 1, _M.CONTAINER_ATTEMPTS do
      if attempt > 1 then ctx.sleep(1) end
      local status, h, body = http({ method = "GET", url = url, headers = headers, body = "" },
        { timeout = _M.CONTAINER_TIMEOUT })
      if status == 200 then
        local doc = core.json_decode(body or "")
        if type(doc) == "table" then
          return make({ access_key_id = doc.AccessKeyId, secret_access_key = doc.SecretAccessKey,
                        session_token = doc.Token, expiration = doc.Expiration }, "container credentials")
        end
        last = fail("CredentialRetrievalError", "container credentials: the answer is not a JSON object")
      elseif status then
        last = fail("CredentialRetrievalError", "container credentials: HTTP status " .. status, { status = status })
      else
        last = fail("CredentialRetrievalError", "container credentials: " .. tostring(h.message),
          { reason = h.code })
      end
    end
    return nil, last
  end
end

-- A setting of the environment, else of the profile.
local function setting(var, p, key)
  return env(var) or str(p.config[key])
end

--[[
EC2 instance metadata (IMDS): IMDSv2 token (PUT), then the role name and
its credentials (GET). Falls back to IMDSv1 (no token) when the token
request is refused (403, 404, 405) or times out, unless
AWS_EC2_METADATA_V1_DISABLED / ec2_metadata_v1_disabled. Skipped when
AWS_EC2_METADATA_DISABLED is true. Endpoint: AWS_EC2_METADATA_SERVICE_ENDPOINT /
ec2_metadata_service_endpoint, else the IPv4 or (endpoint mode IPv6) IPv6
address. Timeout AWS_METADATA_SERVICE_TIMEOUT (1 s), attempts
AWS_METADATA_SERVICE_NUM_ATTEMPTS (1).
]]
function _M.imds_settings(p)
  if config.boolean(env("AWS_EC2_METADATA_DISABLED")) then return nil end
  local base = setting("AWS_EC2_METADATA_SERVICE_ENDPOINT", p, "ec2_metadata_service_endpoint")
  if not base then
    local mode = setting("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", p, "ec2_metadata_service_endpoint_mode")
    base = (mode and lower(mode) == "ipv6") and _M.IMDS_IPV6_ENDPOINT or _M.IMDS_DEFAULT_ENDPOINT
  end
  if not config.parse_endpoint((gsub(base, "/+$", ""))) then
    return nil, fail("InvalidIMDSEndpointError", "the EC2 metadata endpoint is not an http(s) URL")
  end
  local timeout = tonumber(setting("AWS_METADATA_SERVICE_TIMEOUT", p, "metadata_service_timeout") or 1)
  local attempts = math.tointeger(tonumber(setting("AWS_METADATA_SERVICE_NUM_ATTEMPTS", p,
    "metadata_service_num_attempts") or 1))
  if not timeout or timeout <= 0 or not attempts or attempts < 1 then
    return nil, fail("InvalidConfigError", "metadata_service_timeout must be a positive number and "
      .. "metadata_service_num_attempts a positive integer")
  end
  local v1_off = env("AWS_EC2_METADATA_V1_DISABLED")
  if v1_off == nil then v1_off = p.config.ec2_metadata_v1_disabled end
  return { base = sub(base, -1) == "/" and base or (base .. "/"), timeout = timeout, attempts = attempts,
           v1_disabled = config.boolean(v1_off) }
end

function providers.imds(_, p)
  local s, err = _M.imds_settings(p)
  if not s then return nil, err end
  local o = { timeout = s.timeout }
  local function get(path, token)
    local headers = { { "User-Agent", USER_AGENT } }
    if token then headers[#headers + 1] = { "x-aws-ec2-metadata-token", token } end
    local last
    for _ = 1, s.attempts do
      local status, h, body = http({ method = "GET", url = s.base .. path, headers = headers, body = "" }, o)
      if status == 200 and body and body ~= "" then return body end
      last = status and ("HTTP status " .. status) or tostring(h.message)
    end
    return nil, fail("CredentialRetrievalError", "EC2 instance metadata: " .. path .. ": " .. last)
  end
  return function()
    local token
    for _ = 1, s.attempts do
      local status, h, body = http({ method = "PUT", url = s.base .. "latest/api/token",
        headers = { { "x-aws-ec2-metadata-token-ttl-seconds", _M.IMDS_TOKEN_TTL }, { "User-Agent", USER_AGENT } },
        body = "" }, o)
      if status == 200 and body and body ~= "" and not has_crlf(body) then token = body; break end
      if status == 400 then
        return nil, fail("CredentialRetrievalError", "EC2 instance metadata: the token request was refused (400)")
      end
      if status == 403 or status == 404 or status == 405 then break end
      if not status and h and h.code == "TimeoutError" then break end
    end
    if not token and s.v1_disabled then
      return nil, fail("CredentialRetrievalError", "EC2 instance metadata: no IMDSv2 token and IMDSv1 is disabled")
    end
    local role, rerr = get("latest/meta-data/iam/security-credentials/", token)
    if not role then return nil, rerr end
    role = match(role, "^%s*([^\r\n]-)%s*\n") or match(role, "^%s*(.-)%s*$")
    if role == "" or find(role, "[/%c]") then
      return nil, fail("CredentialRetrievalError", "EC2 instance metadata: no usable IAM role name")
    end
    local body
    body, rerr = get("latest/meta-data/iam/security-credentials/" .. request.uri_encode(role), token)
    if not body then return nil, rerr end
    local doc = core.json_decode(body)
    if type(doc) ~= "table" then
      return nil, fail("CredentialRetrievalError", "EC2 instance metadata: the credentials are not a JSON object")
    end
    if doc.Code ~= nil and doc.Code ~= "Success" then
      return nil, fail("CredentialRetrievalError", "EC2 instance metadata: the role's credentials are unavailable ("
        .. tostring(doc.Code) .. ")")
    end
    return make({ access_key_id = doc.AccessKeyId, secret_access_key = doc.SecretAccessKey,
                  session_token = doc.Token, expiration = doc.Expiration }, "EC2 instance metadata")
  end
end

-- Providers by credential_source name (botocore's canonical names).
local SOURCES = { Environment = "environment", Ec2InstanceMetadata = "imds", EcsContainer = "container" }

local source_profile_credentials

--[[
AssumeRole for a profile with role_arn (and no web_identity_token_file):
source credentials from source_profile or credential_source (exactly one),
then STS AssumeRole signed with them, with role_session_name, external_id
and duration_seconds when set. mfa_serial is refused (no prompt here).
visited: profile names already on the chain (loops are errors; a profile
may name itself when it holds static keys).
]]
local function assume_role(ctx, name, visited)
  local profiles = ctx.profile().files.profiles
  local prof = profiles[name]
  local src, source = str(prof.source_profile), str(prof.credential_source)
  if src and source then
    return nil, fail("InvalidConfigError", "the profile '" .. name .. "' has both source_profile and credential_source")
  end
  if not src and not source then
    return nil, fail("PartialCredentialsError", "the profile '" .. name
      .. "' has role_arn but neither source_profile nor credential_source")
  end
  if prof.mfa_serial ~= nil then
    return nil, fail("InvalidConfigError", "the profile '" .. name
      .. "' needs an MFA code (mfa_serial): this library cannot prompt for one")
  end
  local function has_static(t) return t.aws_access_key_id ~= nil or t.aws_secret_access_key ~= nil end
  local source_fetch, err
  if source then
    local pname = SOURCES[source]
    if not pname then
      return nil, fail("InvalidConfigError", "the credential_source '" .. source .. "' of profile '" .. name
        .. "' is not valid: use Environment, Ec2InstanceMetadata or EcsContainer")
    end
    source_fetch, err = providers[pname](ctx, ctx.profile())
    if err then return nil, err end
    if not source_fetch then
      return nil, fail("CredentialRetrievalError", "no credentials found in credential_source '" .. source
        .. "' of profile '" .. name .. "'")
    end
  else
    if not profiles[src] then
      return nil, fail("InvalidConfigError", "the source_profile '" .. src .. "' of profile '" .. name
        .. "' does not exist")
    end
    if visited[src] and (src ~= name or not has_static(profiles[src])) then
      return nil, fail("InfiniteLoopConfigError", "source_profile loop through profile '" .. src .. "'")
    end
    local v = {}
    for k in pairs(visited) do v[k] = true end
    v[src] = true
    source_fetch, err = source_profile_credentials(ctx, src, v)
    if not source_fetch then return nil, err end
  end
  local source_cache = Cache.new(source_fetch, ctx.now)
  local role_arn = str(prof.role_arn)
  local params = { Action = "AssumeRole", RoleArn = role_arn }
  if str(prof.external_id) then params.ExternalId = prof.external_id end
  local duration = math.tointeger(tonumber(str(prof.duration_seconds) or ""))
  if duration then params.DurationSeconds = duration end
  local fixed_name = str(prof.role_session_name)
  return function()
    local sc, serr = source_cache:get()
    if not sc then return nil, serr end
    local q = {}
    for k, v in pairs(params) do q[k] = v end
    q.RoleSessionName = fixed_name or session_name(ctx)
    return sts_call(ctx, q, sc, "AssumeRole")
  end
end

--[[
Credentials of a source profile, as botocore resolves them: a profile with
static keys or without role_arn gives its own credentials (web identity
from the profile, shared credentials file, credential_process, config
file); else its role is assumed in turn.
Returns: fetch or nil, err.
]]
source_profile_credentials = function(ctx, name, visited)
  local files = ctx.profile().files
  local prof = files.profiles[name]
  local function has_static(t) return t.aws_access_key_id ~= nil or t.aws_secret_access_key ~= nil end
  if has_static(prof) or prof.role_arn == nil then
    local p = { name = name, explicit = true, config = prof,
                config_file = files.config_profiles[name] or {}, credentials = files.cred_profiles[name] or {} }
    for _, step in ipairs { providers.web_identity, providers.shared_credentials_file, providers.process,
                            providers.config_file } do
      local fetch, err = step(ctx, p)
      if err then return nil, err end
      if fetch then return fetch end
    end
    return nil, fail("InvalidConfigError", "the source profile '" .. name .. "' must have credentials")
  end
  return assume_role(ctx, name, visited)
end

function providers.assume_role(ctx, p)
  if p.config.role_arn == nil or p.config.web_identity_token_file ~= nil then return nil end
  return assume_role(ctx, p.name, { [p.name] = true })
end

-- }======================================================================

-- {======================================================================
-- The chain
-- =======================================================================

--[[
The chain, in botocore's order (create_credential_resolver): environment,
the profile's role (AssumeRole), web identity, the shared credentials
file, credential_process, the config file's keys, container credentials,
IMDS. `soft`: a failure there means "no credentials here", as botocore
treats IMDS; anywhere else a configured provider that fails stops the chain.
]]
_M.CHAIN = {
  { name = "environment", get = providers.environment },
  { name = "assume-role", get = providers.assume_role },
  { name = "web-identity", get = providers.web_identity },
  { name = "shared-credentials-file", get = providers.shared_credentials_file },
  { name = "credential-process", get = providers.process },
  { name = "config-file", get = providers.config_file },
  { name = "container", get = providers.container },
  { name = "imds", get = providers.imds, soft = true },
}

local Resolver = {}
Resolver.__index = Resolver

--[[
Makes the resolver of a client. No I/O here.
Input: ctx = { opts, profile() -> loaded profile, region() -> region | nil, err,
now() -> epoch seconds, sleep(seconds), ca_bundle(), proxy(scheme, host) }.
Returns: the resolver; resolver:get() -> credentials or nil, err.
]]
function _M.new(ctx)
  ctx.now = ctx.now or os_time
  ctx.sleep = ctx.sleep or core.sleep
  ctx.ca_bundle = ctx.ca_bundle or function() return nil end
  ctx.proxy = ctx.proxy or function() return nil end
  return setmetatable({ ctx = ctx }, Resolver)
end

-- The explicit option: a table, or a function returning one (or nil, err).
local function explicit(ctx)
  local c = ctx.opts.credentials
  if type(c) == "table" then
    local v, err = make(c, "client option")
    if not v then return nil, err end
    return Cache.new(function() return v end, ctx.now)
  end
  return Cache.new(function()
    local ok, r, e = pcall(c)
    if not ok then
      if errors.is_error(r) then return nil, r end
      return nil, fail("CredentialRetrievalError", "the credentials function raised: " .. tostring(r))
    end
    if r == nil then
      if errors.is_error(e) then return nil, e end
      return nil, fail("CredentialRetrievalError", "the credentials function returned nothing"
        .. (e ~= nil and (": " .. tostring(e)) or ""))
    end
    if type(r) ~= "table" then
      return nil, fail("InvalidCredentials", "the credentials function must return a table")
    end
    return make(r, "credentials function")
  end, ctx.now, true)
end

-- Walks the chain; returns a cache holding the first credentials found.
local function walk(ctx)
  local p = ctx.profile()
  local notes = {}
  for _, step in ipairs(_M.CHAIN) do
    if not (step.name == "environment" and p.explicit) then
      local fetch, err = step.get(ctx, p)
      if err then return nil, err end
      if fetch then
        local cache = Cache.new(fetch, ctx.now)
        local c, ferr = cache:get()
        if c then return cache end
        if not step.soft then return nil, ferr end
        notes[#notes + 1] = ferr.message
      end
    end
  end
  return nil, fail("NoCredentialsError", "no credentials: none in the client options, the environment, "
    .. "web identity, the profile '" .. p.name .. "' of the shared files, container credentials or "
    .. "EC2 instance metadata" .. (#notes > 0 and (" (" .. concat(notes, "; ") .. ")") or ""))
end

--[[
Credentials for the next request: cached; temporary ones refreshed before
they expire (see Cache). The chain is walked again after a failure.
Returns: credentials or nil, err.
]]
function Resolver:get()
  if not self.cache then
    local cache, err
    if self.ctx.opts.credentials ~= nil then
      cache, err = explicit(self.ctx)
    else
      cache, err = walk(self.ctx)
    end
    if not cache then return nil, err end
    self.cache = cache
  end
  return self.cache:get()
end

-- }======================================================================

return _M

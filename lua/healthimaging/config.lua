-- healthimaging.config: where a client's settings come from: explicit
-- options, then the environment, then the shared AWS files (~/.aws/config
-- and ~/.aws/credentials, or AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE)
-- parsed as botocore parses them. Region, endpoint (custom endpoints and the
-- service's rules), retry settings, CA bundle, proxy. Nothing here reads a
-- file until a value is asked for; credentials live in healthimaging.credentials.

local errors = require "healthimaging.errors"
local endpoints = require "healthimaging.endpoints"

local type = type
local tonumber = tonumber
local pairs = pairs
local ipairs = ipairs
local select = select
local error = error
local open = io.open
local match = string.match
local find = string.find
local lower = string.lower
local sub = string.sub
local gsub = string.gsub
local concat = table.concat

local _M = {}

-- The environment lookup: the library's only one. Specs replace it
-- (spec/helpers.lua with_env) to simulate variables.
_M.getenv = os.getenv

--[[
An environment variable, or nil when unset or empty (an empty value is
how a shell user unsets a variable for one command: `AWS_PROFILE= cmd`).
]]
function _M.env(name)
  local v = _M.getenv(name)
  if v == "" then return nil end
  return v
end
local env = _M.env

-- The first non-empty value among several environment variables.
local function first_env(...)
  for i = 1, select("#", ...) do
    local v = env((select(i, ...)))
    if v then return v end
  end
end

-- botocore's ensure_boolean: a boolean as is, a string "true" in any case
-- is true, anything else is false.
function _M.boolean(v)
  if type(v) == "boolean" then return v end
  if type(v) == "string" then return lower(v) == "true" end
  return false
end

-- A profile value that must be a string: a nested block (a table) where a
-- string is expected counts as unset.
local function str(v)
  if type(v) == "string" then return v end
  return nil
end
_M.str = str

local function config_error(message, code)
  return errors.new { code = code or "InvalidConfigError", message = message }
end

--[[
{======================================================================
The shared files, as botocore reads them
======================================================================

botocore reads both files with Python's configparser.RawConfigParser
(botocore/configloader.py raw_config_parse), then maps sections to profiles
(build_profile_map). What that means, and what this parser does too:
- `[name]` starts a section; the name is everything between the first '['
  and the last ']' of the trimmed line, kept as is (case and spaces).
- `key = value` or `key: value`: split at the first '=' or ':'; the key is
  trimmed and lowercased, the value trimmed. No inline comments: in
  `region = us-east-1 # eu` the value is all of `us-east-1 # eu`.
- Lines whose first non-blank character is '#' or ';' are comments.
- A line indented deeper than the line of the current key continues its
  value. A value that starts empty and continues on such lines is a nested
  block (`s3 =` or `medical_imaging =` followed by indented `key = value`
  lines, split at the first '='; nested keys keep their case).
- Blank lines inside a continued value are kept in it; trailing ones are
  dropped.
- A `[DEFAULT]` section gives its keys to every other section.
- Errors make the whole file unreadable, as botocore's ConfigParseError
  does: a key line before any section, a line that is neither, an empty key,
  a section or a key repeated, a nested line without '=', bytes that are not
  UTF-8.
]]

-- Trims the whitespace Python's str.strip() removes (ASCII part).
local function trim(s)
  return (match(s, "^%s*(.-)%s*$"))
end

--[[
Parses the text of one shared file.
Input: text. Returns: sections ({ [name] = { key = value or { nested } } }),
order (the section names in file order), or nil and a message naming the
line (never a value: a value may be a secret).
]]
function _M.parse_ini(text)
  if utf8 and utf8.len and not utf8.len(text) then
    return nil, "the file is not valid UTF-8"
  end
  text = gsub(gsub(text, "\r\n", "\n"), "\r", "\n")
  local sections, order, defaults = {}, {}, {}
  local raw = {}           -- name -> { key -> list of value lines }
  local seen_keys = {}     -- name -> { key = true }
  local cur, cur_name, opt, indent = nil, nil, nil, 0
  local lineno, bad = 0, nil
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    local value = trim(line)
    local is_comment = sub(value, 1, 1) == "#" or sub(value, 1, 1) == ";"
    if value == "" or is_comment then
      if not is_comment and cur and opt and cur[opt] then
        local v = cur[opt]
        v[#v + 1] = ""
      end
    else
      local cur_indent = (find(line, "%S") or 1) - 1
      if cur and opt and cur_indent > indent then
        local v = cur[opt]
        v[#v + 1] = value
      else
        indent = cur_indent
        -- greedy: up to the last ']' of the line, as Python's \[(.+)\]
        local header = match(value, "^%[(.+)%]")
        if header then
          if header == "DEFAULT" then
            cur, cur_name = defaults, "DEFAULT"
          else
            if raw[header] then
              return nil, "line " .. lineno .. ": section [" .. header .. "] appears twice"
            end
            cur, cur_name = {}, header
            raw[header] = cur
            seen_keys[header] = {}
            order[#order + 1] = header
          end
          opt = nil
        elseif not cur then
          return nil, "line " .. lineno .. ": a key before any [section]"
        else
          local key, val = match(value, "^(.-)%s*[=:]%s*(.*)$")
          if not key then
            bad = bad or lineno
          else
            key = lower(trim(key))
            if key == "" then bad = bad or lineno end
            local keys = seen_keys[cur_name] or {}
            seen_keys[cur_name] = keys
            if keys[key] then
              return nil, "line " .. lineno .. ": key '" .. key .. "' appears twice in [" .. cur_name .. "]"
            end
            keys[key] = true
            cur[key] = { trim(val) }
            opt = key
          end
        end
      end
    end
  end
  if bad then return nil, "line " .. bad .. ": neither a [section] nor a key = value" end
  -- join continued values; a value starting with a newline is a nested block
  local function finish(lines)
    local v = gsub(concat(lines, "\n"), "%s+$", "")
    if sub(v, 1, 1) ~= "\n" then return v end
    local nested = {}
    for l in v:gmatch("[^\n]+") do
      l = trim(l)
      if l ~= "" then
        local k, nv = match(l, "^([^=]*)=(.*)$")
        if not k then return nil end
        nested[trim(k)] = trim(nv)
      end
    end
    return nested
  end
  local base = {}
  for k, lines in pairs(defaults) do
    local v = finish(lines)
    if v == nil then return nil, "in [DEFAULT]: a nested line without '='" end
    base[k] = v
  end
  for name, opts in pairs(raw) do
    local section = {}
    for k, v in pairs(base) do section[k] = v end
    for k, lines in pairs(opts) do
      local v = finish(lines)
      if v == nil then return nil, "in [" .. name .. "]: key '" .. k .. "' has a nested line without '='" end
      section[k] = v
    end
    sections[name] = section
  end
  return sections, order
end

--[[
Splits a command line as Python's shlex.split does in POSIX mode (what
botocore uses for credential_process): words separated by blanks, '...'
literal, "..." where a backslash escapes only '"' and '\', a backslash
outside quotes escapes any character. No shell: no variables, globs,
pipes or redirections.
Input: s. Returns: a list of words, or nil and a message.
]]
function _M.shell_split(s)
  local words, word, state, i, n = {}, nil, nil, 1, #s
  while i <= n do
    local c = sub(s, i, i)
    if state == "'" then
      if c == "'" then state = nil else word = word .. c end
    elseif state == '"' then
      if c == '"' then
        state = nil
      elseif c == "\\" and i < n and (sub(s, i + 1, i + 1) == '"' or sub(s, i + 1, i + 1) == "\\") then
        i = i + 1
        word = word .. sub(s, i, i)
      else
        word = word .. c
      end
    elseif c == " " or c == "\t" or c == "\r" or c == "\n" then
      if word then words[#words + 1] = word; word = nil end
    elseif c == "\\" then
      if i == n then return nil, "no character after the final backslash" end
      i = i + 1
      word = (word or "") .. sub(s, i, i)
    elseif c == "'" or c == '"' then
      state, word = c, word or ""
    else
      word = (word or "") .. c
    end
    i = i + 1
  end
  if state then return nil, "no closing quotation" end
  if word then words[#words + 1] = word end
  return words
end

--[[
Expands a file path as botocore does (os.path.expandvars then expanduser):
$NAME and ${NAME} from the environment (unknown ones are left as they
are), then a leading ~ or ~/ to HOME.
]]
function _M.expand_path(path)
  local function var(name)
    return env(name) or nil
  end
  path = gsub(path, "%$(%b{})", function(b)
    local v = var(sub(b, 2, -2))
    return v
  end)
  path = gsub(path, "%$([%w_]+)", function(name) return var(name) end)
  if path == "~" then return env("HOME") or path end
  if sub(path, 1, 2) == "~/" then
    local home = env("HOME")
    if home then return gsub(home, "/+$", "") .. "/" .. sub(path, 3) end
  end
  return path
end

-- The most a shared file or a token file may hold: nobody writes a megabyte
-- of settings, and a device such as /dev/zero must not exhaust memory.
_M.MAX_FILE_BYTES = 1024 * 1024

--[[
Reads a small file: at most `max` bytes (MAX_FILE_BYTES by default), never
more than max + 1 from the disk.
Returns: the text ("" for an empty file), or nil and "missing" (cannot be
opened), "unreadable" (a directory, an I/O error) or "too large".
]]
function _M.read_small_file(path, max)
  max = max or _M.MAX_FILE_BYTES
  local f = open(path, "rb")
  if not f then return nil, "missing" end
  local ok, text, msg = pcall(f.read, f, max + 1)
  f:close()
  if not ok or (text == nil and msg ~= nil) then return nil, "unreadable" end
  if text == nil then return "" end
  if #text > max then return nil, "too large" end
  return text
end

-- Parses one shared file; raises an error object when it cannot be parsed.
-- A file that does not exist or is not a regular file counts as no file
-- (as in botocore); one over MAX_FILE_BYTES is an error.
local function load_file(path)
  local text, why = _M.read_small_file(path)
  if why == "too large" then
    error(errors.new {
      code = "ConfigParseError",
      message = "the shared file " .. path .. " is larger than " .. _M.MAX_FILE_BYTES .. " bytes",
    }, 0)
  end
  if not text then return {}, {} end
  local sections, order = _M.parse_ini(text)
  if not sections then
    error(errors.new {
      code = "ConfigParseError",
      message = "unable to parse the shared file " .. path .. ": " .. order,
    }, 0)
  end
  return sections, order
end

--[[
Words of a section name, as shlex.split gives them; nil when unbalanced.
Used for "profile NAME" and "services NAME" (quotes allowed around NAME).
]]
local function section_words(name)
  return _M.shell_split(name)
end

--[[
Reads both shared files and maps them as botocore's session does:
config sections `[profile NAME]` and `[default]` are profiles (the later of
`[default]` and `[profile default]` wins), `[services NAME]` are services
sections, anything else is ignored; every section of the credentials file
is a profile (`[NAME]`; `[profile NAME]` there is a profile literally named
"profile NAME"). A profile's settings are its config section with its
credentials-file section laid over it.
Returns: { profiles, config_profiles, cred_profiles, services, paths }.
Raises: an error object when a file cannot be parsed.
]]
function _M.load_files()
  local cfg_path = _M.expand_path(env("AWS_CONFIG_FILE") or "~/.aws/config")
  local cred_path = _M.expand_path(env("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials")
  local cfg, cfg_order = load_file(cfg_path)
  local cred = load_file(cred_path)
  local config_profiles, services = {}, {}
  for _, name in ipairs(cfg_order) do
    local values = cfg[name]
    if sub(name, 1, 7) == "profile" then
      local w = section_words(name)
      if w and #w == 2 then config_profiles[w[2]] = values end
    elseif sub(name, 1, 11) == "sso-session" then -- luacheck: ignore 542
      -- SSO is not supported (README, Configuration)
    elseif sub(name, 1, 8) == "services" then
      local w = section_words(name)
      if w and #w == 2 then services[w[2]] = values end
    elseif name == "default" then
      config_profiles.default = values
    end
  end
  local profiles = {}
  for name, values in pairs(config_profiles) do
    local merged = {}
    for k, v in pairs(values) do merged[k] = v end
    profiles[name] = merged
  end
  for name, values in pairs(cred) do
    local merged = profiles[name] or {}
    for k, v in pairs(values) do merged[k] = v end
    profiles[name] = merged
  end
  return {
    profiles = profiles, config_profiles = config_profiles, cred_profiles = cred,
    services = services, paths = { config = cfg_path, credentials = cred_path },
  }
end

--[[
The profile name of a client: the option, AWS_PROFILE, AWS_DEFAULT_PROFILE,
else "default".
Returns: name, how ("option", "environment" or nil for the default).
]]
function _M.profile_name(opts)
  if opts.profile then return opts.profile, "option" end
  local p = first_env("AWS_PROFILE", "AWS_DEFAULT_PROFILE")
  if p then return p, "environment" end
  return "default", nil
end

--[[
Loads the profile: { name, explicit, config (settings: config file with the
credentials file over it), config_file (the config section alone),
credentials (the credentials section alone), files (load_files) }.
A profile that was named (option or environment) must exist in one of the
files, as botocore's ProfileNotFound requires; the default may be absent.
Raises: an error object (ConfigParseError, ProfileNotFound).
]]
function _M.load_profile(name, how)
  local files = _M.load_files()
  local merged = files.profiles[name]
  if not merged and how ~= nil then
    error(errors.new {
      code = "ProfileNotFound",
      message = "the config profile (" .. name .. ") could not be found in "
        .. files.paths.config .. " or " .. files.paths.credentials,
    }, 0)
  end
  return {
    name = name, explicit = how == "option", files = files,
    config = merged or {},
    config_file = files.config_profiles[name] or {},
    credentials = files.cred_profiles[name] or {},
  }
end

-- }======================================================================

--[[
Region: explicit option, AWS_REGION, AWS_DEFAULT_REGION, then the profile.
Input: opts, and a function returning the loaded profile.
Returns: region or nil, err.
]]
function _M.region(opts, profile)
  local r = opts.region or first_env("AWS_REGION", "AWS_DEFAULT_REGION")
  if not r then
    local p = profile()
    r = p.config.region
    if r ~= nil and type(r) ~= "string" then
      return nil, config_error("the region of profile '" .. p.name .. "' is a nested block", "InvalidRegionError")
    end
    if r == "" then r = nil end
  end
  if not r then
    return nil, errors.new {
      code = "NoRegionError",
      message = "no region: set region in the client options, AWS_REGION, "
        .. "AWS_DEFAULT_REGION or region in the profile of the shared config file",
    }
  end
  -- botocore's check: a valid host label
  if #r > 63 or not (find(r, "^%w$") or find(r, "^%w[%w%-]*%w$")) then
    return nil, errors.new {
      code = "InvalidRegionError",
      message = "region must be a host label: letters, digits and '-', at most 63 characters",
    }
  end
  return r
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
  local host, port = match(authority, "^(%[[%x:.]+%]):?(%d*)$")
  if not host then host, port = match(authority, "^([%w.%-_]+):?(%d*)$") end
  local n = port and tonumber(port)
  if not host or (n and (n < 1 or n > 65535)) then
    return nil, errors.new {
      code = "InvalidEndpointError",
      message = "endpoint_url has a bad host or port (host: letters, digits, '.', '-', '_' or [IPv6]; port 1-65535)",
    }
  end
  base = gsub(base, "/+$", "")
  return { scheme = scheme, host = lower(host), port = port ~= "" and port or nil, base = base }
end

--[[
A custom endpoint configured outside the code, in botocore's order:
AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL, the service's endpoint_url in
the profile's `services` section, the profile's endpoint_url. None of them
when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS (or ignore_configured_endpoint_urls
in the profile) is true.
Input: profile (loaded), env_suffix ("MEDICAL_IMAGING"), key ("medical_imaging").
Returns: url or nil; or nil, err when the profile names a services section
that does not exist.
]]
function _M.configured_endpoint(profile, env_suffix, key)
  local ignore = env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
  if ignore == nil then ignore = profile.config.ignore_configured_endpoint_urls end
  if _M.boolean(ignore) then return nil end
  local url = first_env("AWS_ENDPOINT_URL_" .. env_suffix, "AWS_ENDPOINT_URL")
  if url then return url end
  local services_name = str(profile.config.services)
  if services_name then
    local section = profile.files.services[services_name]
    if not section then
      return nil, config_error("the profile '" .. profile.name .. "' names the services section '"
        .. services_name .. "', which does not exist")
    end
    local block = section[key]
    if type(block) == "table" and str(block.endpoint_url) and block.endpoint_url ~= "" then
      return block.endpoint_url
    end
  end
  url = str(profile.config.endpoint_url)
  if url == "" then url = nil end
  return url
end

--[[
A boolean setting: the option when given, else the environment variable,
else the profile's key (botocore's ensure_boolean for the last two).
]]
function _M.flag(opt, env_name, profile, key)
  if opt ~= nil then return opt == true end
  local v = env(env_name)
  if v ~= nil then return _M.boolean(v) end
  return _M.boolean(profile().config[key])
end

--[[
Endpoint: the explicit option, else a configured custom endpoint (see
configured_endpoint), else the service's endpoint rules for the region with
use_fips_endpoint and use_dualstack_endpoint (option, AWS_USE_FIPS_ENDPOINT /
AWS_USE_DUALSTACK_ENDPOINT, profile). The operation's host prefix
`runtime-` goes in front of the host unless disabled (option
disable_host_prefix_injection, AWS_DISABLE_HOST_PREFIX_INJECTION, profile)
or the host is an IP literal or localhost.
Input: opts, region, a function returning the loaded profile.
Returns: { url_base, host (Host header), base, scheme, hostname } or nil, err.
]]
function _M.endpoint(opts, region, profile)
  local url, err = opts.endpoint_url
  if not url then
    url, err = _M.configured_endpoint(profile(), endpoints.SERVICE_ENV, endpoints.SERVICE_KEY)
    if err then return nil, err end
  end
  local fips = _M.flag(opts.use_fips_endpoint, "AWS_USE_FIPS_ENDPOINT", profile, "use_fips_endpoint")
  local dualstack = _M.flag(opts.use_dualstack_endpoint, "AWS_USE_DUALSTACK_ENDPOINT", profile,
    "use_dualstack_endpoint")
  local resolved, why = endpoints.resolve { Region = region, UseFIPS = fips, UseDualStack = dualstack, Endpoint = url }
  if not resolved then
    return nil, errors.new { code = "EndpointResolutionError", message = why }
  end
  local ep
  ep, err = _M.parse_endpoint(resolved)
  if not ep then return nil, err end
  local host = ep.host
  local no_prefix = _M.flag(opts.disable_host_prefix_injection, "AWS_DISABLE_HOST_PREFIX_INJECTION", profile,
    "disable_host_prefix_injection")
  if not no_prefix and not endpoints.is_literal_host(host) then
    host = "runtime-" .. host
  end
  local hostport = ep.port and (host .. ":" .. ep.port) or host
  return { url_base = ep.scheme .. "://" .. hostport .. ep.base, host = hostport, base = ep.base,
           scheme = ep.scheme, hostname = host }
end

--[[
The STS endpoint for the credential providers: AWS_ENDPOINT_URL_STS,
AWS_ENDPOINT_URL, the `sts` block of the services section, the profile's
endpoint_url (as for any service), else https://sts.{region}.{dnsSuffix}.
Returns: url or nil, err.
]]
function _M.sts_endpoint(region, profile)
  local url, err = _M.configured_endpoint(profile, "STS", "sts")
  if err then return nil, err end
  return url or endpoints.sts(region)
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
    attempts = attempts or str(cfg.max_attempts)
    mode = mode or str(cfg.retry_mode)
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
  return opts.ca_bundle or env("AWS_CA_BUNDLE") or str(profile().config.ca_bundle)
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

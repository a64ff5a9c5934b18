-- spec/helpers.lua: what the specs share: the local emulator started on a
-- free port with the demo data set, the shared reference folder, an
-- independent Python oracle, and a recording stub transport (the transport
-- seam is stubbed, never the network).

local _M = {}

-- Where the repository's test data lives. The Makefile imports the real
-- DICOM files of Debian's python3-pydicom into this file before `make test`.
_M.DATA = os.getenv("HI_TEST_DATA") or "build/demo/datastore.json"
_M.DATASTORE_ID = "healthimagingdemodatastore000001"
_M.CREDENTIALS = {
  access_key_id = "AKIDLOCALHEALTHIMAGING",
  secret_access_key = "healthimaging-local-secret",
}
_M.REFERENCE = "../shared/reference"
_M.PYTHON = "/usr/bin/python3"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end
_M.exists = exists

function _M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function _M.write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Quotes a string for /bin/sh.
function _M.shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--[[
Starts `bin/healthimaging-local ARGS` (a server that prints `listening on
URL` as its first line), learning its pid through sh.
Input: args (shell words, already quoted), what (a name for errors).
Returns: { url, pid, log, stop() }; stop() kills it and removes its log.
Raises when it does not start.
]]
local function start_server(args, what)
  local log = os.tmpname()
  local cmd = "sh -c " .. _M.shell_quote("echo $$; exec bin/healthimaging-local " .. args
    .. " 2>" .. _M.shell_quote(log))
  local h = assert(io.popen(cmd, "r"))
  local pid = h:read("l")
  local line = h:read("l")
  local url = line and line:match("^listening on (https?://[%d%.]+:%d+)$")
  if not url then
    h:close()
    error(what .. " did not start (first line: " .. tostring(line) .. "); its stderr is in " .. log)
  end
  local srv = { url = url, pid = pid, log = log }
  function srv.stop()
    os.execute("kill " .. pid .. " 2>/dev/null")
    h:close()
    os.remove(log)
  end
  return srv
end

--[[
Starts `bin/healthimaging-local serve` on a free loopback port.
Input: opts = { data = path, args = "extra flags" }.
Returns: { url, pid, stop() }. Raises when the emulator does not start.
]]
function _M.start_emulator(opts)
  opts = opts or {}
  local data = opts.data or _M.DATA
  assert(exists(data), "test data " .. data .. " is missing: run `make test` (it imports the demo DICOM files)")
  return start_server("serve --data " .. _M.shell_quote(data) .. " --port 0 " .. (opts.args or ""),
    "the emulator")
end

-- A client of the emulator with its default credentials.
function _M.client(emu, extra)
  local hi = require "healthimaging"
  local opts = { region = "us-east-1", endpoint_url = emu.url, credentials = _M.CREDENTIALS }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(hi.client(opts))
end

--[[
Sends a control request to the emulator's unsigned /_local API through the
project's own transport (status, decoded body); over https with emu.ca.
]]
function _M.control(emu, method, path, body)
  local core = require "healthimaging.core"
  local t = core.http_new { timeout = 5, ca_bundle = emu.ca }
  local status, _, rbody = t:request {
    method = method, url = emu.url .. path,
    headers = { { "Content-Type", "application/json" } }, body = body and core.json_encode(body) or "",
  }
  t:close()
  assert(status, "control request failed")
  return status, rbody ~= "" and core.json_decode(rbody) or nil
end

-- The emulator's counters (GET /_local/stats): requests, connections, ...
function _M.stats(emu)
  local status, body = _M.control(emu, "GET", "/_local/stats")
  assert(status == 200, "GET /_local/stats answered " .. tostring(status))
  return body
end

-- A new temporary file holding text; returns its path (the caller removes it).
function _M.temp_file(text)
  local path = os.tmpname()
  _M.write(path, text)
  return path
end

--[[
Runs a Python snippet with Debian's python3 and returns its stdout: an
oracle independent of the code under test. `input` is given on stdin via a
temporary file.
]]
function _M.python(code, input)
  local script = os.tmpname()
  _M.write(script, code)
  local infile = os.tmpname()
  _M.write(infile, input or "")
  local h = assert(io.popen(_M.PYTHON .. " " .. script .. " < " .. infile))
  local out = h:read("a")
  local ok = h:close()
  os.remove(script)
  os.remove(infile)
  assert(ok, "the python oracle failed")
  return out
end

--[[
A stub transport: answers each request with the next canned response and
records what it was asked. responses: list of { status, headers, body } or
{ nil, err } entries, or a function(req, n) returning status, headers, body.
]]
function _M.stub_transport(responses)
  local t = { requests = {} }
  function t.request(self, req)
    self.requests[#self.requests + 1] = req
    local n = #self.requests
    if type(responses) == "function" then return responses(req, n) end
    local r = responses[n]
    assert(r, "the stub transport has no response for request " .. n)
    if r.err then return nil, r.err end
    return r.status or 200, r.headers or {}, r.body
  end
  return t
end

--[[
Runs fn with some environment variables seen differently by the library
(config.getenv is its one lookup): vars maps a name to a value, or to false
for unset. Everything else comes from the real environment.
]]
function _M.with_env(vars, fn)
  local config = require "healthimaging.config"
  local real = config.getenv
  config.getenv = function(name)
    local v = vars[name]
    if v == false then return nil end
    if v ~= nil then return v end
    return real(name)
  end
  local ok, err = pcall(fn)
  config.getenv = real
  if not ok then error(err, 0) end
end

--[[
Compares two values deeply without ever showing them: returns true, or
false and the path of the first difference (tag values may be patient data,
so a failing assertion must not print them).
]]
function _M.same(a, b, path)
  path = path or "$"
  if type(a) ~= type(b) then return false, path .. " (types differ)" end
  if type(a) ~= "table" then
    if a == b then return true end
    return false, path
  end
  for k, v in pairs(a) do
    local ok, where = _M.same(v, b[k], path .. "." .. tostring(k))
    if not ok then return false, where end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "." .. tostring(k) .. " (missing on the left)" end
  end
  return true
end

--[[
Runs a command with /bin/sh and returns its exit code, stdout and stderr.
]]
function _M.run(cmd)
  local err_file = os.tmpname()
  local h = assert(io.popen(cmd .. " 2>" .. _M.shell_quote(err_file)))
  local out = h:read("a")
  local _, _, code = h:close()
  local err = _M.read(err_file)
  os.remove(err_file)
  return code, out, err
end

--[[
Starts `bin/healthimaging-local serve-identity` (local STS, container
credentials and IMDS) on a free loopback port.
Input: args, its flags (a string; --issue is required).
Returns: { url, pid, stop(), events() } (events: what it was asked, from
GET /_identity/log). Raises when it does not start.
]]
function _M.start_identity(args)
  local srv = start_server("serve-identity --port 0 " .. args, "serve-identity")
  function srv.events()
    local _, doc = _M.control(srv, "GET", "/_identity/log")
    return doc.events or {}, doc.issued
  end
  return srv
end

-- Every environment variable the library reads that changes where
-- credentials, region or endpoints come from.
_M.AWS_VARIABLES = {
  "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE",
  "AWS_SHARED_CREDENTIALS_FILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
  "AWS_SECURITY_TOKEN", "AWS_CREDENTIAL_EXPIRATION", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
  "AWS_ROLE_SESSION_NAME", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
  "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_DISABLED",
  "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "AWS_EC2_METADATA_V1_DISABLED",
  "AWS_METADATA_SERVICE_TIMEOUT", "AWS_METADATA_SERVICE_NUM_ATTEMPTS", "AWS_ENDPOINT_URL",
  "AWS_ENDPOINT_URL_MEDICAL_IMAGING", "AWS_ENDPOINT_URL_STS", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
  "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_DISABLE_HOST_PREFIX_INJECTION",
  "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_CA_BUNDLE",
}

--[[
Runs fn (through with_env) in an environment that has none of the AWS
variables above and no proxy, no shared files (AWS_CONFIG_FILE and
AWS_SHARED_CREDENTIALS_FILE point at nothing) and IMDS disabled, with vars
laid over it (false unsets). Nothing of the machine's own AWS setup leaks in.
]]
function _M.with_aws_env(vars, fn)
  local all = {}
  for _, name in ipairs(_M.AWS_VARIABLES) do all[name] = false end
  for _, name in ipairs { "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy" } do
    all[name] = false
  end
  all.AWS_CONFIG_FILE = "/nonexistent/healthimaging-spec/config"
  all.AWS_SHARED_CREDENTIALS_FILE = "/nonexistent/healthimaging-spec/credentials"
  all.AWS_EC2_METADATA_DISABLED = "true"
  for k, v in pairs(vars or {}) do all[k] = v end
  return _M.with_env(all, fn)
end

--[[
A transport that passes every request to a real libcurl handle and keeps
the access key id each one was signed with (from the Authorization
header's Credential=): with an emulator that accepts only known
credentials, an accepted request then shows exactly which identity signed it.
]]
function _M.key_recorder()
  local core = require "healthimaging.core"
  local real = core.http_new { timeout = 10 }
  local t = { keys = {} }
  function t.request(_, req)
    for _, h in ipairs(req.headers) do
      if h[1]:lower() == "authorization" then
        t.keys[#t.keys + 1] = h[2]:match("Credential=([^/]+)/")
      end
    end
    return real:request(req)
  end
  function t.close() real:close() end
  return t
end

--[[
One search through a key_recorder, for the credential specs.
Input: emu, base client options, extra options (both may be nil).
Returns: res, err, and the access key ids the requests were signed with.
]]
function _M.search_recording_keys(emu, base, extra)
  local hi = require "healthimaging"
  local rec = _M.key_recorder()
  local opts = { endpoint_url = emu.url, transport = rec }
  for k, v in pairs(base or {}) do opts[k] = v end
  for k, v in pairs(extra or {}) do opts[k] = v end
  local c = assert(hi.client(opts))
  local res, err = c:search_image_sets { datastoreId = _M.DATASTORE_ID, maxResults = 1 }
  rec.close()
  return res, err, rec.keys
end

-- Asserts that a search succeeded, signed only with the key id of `id`
-- ({ key id, secret, token }).
function _M.accepted_as(id, res, err, keys)
  local luassert = require "luassert"
  luassert.is_nil(err and tostring(err))
  luassert.is_table(res.imageSetsMetadataSummaries)
  luassert.are.same({ id[1] }, keys)
end

--[[
Starts `bin/healthimaging-local serve --https` on a free loopback port, its
test CA written to a fresh folder.
Input: opts = { data = path, args = "extra flags" }.
Returns: { url = "https://127.0.0.1:PORT", ca = the CA certificate's path,
pid, stop() }. Raises when the emulator does not start.
]]
function _M.start_https_emulator(opts)
  opts = opts or {}
  local data = opts.data or _M.DATA
  assert(exists(data), "test data " .. data .. " is missing: run `make test` (it imports the demo DICOM files)")
  local dir = os.tmpname()
  os.remove(dir)
  local emu = start_server("serve --https --tls-dir " .. _M.shell_quote(dir) .. " --data "
    .. _M.shell_quote(data) .. " --port 0 " .. (opts.args or ""), "the https emulator")
  emu.ca = dir .. "/ca.pem"
  local stop = emu.stop
  function emu.stop()
    stop()
    os.execute("rm -rf " .. _M.shell_quote(dir))
  end
  return emu
end

return _M

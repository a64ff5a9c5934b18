-- AWS's SigV4 test suite, both layouts, driven from the files in
-- ../shared/reference/sigv4-test-suite (never copied into the repository).
-- Each case checks the canonical request, the string to sign and the
-- signature with its Authorization header, each in its own `it`.
-- luacheck: std +busted
local core = require "healthimaging.core"
local cjson = require "cjson"
local lfs = require "lfs"

local io_open, ipairs, pairs, table_sort = io.open, ipairs, pairs, table.sort

-- The repository root, from this file's own path (busted runs from the root).
local SPEC_SOURCE = debug.getinfo(1, "S").source:sub(2)
local ROOT = SPEC_SOURCE:match("^(.-)/?spec/01%-sigv4/[^/]*$")
if ROOT == nil or ROOT == "" then ROOT = "." end
local SUITE = ROOT .. "/../shared/reference/sigv4-test-suite"

-- Fixed inputs of every case, from the suite's README.md ("Fixed inputs").
local FIXED = {
  access_key_id = "AKIDEXAMPLE",
  secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
  amz_date = "20150830T123600Z",
  region = "us-east-1",
  service = "service",
}
-- The one botocore case whose token is given only in the README.
local VANILLA_TOKEN = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"

-- How many header-signing cases each layout holds, per the README.
local BOTOCORE_CASES, AWS_C_AUTH_CASES = 34, 38

local function read_file(path)
  local f = io_open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function is_dir(path)
  return lfs.attributes(path, "mode") == "directory"
end

-- Sorted names of the subdirectories of dir.
local function subdirs(dir)
  local out = {}
  for name in lfs.dir(dir) do
    if name ~= "." and name ~= ".." and is_dir(dir .. "/" .. name) then
      out[#out + 1] = name
    end
  end
  table_sort(out)
  return out
end

-- Parses a raw request file: request line, headers (a line starting with
-- white space continues the previous value, kept with its "\n"), blank line,
-- body. The request line may hold a space inside the path (get-space).
local function parse_request(text)
  local head, body = text:match("^(.-)\n\n(.*)$")
  if head == nil then head, body = text:gsub("\n+$", ""), "" end
  local req = { headers = {}, body = body }
  local first = true
  for line in (head .. "\n"):gmatch("(.-)\r?\n") do
    if first then
      req.method, req.target = line:match("^(%S+) (.*) HTTP/%d[%d.]*$")
      first = false
    elseif line:match("^[ \t]") then
      local last = req.headers[#req.headers]
      last[2] = last[2] .. "\n" .. line
    else
      local name, value = line:match("^([^:]*):(.*)$")
      req.headers[#req.headers + 1] = { name, value }
    end
  end
  req.path, req.query = req.target:match("^([^?]*)%??(.*)$")
  if not req.target:find("?", 1, true) then req.query = nil end
  return req
end

-- Removes the headers named `lname` (any case); returns their values.
local function take_headers(headers, lname)
  local kept, taken = {}, {}
  for _, h in ipairs(headers) do
    if h[1]:lower() == lname then taken[#taken + 1] = h[2] else kept[#kept + 1] = h end
  end
  return kept, taken
end

local function sign_input(req, opts)
  return {
    method = req.method, path = req.path, query = req.query,
    headers = req.headers, body = req.body,
    access_key_id = opts.access_key_id, secret_access_key = opts.secret_access_key,
    session_token = opts.session_token, region = opts.region, service = opts.service,
    amz_date = opts.amz_date, normalize_path = opts.normalize_path,
    sign_body = opts.sign_body, omit_session_token = opts.omit_session_token,
  }
end

-- Expected files never end in a newline in the signed text itself.
local function expected(path)
  local s = assert(read_file(path), "missing " .. path)
  return (s:gsub("\n+$", ""))
end

-- Layout 1: every folder holding NAME/NAME.req, nested folders included.
local function botocore_cases(dir, prefix, out)
  for _, name in ipairs(subdirs(dir)) do
    local path = dir .. "/" .. name
    if read_file(path .. "/" .. name .. ".req") then
      out[#out + 1] = { id = prefix .. name, name = name, base = path .. "/" .. name }
    else
      botocore_cases(path, prefix .. name .. "/", out)
    end
  end
  return out
end

-- The long STS token: the last non-empty line of post-sts-token/readme.txt.
local function sts_token(dir)
  local text = assert(read_file(dir .. "/post-sts-token/readme.txt"))
  local token
  for line in text:gmatch("[^\r\n]+") do token = line end
  return token
end

-- Builds sign() input for a botocore case. Its .req already carries
-- X-Amz-Date (and the token in post-sts-header-before): the signer adds
-- those itself, so they are taken out here and checked against the inputs.
local function botocore_input(case, token_long)
  local req = parse_request(assert(read_file(case.base .. ".req")))
  local dates, tokens
  req.headers, dates = take_headers(req.headers, "x-amz-date")
  req.headers, tokens = take_headers(req.headers, "x-amz-security-token")
  assert.same({ FIXED.amz_date }, dates)
  local opts = {}
  for k, v in pairs(FIXED) do opts[k] = v end
  if case.name == "get-vanilla-with-session-token" then
    opts.session_token = VANILLA_TOKEN
  elseif case.name == "post-sts-header-before" then
    assert.same({ token_long }, tokens)
    opts.session_token = token_long
  elseif case.name == "post-sts-header-after" then
    -- readme.txt: the token is added after the signature is computed.
    opts.session_token, opts.omit_session_token = token_long, true
  end
  return sign_input(req, opts)
end

-- Builds sign() input for an aws-c-auth case from request.txt and context.json.
local function aws_c_auth_input(dir)
  local req = parse_request(assert(read_file(dir .. "/request.txt")))
  local ctx = cjson.decode((assert(read_file(dir .. "/context.json"))))
  return sign_input(req, {
    access_key_id = ctx.credentials.access_key_id,
    secret_access_key = ctx.credentials.secret_access_key,
    session_token = ctx.credentials.token,
    region = ctx.region,
    service = ctx.service,
    amz_date = ctx.timestamp:gsub("[-:]", ""),
    normalize_path = ctx.normalize,
    sign_body = ctx.sign_body,
    omit_session_token = ctx.omit_session_token == true,
  })
end

if not is_dir(SUITE) then
  describe("the AWS SigV4 test suite", function()
    pending("../shared/reference/sigv4-test-suite is absent: the canonical requests, "
      .. "strings to sign and signatures of both suite layouts are not checked")
  end)
  return
end

describe("the AWS SigV4 test suite, botocore layout (aws4_testsuite)", function()
  local dir = SUITE .. "/botocore-aws4_testsuite"
  local cases = botocore_cases(dir, "", {})
  local token_long = sts_token(dir)

  it("holds the " .. BOTOCORE_CASES .. " cases its README announces", function()
    assert.equal(BOTOCORE_CASES, #cases)
  end)

  for _, case in ipairs(cases) do
    describe(case.id, function()
      it("builds the canonical request of " .. case.name .. ".creq", function()
        local res = assert(core.sign(botocore_input(case, token_long)))
        assert.equal(expected(case.base .. ".creq"), res.canonical_request)
      end)

      it("builds the string to sign of " .. case.name .. ".sts", function()
        local res = assert(core.sign(botocore_input(case, token_long)))
        assert.equal(expected(case.base .. ".sts"), res.string_to_sign)
      end)

      -- Checked against .authz, not .sreq: the README notes that
      -- get-vanilla-with-session-token.sreq carries a stale signature.
      it("produces the Authorization header of " .. case.name .. ".authz", function()
        local res = assert(core.sign(botocore_input(case, token_long)))
        local authz = expected(case.base .. ".authz")
        assert.equal(authz, res.authorization)
        assert.equal(authz:match("Signature=(%x+)$"), res.signature)
      end)
    end)
  end
end)

describe("the AWS SigV4 test suite, aws-c-auth layout (header signing)", function()
  local dir = SUITE .. "/aws-c-auth-v4"
  local cases = {}
  for _, name in ipairs(subdirs(dir)) do
    if read_file(dir .. "/" .. name .. "/context.json") then cases[#cases + 1] = name end
  end

  it("holds the " .. AWS_C_AUTH_CASES .. " cases its README announces", function()
    assert.equal(AWS_C_AUTH_CASES, #cases)
  end)

  for _, name in ipairs(cases) do
    local cdir = dir .. "/" .. name
    describe(name, function()
      it("builds header-canonical-request.txt", function()
        local res = assert(core.sign(aws_c_auth_input(cdir)))
        assert.equal(expected(cdir .. "/header-canonical-request.txt"), res.canonical_request)
      end)

      it("builds header-string-to-sign.txt", function()
        local res = assert(core.sign(aws_c_auth_input(cdir)))
        assert.equal(expected(cdir .. "/header-string-to-sign.txt"), res.string_to_sign)
      end)

      it("computes header-signature.txt and the Authorization header of the signed request", function()
        local res = assert(core.sign(aws_c_auth_input(cdir)))
        assert.equal(expected(cdir .. "/header-signature.txt"), res.signature)
        local signed = parse_request(assert(read_file(cdir .. "/header-signed-request.txt")))
        local _, authz = take_headers(signed.headers, "authorization")
        assert.same({ res.authorization }, authz)
      end)

      it("returns the headers to add, as the signed request shows them", function()
        local res = assert(core.sign(aws_c_auth_input(cdir)))
        local signed = parse_request(assert(read_file(cdir .. "/header-signed-request.txt")))
        local request = parse_request(assert(read_file(cdir .. "/request.txt")))
        -- The signed request is the unsigned one plus exactly these headers
        -- (and Authorization), whatever their order in the file.
        local added = {}
        for _, h in ipairs(res.headers) do added[#added + 1] = h[1]:lower() .. ":" .. h[2] end
        local extra = {}
        local original = {}
        for _, h in ipairs(request.headers) do
          original[h[1]:lower() .. ":" .. h[2]] = (original[h[1]:lower() .. ":" .. h[2]] or 0) + 1
        end
        for _, h in ipairs(signed.headers) do
          local key = h[1]:lower() .. ":" .. h[2]
          if h[1]:lower() ~= "authorization" then
            if (original[key] or 0) > 0 then
              original[key] = original[key] - 1
            else
              extra[#extra + 1] = key
            end
          end
        end
        table_sort(added)
        table_sort(extra)
        assert.same(extra, added)
      end)
    end)
  end
end)

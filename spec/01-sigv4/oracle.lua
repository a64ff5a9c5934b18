-- An independent oracle for the SigV4 specs: runs a short script with
-- Debian's /usr/bin/python3 (hashlib/hmac, or botocore's SigV4Auth). The
-- input goes through a temp file as JSON (removed afterwards); the script
-- prints JSON on stdout. Not a spec (no _spec suffix): the specs require it.
local cjson = require "cjson"

local assert, error, tostring = assert, error, tostring
local io_open, io_popen, os_remove, os_tmpname = io.open, io.popen, os.remove, os.tmpname

local PYTHON = "/usr/bin/python3"

local _M = {}

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Hex of a byte string, so binary data (NULs, invalid UTF-8) survives JSON.
function _M.hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- Runs `script` with the path of a file holding cjson.encode(input) as
-- sys.argv[1]; returns the decoded JSON it prints. Raises when it fails.
function _M.run(script, input)
  local path = os_tmpname()
  local f = assert(io_open(path, "wb"))
  f:write(cjson.encode(input))
  f:close()
  local p = assert(io_popen(PYTHON .. " -c " .. shell_quote(script) .. " " .. shell_quote(path)))
  local out = p:read("a")
  local ok, _, code = p:close()
  os_remove(path)
  if not ok then
    error("the python3 oracle failed (exit " .. tostring(code) .. "); see its stderr above", 2)
  end
  return cjson.decode(out)
end

return _M

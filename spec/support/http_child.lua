-- Runs one transport scenario in a separate lua5.4 process, for the
-- http_spec cases that need a process of their own: stderr capture
-- (verbose tracing) or a memory limit (out of memory while receiving).
-- Usage: lua5.4 spec/support/http_child.lua <verbose|oom> <port>
-- Prints "ok <status>" or "err <code> <message>" on stdout.
package.cpath = "./build/?.so;" .. package.cpath
local core = require "healthimaging.core"

local mode, port = arg[1], arg[2]
local base = "http://127.0.0.1:" .. port

local status, err
if mode == "verbose" then
  local t = core.http_new { verbose = true }
  status, err = t:request {
    method = "POST", url = base .. "/echo",
    headers = { { "Authorization", "AWS4-HMAC-SHA256 Signature=secret-signature-value" },
                { "X-Amz-Security-Token", "secret-session-token" },
                { "X-Visible", "shown" } },
    body = "patient-body-bytes",
  }
elseif mode == "oom" then
  -- The caller limits the address space; the cap is far above it, so the
  -- buffer's realloc is what fails.
  local t = core.http_new { max_response_bytes = 1 << 40, timeout = 60 }
  status, err = t:request { method = "GET", url = base .. "/bytes?n=4000000000" }
else
  error("unknown mode " .. tostring(mode))
end

if status then
  io.write("ok ", status, "\n")
else
  io.write("err ", err.code, " ", err.message, "\n")
end

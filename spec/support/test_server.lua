-- Starts and stops spec/support/http_server.py for the transport specs.
-- start() -> server { pid, port, base, tls_port, tls_base, cert, stop = fn }
-- The server runs under `sh -c 'echo $$; exec python3'` so that the first
-- line read is its pid (exec keeps it), the next its port and TLS line.
local io_popen, os_execute, tonumber = io.popen, os.execute, tonumber

local _M = {}

local SCRIPT = "spec/support/http_server.py"

function _M.start()
  local pipe = assert(io_popen("sh -c 'echo $$; exec /usr/bin/python3 " .. SCRIPT .. "'", "r"))
  local pid = tonumber(pipe:read("l"))
  local port = tonumber(pipe:read("l"))
  local tls = pipe:read("l")
  assert(pid and port and tls, "the test server did not start (see stderr)")
  local server = { pid = pid, port = port, base = "http://127.0.0.1:" .. port }
  local tls_port, cert = tls:match("^(%d+) (.+)$")
  if tls_port then
    server.tls_port = tonumber(tls_port)
    server.tls_base = "https://127.0.0.1:" .. tls_port
    server.cert = cert
  end
  function server.stop()
    os_execute("kill " .. pid)
    pipe:close()
  end
  return server
end

return _M

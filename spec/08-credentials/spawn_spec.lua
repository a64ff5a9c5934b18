-- core.spawn, the C part behind credential_process: a program run without
-- a shell, its output collected, a deadline, and every way it can fail
-- reported as an error value (misuse raises), never a crash or a leftover
-- process.
local helpers = require "helpers"
local core = require "healthimaging.core"

local function alive(pid)
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

describe("core.spawn", function()
  it("runs a program with its arguments and collects stdout, stderr and the exit code", function()
    local r = assert(core.spawn { "sh", "-c", "printf out; printf err >&2; exit 7" })
    assert.are.same({ exit_code = 7, stdout = "out", stderr = "err" }, r)
  end)

  it("passes arguments as they are: no shell expands, splits or redirects them", function()
    local r = assert(core.spawn { "printf", "%s|", "$HOME", "`id`", "a b", "; echo no", ">file", "*" })
    assert.are.equal("$HOME|`id`|a b|; echo no|>file|*|", r.stdout)
  end)

  it("finds the program on PATH, as execvp does", function()
    local r = assert(core.spawn { "true" })
    assert.are.equal(0, r.exit_code)
  end)

  it("gives the program an empty stdin", function()
    local r = assert(core.spawn { "cat" })
    assert.are.same({ exit_code = 0, stdout = "", stderr = "" }, r)
  end)

  it("collects output larger than a pipe's buffer, on both streams at once", function()
    local r = assert(core.spawn { "sh", "-c", "head -c 300000 /dev/zero; head -c 200000 /dev/zero >&2" })
    assert.are.equal(300000, #r.stdout)
    assert.are.equal(200000, #r.stderr)
  end)

  it("reports a program killed by a signal", function()
    local r = assert(core.spawn { "sh", "-c", "kill -TERM $$" })
    assert.is_nil(r.exit_code)
    assert.are.equal(15, r.signal)
  end)

  it("reports a program that does not exist or cannot run as ProcessNotFound", function()
    local plain = os.tmpname()   -- a file without execute permission
    for _, argv in ipairs { { "/nonexistent/program" }, { "healthimaging-no-such-program-on-path" },
                            { plain }, { "/" } } do
      local r, err = core.spawn(argv)
      assert.is_nil(r)
      assert.are.equal("ProcessNotFound", err.code, argv[1])
      assert.is_string(err.message)
    end
    os.remove(plain)
  end)

  it("kills a program that outlives the timeout, and reaps it", function()
    local pidfile = os.tmpname()
    local t0 = core.monotime()
    local r, err = core.spawn({ "sh", "-c", "echo $$ > " .. pidfile .. "; exec sleep 30" }, { timeout = 0.3 })
    local took = core.monotime() - t0
    assert.is_nil(r)
    assert.are.equal("ProcessTimeout", err.code)
    assert.is_true(took < 5, "took " .. took .. " s")
    local pid = helpers.read(pidfile):match("%d+")
    os.remove(pidfile)
    assert.is_false(alive(pid))
  end)

  it("times out a program that closes its output but keeps running", function()
    local _, err = core.spawn({ "sh", "-c", "exec >&- 2>&-; sleep 30" }, { timeout = 0.3 })
    assert.are.equal("ProcessTimeout", err.code)
  end)

  it("kills a program that writes more than max_output, on stdout or on stderr", function()
    local _, err = core.spawn({ "yes" }, { max_output = 100000 })
    assert.are.equal("ProcessOutputTooLarge", err.code)
    _, err = core.spawn({ "sh", "-c", "yes >&2" }, { max_output = 1000 })
    assert.are.equal("ProcessOutputTooLarge", err.code)
    local r = assert(core.spawn({ "printf", "12345" }, { max_output = 5 }))
    assert.are.equal("12345", r.stdout)
  end)

  it("reports a lost exit status when the host ignores SIGCHLD, instead of guessing", function()
    local script = os.tmpname()
    helpers.write(script, [[
package.cpath = "./build/?.so;" .. package.cpath
local core = require "healthimaging.core"
local r, err = core.spawn { "true" }
io.write(r and "ran" or err.code)
]])
    -- Python sets SIGCHLD to SIG_IGN and execs lua5.4, which keeps it ignored
    local code, out = helpers.run(helpers.PYTHON .. " -c " .. helpers.shell_quote(
      "import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); "
      .. "os.execvp('lua5.4', ['lua5.4', sys.argv[1]])") .. " " .. script)
    os.remove(script)
    assert.are.equal(0, code)
    assert.are.equal("ProcessError", out)
  end)

  it("reports pipes it cannot make (no file descriptors left) as ProcessError", function()
    local script = os.tmpname()
    helpers.write(script, [[
package.cpath = "./build/?.so;" .. package.cpath
local core = require "healthimaging.core"
local r, err = core.spawn { "true" }
io.write(r and "ran" or (err.code .. ": " .. err.message))
]])
    -- with 5 descriptors, the first pipe takes the last two: the second fails
    local code, out = helpers.run("sh -c " .. helpers.shell_quote("ulimit -n 5; exec lua5.4 " .. script))
    os.remove(script)
    assert.are.equal(0, code)
    assert.are.equal("ProcessError: cannot talk to the process: Too many open files", out)
  end)

  it("reports a process the system refuses to start (arguments too long) as ProcessError", function()
    local argv = { "true" }
    for i = 2, 41 do argv[i] = string.rep("x", 120000) end
    local r, err = core.spawn(argv)
    if (os.getenv("LD_PRELOAD") or ""):find("vgpreload", 1, true) then
      -- under valgrind, posix_spawn runs through its emulation, which reports
      -- a failed exec as the child's exit status instead
      assert.is_true(r == nil or r.exit_code ~= 0)
      return
    end
    assert.is_nil(r)
    assert.are.equal("ProcessError", err.code)
    assert.matches("cannot start the process", err.message, 1, true)
  end)

  it("raises on misuse, naming the argument", function()
    local cases = {
      { {}, "argv must hold 1 to 256 strings" },
      { { 1 }, "argv[1] must be a string" },
      { { "a\0b" }, "argv[1] contains a NUL byte" },
      { { "" }, "argv[1] must not be empty" },
      { { "true", {} }, "argv[2] must be a string" },
    }
    local big = {}
    for i = 1, 257 do big[i] = "x" end
    cases[#cases + 1] = { big, "argv must hold 1 to 256 strings" }
    for _, c in ipairs(cases) do
      local ok, msg = pcall(core.spawn, c[1])
      assert.is_false(ok)
      assert.matches(c[2], msg, 1, true)
    end
    assert.has_error(function() core.spawn("true") end)
    local ok, msg = pcall(core.spawn, { "true" }, { timeout = 0 })
    assert.is_false(ok)
    assert.matches("field 'timeout'", msg, 1, true)
    ok, msg = pcall(core.spawn, { "true" }, { max_output = "big" })
    assert.is_false(ok)
    assert.matches("field 'max_output'", msg, 1, true)
    ok = pcall(core.spawn, { "true" }, 5)
    assert.is_false(ok)
  end)
end)

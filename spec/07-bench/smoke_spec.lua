-- A short smoke of `make bench` (the benchmark itself is not part of
-- `make test`): bench/server.c and the floor's C module are built into a
-- temporary folder, and bench/run.py --smoke runs our paginator, with and
-- without prefetch, and the libcurl+cjson floor over a few pages. Checked:
-- every contender saw the same image sets over one TCP connection a scan.
-- Timings are printed by the driver but never judged here.
local helpers = require "helpers"

describe("make bench, as a smoke run", function()
  local dir

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. helpers.shell_quote(dir)))
  end)

  teardown(function()
    if dir then os.execute("rm -rf " .. helpers.shell_quote(dir)) end
  end)

  it("builds the bench server and the floor, and every contender sees the same items on one connection", function()
    local code, _, err = helpers.run("make -s BENCH_BUILD=" .. helpers.shell_quote(dir) .. " "
      .. helpers.shell_quote(dir .. "/server") .. " " .. helpers.shell_quote(dir .. "/bench_floor.so"))
    assert.are.equal(0, code, err)
    local out
    code, out, err = helpers.run(helpers.PYTHON .. " bench/run.py --smoke --build " .. helpers.shell_quote(dir))
    assert.are.equal(0, code, out .. err)
    assert.matches("server: bench server %(C, pre%-rendered%): 20 pages of 50 summaries", out)
    assert.not_matches("PROBLEM", out, 1, true)
    -- One row per contender in each of the three workloads.
    for _, name in ipairs { "floor", "ours", "ours+prefetch" } do
      local rows = 0
      for line in out:gmatch("[^\n]+") do
        if line:find("| " .. name .. " |", 1, true) == 1 then
          rows = rows + 1
          assert.not_matches("failed", line, 1, true)
        end
      end
      assert.are.equal(name == "ours+prefetch" and 2 or 3, rows, name)
    end
    assert.matches("TCP connections for the whole scan: 1 %(target 1%): met", out)
    assert.matches("requests with prefetch: 4 %(target 4 %(one per page%)%): met", out)
  end)
end)

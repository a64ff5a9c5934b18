-- One version for the whole project: the C core, the Lua layer and the
-- rockspec must agree (lua-cjson's 2.1.0.11 vs 2.1.0.17 drift is why).
local helpers = require "helpers"

describe("the version", function()
  it("is the same in the C core, the Lua module and the rockspec", function()
    local core = require "healthimaging.core"
    local hi = require "healthimaging"
    local names = {}
    for name in io.popen("ls rockspec"):lines() do names[#names + 1] = name end
    assert.are.equal(1, #names, "exactly one rockspec")
    local text = helpers.read("rockspec/" .. names[1])
    local version = text:match('\nversion = "([^"]+)%-%d+"')
    assert.is_string(version)
    assert.are.equal("healthimaging-" .. version .. "-1.rockspec", names[1])
    assert.are.equal(version, core._VERSION)
    assert.are.equal(version, hi._VERSION)
  end)

  it("lists every Lua module of lua/ in the rockspec", function()
    local text = helpers.read("rockspec/healthimaging-" .. require("healthimaging")._VERSION .. "-1.rockspec")
    for file in io.popen("cd lua && find . -name '*.lua' | sort"):lines() do
      local path = "lua/" .. file:gsub("^%./", "")
      assert.is_truthy(text:find('"' .. path .. '"', 1, true), path .. " is missing from the rockspec")
    end
  end)
end)

describe("the C core", function()
  it("loads and reports its version", function()
    local core = require "healthimaging.core"
    assert.is_string(core._VERSION)
  end)
end)

-- Prefetch end to end: the libcurl transport against the emulator loaded
-- with the real DICOM files. The request for the next page is on the wire
-- while the consumer handles the current one, over one TCP connection, and
-- faults injected into a prefetched page behave as on any page.
local helpers = require "helpers"
local core = require "healthimaging.core"

local ID = helpers.DATASTORE_ID

local emu

setup(function() emu = helpers.start_emulator() end)
teardown(function() if emu then emu.stop() end end)
before_each(function() helpers.control(emu, "DELETE", "/_local/faults") end)

local function stats() return helpers.stats(emu) end

local function ids_of(c, prefetch, page_size)
  local ids = {}
  for s in c:get_paginator("search_image_sets"):paginate {
    datastoreId = ID, prefetch = prefetch, PaginationConfig = { PageSize = page_size },
  }:items() do
    ids[#ids + 1] = s.imageSetId
  end
  return ids
end

describe("prefetch against the emulator", function()
  it("yields the same image sets as without prefetch, with one request a page on one TCP connection", function()
    local plain = ids_of(helpers.client(emu), false, 4)
    local before = stats()
    local fetched = ids_of(helpers.client(emu), true, 4)
    local after = stats()
    assert.is_true(#plain > 20, "the demo data set has more than 20 image sets")
    assert.are.same(plain, fetched)
    assert.are.equal(math.ceil(#plain / 4), after.requests - before.requests)
    assert.are.equal(1, after.apiConnections - before.apiConnections)
  end)

  it("overlaps the service's time with the consumer's: about max(C, F) a page instead of C + F", function()
    local pages, wait = 4, 0.25
    local rule = { kind = "delay", ms = math.floor(wait * 1000), times = pages }
    local function timed(prefetch)
      helpers.control(emu, "POST", "/_local/faults", rule)
      local c = helpers.client(emu)
      local t0 = core.monotime()
      local n = 0
      for _ in c:get_paginator("search_image_sets"):paginate {
        datastoreId = ID, prefetch = prefetch, PaginationConfig = { PageSize = 4, MaxItems = 4 * pages },
      } do
        n = n + 1
        core.sleep(wait)
      end
      assert.are.equal(pages, n)
      return core.monotime() - t0
    end
    local serial, overlapped = timed(false), timed(true)
    assert.is_true(serial >= 2 * pages * wait, "without prefetch: " .. serial .. " s")
    assert.is_true(overlapped < (2 * pages - 1) * wait,
      "with prefetch: " .. overlapped .. " s, without: " .. serial .. " s")
  end)

  it("retries a prefetched page that met an InternalServerException and still yields every image set", function()
    local plain = ids_of(helpers.client(emu), false, 5)
    helpers.control(emu, "POST", "/_local/faults", {
      { kind = "delay", ms = 1, times = 1 },            -- page 1 as usual
      { code = "InternalServerException", times = 1 },  -- page 2, prefetched, fails once
    })
    local c = helpers.client(emu, { sleep = function() end })
    assert.are.same(plain, ids_of(c, true, 5))
    assert.are.same({}, select(2, helpers.control(emu, "GET", "/_local/faults")).rules or {})
  end)

  it("hands a lasting error of a prefetched page to the consumer at that page, with its resume token", function()
    helpers.control(emu, "POST", "/_local/faults", {
      { kind = "delay", ms = 1, times = 1 },
      { code = "ValidationException", times = 1 },
    })
    local c = helpers.client(emu)
    local pages = c:get_paginator("search_image_sets"):paginate {
      datastoreId = ID, prefetch = true, PaginationConfig = { PageSize = 5 } }
    local first = pages()
    assert.are.equal(5, #first.imageSetsMetadataSummaries)
    local ok, err = pcall(pages)
    assert.is_false(ok)
    assert.are.equal("ValidationException", err.code)
    assert.is_string(err.resume_token)
    local resumed = {}
    for s in c:get_paginator("search_image_sets"):paginate {
      datastoreId = ID, PaginationConfig = { PageSize = 5, StartingToken = err.resume_token } }:items() do
      resumed[#resumed + 1] = s.imageSetId
    end
    local plain = ids_of(c, false, 5)
    assert.are.equal(#plain - 5, #resumed)
    assert.are.equal(plain[6], resumed[1])
  end)

  it("recovers from a connection dropped under a prefetched request", function()
    local plain = ids_of(helpers.client(emu), false, 5)
    helpers.control(emu, "POST", "/_local/faults", {
      { kind = "delay", ms = 1, times = 1 },
      { kind = "drop", times = 1 },
    })
    assert.are.same(plain, ids_of(helpers.client(emu, { sleep = function() end }), true, 5))
  end)
end)

describe("prefetch when the client is closed mid-iteration", function()
  it("sends the abandoned request again on a new connection, losing nothing", function()
    local plain = ids_of(helpers.client(emu), false, 5)
    local c = helpers.client(emu)
    local ids = {}
    for s in c:get_paginator("search_image_sets"):paginate {
      datastoreId = ID, prefetch = true, PaginationConfig = { PageSize = 5 },
    }:items() do
      ids[#ids + 1] = s.imageSetId
      if #ids == 7 then c:close() end
    end
    assert.are.same(plain, ids)
  end)
end)

describe("a pages object after it ended", function()
  it("raises the same PaginationError again instead of looking complete", function()
    local hi = require "healthimaging"
    local body = '{"imageSetsMetadataSummaries":[{"imageSetId":"a"}],"nextToken":"same"}'
    local stub = helpers.stub_transport(function() return 200, {}, body end)
    local c = assert(hi.client { region = "us-east-1", credentials = helpers.CREDENTIALS, transport = stub })
    local pages = c:get_paginator("search_image_sets"):paginate { datastoreId = ID,
      PaginationConfig = { StartingToken = "same" } }
    local ok1, e1 = pcall(pages.build_full_result, pages)
    local ok2, e2 = pcall(pages.build_full_result, pages)
    assert.is_false(ok1)
    assert.is_false(ok2)
    assert.are.equal("PaginationError", e1.code)
    assert.are.equal(e1, e2)
  end)

  it("stops its items() iterator at close(), mid-page", function()
    local c = helpers.client(emu)
    local pages = c:get_paginator("search_image_sets"):paginate {
      datastoreId = ID, PaginationConfig = { PageSize = 10 } }
    local n = 0
    for _ in pages:items() do
      n = n + 1
      if n == 3 then pages:close() end
    end
    assert.are.equal(3, n)
  end)

  it("raises a clear misuse error for pages.items() with a dot", function()
    local pages = helpers.client(emu):get_paginator("search_image_sets"):paginate { datastoreId = ID }
    assert.has_error(function() pages.items() end,
      "bad argument #1 to 'items' (healthimaging.pages expected; use pages:items)")
  end)
end)

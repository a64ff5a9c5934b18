-- The soak: a 2,000-page scan through the emulator with 10% of the requests
-- faulted (every kind the emulator has, picked by a seeded generator) ends
-- with exactly the item sequence of a clean scan: nothing lost, nothing
-- duplicated. The data store is synthetic, written here in the emulator's
-- data format; the expected order is also computed here, independently.
-- When a page still fails after the client's retries, the scan continues
-- with the same iterator; the numbers of the run are printed.
local helpers = require "helpers"
local core = require "healthimaging.core"

local DS = "soakdatastore0000000000000000001"
local SETS, PAGE_SIZE = 4000, 2             -- 2,000 pages
local PAGES = SETS // PAGE_SIZE
local SEED = 20240611
-- Every kind; delay twice: one the client waits for, one past its timeout.
local KINDS = { "throttle", "internal", "unavailable", "cut", "truncated", "malformed", "content_type",
                "drop", "reset", { kind = "delay", ms = 100 }, { kind = "delay", ms = 1300 } }
local ALL_KINDS = { "throttle", "internal", "unavailable", "cut", "truncated", "malformed", "content_type",
                    "drop", "reset", "delay" }
local TIMEOUT = 1
-- Two attempts a page (not the default three), so that retries run out on
-- about one page in a hundred and resuming the iterator is exercised too.
local MAX_ATTEMPTS = 2
-- Backoff waits are slept at 1/50 of their length: the soak checks what is
-- returned, not how long the client waits (05-client/retry_spec.lua does).
local SLEEP_SCALE = 1 / 50

-- Synthetic image sets: updatedAt repeats (every 500th set shares one), so
-- the order also depends on the tie-break by imageSetId.
local function synthetic()
  local sets = {}
  for i = 1, SETS do
    sets[i] = {
      imageSetId = string.format("%032x", i * 7919),
      version = 1 + i % 3,
      createdAt = 1.7e9 + i * 1.5,
      updatedAt = 1.7e9 + (i * 37 % 500) * 60 + 0.25,
      isPrimary = i % 5 ~= 0,
      storageTier = i % 7 == 0 and "ARCHIVE_INSTANT_ACCESS" or "FREQUENT_ACCESS",
      DICOMTags = { DICOMPatientId = "SOAK-" .. i % 97, DICOMSeriesNumber = i % 100, DICOMSeriesModality = "CT",
                    DICOMSeriesInstanceUID = "1.2.826.0.1.3680043.10.9." .. i },
    }
  end
  return sets
end

-- The service's default order: updatedAt DESC, ties by imageSetId ASC.
local function expected_ids(sets)
  local sorted = { table.unpack(sets) }
  table.sort(sorted, function(a, b)
    if a.updatedAt ~= b.updatedAt then return a.updatedAt > b.updatedAt end
    return a.imageSetId < b.imageSetId
  end)
  local ids = {}
  for i, s in ipairs(sorted) do ids[i] = s.imageSetId end
  return ids
end

local data_file, emu

setup(function()
  data_file = os.tmpname()
  helpers.write(data_file, core.json_encode { datastoreId = DS, imageSets = synthetic() })
  emu = helpers.start_emulator { data = data_file }
end)

teardown(function()
  if emu then emu.stop() end
  if data_file then os.remove(data_file) end
end)

local function stats() return helpers.stats(emu) end

local function paginate(c)
  return c:get_paginator("search_image_sets"):paginate {
    datastoreId = DS, PaginationConfig = { PageSize = PAGE_SIZE } }
end

describe("the soak", function()
  it("scans 2,000 pages with 10% injected faults of every kind and yields exactly the clean scan's items",
    function()
      local t0 = core.monotime()
      -- The clean scan, checked against the order computed here.
      local before = stats()
      local clean = {}
      for s in paginate(helpers.client(emu)):items() do clean[#clean + 1] = s end
      assert.are.equal(PAGES, stats().requests - before.requests)
      local clean_ids = {}
      for i, s in ipairs(clean) do clean_ids[i] = s.imageSetId end
      assert.are.same(expected_ids(synthetic()), clean_ids)

      -- The faulted scan.
      local status = helpers.control(emu, "POST", "/_local/faults",
        { kind = "mix", rate = 0.1, seed = SEED, kinds = KINDS })
      assert.are.equal(200, status)
      before = stats()
      local backoff, retries = 0, 0
      local c = helpers.client(emu, {
        timeout = TIMEOUT, max_attempts = MAX_ATTEMPTS,
        sleep = function(s) backoff = backoff + s; core.sleep(s * SLEEP_SCALE) end,
        debug = function(ev) if ev.type == "retry" then retries = retries + 1 end end,
      })
      local t1 = core.monotime()
      local next_item = paginate(c):items()
      local got, failed, failed_by_code = {}, 0, {}
      while true do
        local ok, item = pcall(next_item)
        if not ok then
          -- Retries ran out on this page: the error says where to resume,
          -- and calling the same iterator again asks for that page again.
          assert.is_table(item)
          assert.is_true(item.retryable, tostring(item))
          assert.is_string(item.resume_token)
          failed = failed + 1
          failed_by_code[item.code] = (failed_by_code[item.code] or 0) + 1
          assert.is_true(failed < 1000, "the scan does not progress")
        elseif item == nil then
          break
        else
          got[#got + 1] = item
        end
      end
      local scan_time = core.monotime() - t1
      local after = stats()
      helpers.control(emu, "DELETE", "/_local/faults")

      -- Exactly the clean scan: same length, same ids in the same order, same items.
      assert.are.equal(#clean, #got)
      local got_ids = {}
      for i, s in ipairs(got) do got_ids[i] = s.imageSetId end
      assert.are.same(clean_ids, got_ids)
      assert.is_true(helpers.same(clean, got))

      -- 10% of the requests were faulted, with every kind.
      local requests = after.requests - before.requests
      local injected = after.faultsInjected - before.faultsInjected
      local by_kind = {}
      for _, kind in ipairs(ALL_KINDS) do
        local n = (after.faultsByKind[kind] or 0) - (before.faultsByKind[kind] or 0)
        by_kind[#by_kind + 1] = string.format("%s %d", kind, n)
        assert.is_true(n > 0, kind .. " never injected")
      end
      assert.is_true(injected >= 0.07 * requests and injected <= 0.13 * requests,
        injected .. " faults in " .. requests .. " requests")
      assert.is_true(failed > 0, "no page ever outlasted its retries: the resume path was not exercised")
      local codes = {}
      for code, n in pairs(failed_by_code) do codes[#codes + 1] = string.format("%s %d", code, n) end
      table.sort(codes)
      print(string.format("\nsoak: %d pages, %d items, %d requests, %d faults injected (%s); "
        .. "%d client retries; %d iterator-level failures continued (%s); backoff asked %.1f s, slept %.1f s; "
        .. "faulted scan %.1f s, whole soak %.1f s", PAGES, #got, requests, injected, table.concat(by_kind, ", "),
        retries, failed, table.concat(codes, ", "), backoff, backoff * SLEEP_SCALE, scan_time, core.monotime() - t0))
    end)
end)

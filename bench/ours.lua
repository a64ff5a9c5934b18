-- bench/ours.lua: the healthimaging contender of `make bench`, run in its own
-- process by bench/run.py. argv: URL WORKLOAD [consumer seconds] [prefetch].
-- Prints one JSON line: what it saw (items, first and last id, the sum of
-- DICOMSeriesNumber) and its memory (VmRSS after the first page, VmHWM).
local url, workload, consumer, prefetch = arg[1], arg[2], tonumber(arg[3]) or 0, arg[4] == "prefetch"

local function status_kb(field)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

local hi = require "healthimaging"
local core = require "healthimaging.core"
local client = assert(hi.client {
  region = "us-east-1", endpoint_url = url,
  credentials = { access_key_id = "AKIDBENCH", secret_access_key = "bench-secret" },
})
local DATASTORE = "bench000000000000000000000000001"  -- 32 characters, [0-9a-z]

local n, first, last, series, rss_first = 0, nil, nil, 0, nil
local function see(s)
  n = n + 1
  if n == 1 then first = s.imageSetId end
  last = s.imageSetId
  series = series + s.DICOMTags.DICOMSeriesNumber
end

if workload == "first" then
  local res = assert(client:search_image_sets { datastoreId = DATASTORE })
  for _, s in ipairs(res.imageSetsMetadataSummaries) do see(s) end
  rss_first = status_kb("VmRSS")
elseif workload == "scan" then
  local pages = client:get_paginator("search_image_sets")
    :paginate { datastoreId = DATASTORE, prefetch = prefetch or nil }
  for s in pages:items() do
    see(s)
    if n == 1 then rss_first = status_kb("VmRSS") end
  end
elseif workload == "consumer" then
  local pages = client:get_paginator("search_image_sets")
    :paginate { datastoreId = DATASTORE, prefetch = prefetch or nil }
  for page in pages do
    for _, s in ipairs(page.imageSetsMetadataSummaries) do see(s) end
    if not rss_first then rss_first = status_kb("VmRSS") end
    core.sleep(consumer)
  end
else
  error("unknown workload " .. tostring(workload))
end

io.write(string.format('{"items":%d,"first":"%s","last":"%s","series_sum":%d,"rss_first_kb":%d,"hwm_kb":%d}\n',
  n, first, last, series, rss_first or 0, status_kb("VmHWM")))

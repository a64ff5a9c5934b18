-- bench/floor.lua: the floor of `make bench`: a bare Lua 5.4 loop of libcurl
-- keep-alive POSTs (bench/floor.c, which shares nothing with the library)
-- decoding each page with lua-cjson. No signing, no validation, no typing.
-- argv and output as bench/ours.lua.
local url, workload, consumer = arg[1], arg[2], tonumber(arg[3]) or 0

local function status_kb(field)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

local floor = require "bench_floor"
local cjson = require "cjson"
local DATASTORE = "bench000000000000000000000000001"
local base = url .. "/datastore/" .. DATASTORE .. "/searchImageSets"

local function escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local h = floor.new()
local n, first, last, series, rss_first = 0, nil, nil, 0, nil
local token
repeat
  local status, body = h:post(token and (base .. "?nextToken=" .. escape(token)) or base, "{}")
  assert(status == 200, body)
  local page = cjson.decode(body)
  for _, s in ipairs(page.imageSetsMetadataSummaries) do
    n = n + 1
    if n == 1 then first = s.imageSetId end
    last = s.imageSetId
    series = series + s.DICOMTags.DICOMSeriesNumber
  end
  if not rss_first then rss_first = status_kb("VmRSS") end
  if workload == "consumer" then floor.sleep(consumer) end
  token = page.nextToken
until workload == "first" or not token

io.write(string.format('{"items":%d,"first":"%s","last":"%s","series_sum":%d,"rss_first_kb":%d,"hwm_kb":%d}\n',
  n, first, last, series, rss_first or 0, status_kb("VmHWM")))

-- healthimaging.time: the few date formats the client reads and writes, by
-- calendar arithmetic in UTC (os.time would apply the local time zone):
-- ISO-8601 timestamps in requests, the HTTP Date header of responses (for
-- clock-skew correction) and SigV4's X-Amz-Date.

local tonumber = tonumber
local type = type
local floor = math.floor
local tointeger = math.tointeger
local match = string.match
local lower = string.lower
local os_date = os.date

local _M = {}

-- Days since 1970-01-01 of a proleptic Gregorian date (civil calendar
-- arithmetic; avoids os.time, which depends on the local time zone).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local DAYS_IN_MONTH = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

--[[
Parses an ISO-8601 date-time: YYYY-MM-DD, optionally followed by
THH:MM, THH:MM:SS or THH:MM:SS.fff, then Z, +HH:MM or -HH:MM (none
means UTC).
Returns: epoch seconds (a number) or nil.
]]
function _M.parse_iso8601(s)
  local y, mo, d, rest = match(s, "^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil end
  y, mo, d = tointeger(tonumber(y)), tointeger(tonumber(mo)), tointeger(tonumber(d))
  if mo < 1 or mo > 12 or d < 1 or d > DAYS_IN_MONTH[mo] then return nil end
  local secs = 0
  if rest ~= "" then
    local hh, mi, tail = match(rest, "^[Tt ](%d%d):(%d%d)(.*)$")
    if not hh then return nil end
    local ss, frac = 0, 0
    local s2, tail2 = match(tail, "^:(%d%d)(.*)$")
    if s2 then
      ss, tail = tonumber(s2), tail2
      local f, tail3 = match(tail, "^[.,](%d+)(.*)$")
      if f then frac, tail = tonumber("0." .. f), tail3 end
    end
    hh, mi = tonumber(hh), tonumber(mi)
    if hh > 23 or mi > 59 or ss > 60 then return nil end
    local offset
    if tail == "Z" or tail == "z" or tail == "" then
      offset = 0
    else
      local sign, oh, om = match(tail, "^([+-])(%d%d):?(%d%d)$")
      if not sign then return nil end
      offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "+" and 1 or -1)
    end
    secs = hh * 3600 + mi * 60 + ss + frac - offset
  end
  return days_from_civil(y, mo, d) * 86400 + secs
end

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6,
                 jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12 }

--[[
Parses an HTTP Date header in the IMF-fixdate form (RFC 9110 section 5.6.7),
e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
Returns: epoch seconds or nil.
]]
function _M.parse_http_date(s)
  if type(s) ~= "string" then return nil end
  local d, mon, y, hh, mi, ss = match(s, "^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  local m = mon and MONTHS[lower(mon)]
  if not m then return nil end
  d, y = tonumber(d), tonumber(y)
  if d < 1 or d > DAYS_IN_MONTH[m] then return nil end
  return days_from_civil(y, m, d) * 86400 + tonumber(hh) * 3600 + tonumber(mi) * 60 + tonumber(ss)
end

-- SigV4's X-Amz-Date (YYYYMMDDTHHMMSSZ) of epoch seconds.
function _M.amz_date(t)
  return os_date("!%Y%m%dT%H%M%SZ", floor(t))
end

return _M

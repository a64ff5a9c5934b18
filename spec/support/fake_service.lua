-- A stub SearchImageSets service over n image sets, for the paginator specs
-- (the transport seam is stubbed, never the network). Ids are the item's
-- number in 32 digits; tokens are "t+/=<offset>" so that percent-encoding
-- is exercised; every answer echoes a sort, as the service does when asked.
local _M = {}

function _M.item_id(i) return string.format("%032d", i) end

local function url_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- The offset a request asks for (0 for the first page).
function _M.offset_of(req)
  local tok = (req.url:match("%?(.*)$") or ""):match("nextToken=([^&]*)")
  return tok and tonumber(url_decode(tok):match("^t%+/=(%d+)$")) or 0
end

--[[
The answer function of a stub transport (helpers.stub_transport) over n
items; script[k], when given, replaces the answer to request k.
]]
function _M.answer(n, script)
  return function(req, k)
    if script and script[k] then return script[k](req) end
    local max = tonumber((req.url:match("%?(.*)$") or ""):match("maxResults=(%d+)")) or 50
    local offset = _M.offset_of(req)
    local items = {}
    for i = offset + 1, math.min(offset + max, n) do
      items[#items + 1] = string.format('{"imageSetId":"%s","version":1}', _M.item_id(i))
    end
    local next_part = ""
    if offset + max < n then next_part = string.format(',"nextToken":"t+/=%d"', offset + max) end
    return 200, { ["x-amzn-requestid"] = "req-" .. k },
      '{"imageSetsMetadataSummaries":[' .. table.concat(items, ",") .. ']'
      .. ',"sort":{"sortField":"createdAt","sortOrder":"ASC"}' .. next_part .. '}'
  end
end

return _M

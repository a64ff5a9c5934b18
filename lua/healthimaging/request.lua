-- healthimaging.request: serializes validated SearchImageSets parameters
-- into the restJson1 wire form (method, path, query string, JSON body).
-- The body IS the SearchCriteria object (the operation's payload member),
-- `{}` when there is none; query members appear only when given.

local core = require "healthimaging.core"
local model = require "healthimaging.model"
local errors = require "healthimaging.errors"

local gsub = string.gsub
local byte = string.byte
local format = string.format
local concat = table.concat

local _M = {}

local function percent(c)
  return format("%%%02X", byte(c))
end

--[[
Percent-encodes everything but the RFC 3986 unreserved characters, as the
JS SDK's extendedEncodeURIComponent does (space is %20, never '+').
Input: s, a string. Returns: the encoded string.
]]
function _M.uri_encode(s)
  return (gsub(s, "[^A-Za-z0-9%-%._~]", percent))
end

--[[
Builds the wire request of a validated parameter table.
Input: p, the output of validate.search_image_sets.
Returns: { method, path, query, body } or nil, err when the body cannot be
encoded.
]]
function _M.search_image_sets(p)
  local path = (gsub(model.OPERATION.path, "{datastoreId}", _M.uri_encode(p.datastoreId)))
  local q = {}
  if p.maxResults ~= nil then q[#q + 1] = "maxResults=" .. p.maxResults end
  if p.nextToken ~= nil then q[#q + 1] = "nextToken=" .. _M.uri_encode(p.nextToken) end
  local body, err = core.json_encode(p.searchCriteria or {})
  if not body then
    return nil, errors.new { code = "SerializationError", message = "cannot encode searchCriteria: " .. err }
  end
  return {
    method = model.OPERATION.method,
    path = path,
    query = concat(q, "&"),
    body = body,
  }
end

return _M

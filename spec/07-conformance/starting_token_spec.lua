-- A StartingToken means in Lua what it means in boto3: the same service
-- token is sent and the same number of items is dropped from the first
-- page, or both refuse the token. The oracle is botocore's own PageIterator
-- (Debian's python3-botocore) driven by a fake operation; the Lua paginator
-- runs over a stub transport. Regression cases of `make conformance`:
-- base64 wrapped by a line break, JSON that is not an object, several
-- "___" separators (docs/COMPATIBILITY.md).
local helpers = require "helpers"
local hi = require "healthimaging"
local cjson = require "cjson"
local token = require "healthimaging.token"

local ID = "0123456789abcdefghijklmnopqrstuv"
local ITEMS = 10

local function b64(s) return token.base64_encode(s) end

local RESUME = b64('{"nextToken": "x+/= y", "boto_truncate_amount": 3}')

-- Name -> StartingToken. Negative amounts ("T___-3") are left out on
-- purpose: boto3 slices from the end there, Lua refuses them.
local TOKENS = {
  { "a resume token", RESUME },
  { "a resume token wrapped by a line break", RESUME:sub(1, 12) .. "\n" .. RESUME:sub(13) },
  { "a resume token with spaces and CRLF", RESUME:sub(1, 4) .. " \r\n" .. RESUME:sub(5) },
  { "a resume token with bytes after its padding", b64('{"nextToken": "ab"}') .. "QUJD" },
  { "a resume token with a leading '='", "=" .. RESUME },
  { "a resume token without its padding", (b64('{"nextToken": "ab"}'):gsub("=+$", "")) },
  { "base64 of a JSON list", b64("[1]") },
  { "base64 of an empty JSON list", b64("[]") },
  { "base64 of an empty JSON object", b64("{}") },
  { "base64 of a JSON string", b64('"tok"') },
  { "base64 of a JSON number", b64("5") },
  { "base64 of JSON null", b64("null") },
  { "base64 of text that is not JSON", b64("not json") },
  { "base64 of bytes that are not UTF-8", b64("{\"nextToken\": \"\255\"}") },
  { "base64 JSON, nextToken null", b64('{"nextToken": null, "boto_truncate_amount": 2}') },
  { "base64 JSON, compact separators", b64('{"nextToken":"x","boto_truncate_amount":1}') },
  { "a raw service token", "t+/= raw" },
  { "TOKEN___N", "tok___4" },
  { "None___N", "None___2" },
  { "TOKEN___ with a non-numeric suffix", "tok___x" },
  { "TOKEN___ with an empty suffix", "tok___" },
  { "four underscores", "tok____3" },
  { "a suffix with a sign and blanks", "tok___ +3 " },
  { "a suffix with digit grouping", "tok___1_0" },
  { "a suffix with a doubled underscore", "tok___1__0" },
  { "an empty token part", "___2" },
  { "two ___ separators", "a___b___3" },
}

-- botocore: the nextToken its first request carries and how many of the
-- first page's items it keeps, or the name of the exception it raises.
local ORACLE = [[
import json, sys
import jmespath
from botocore.paginate import PageIterator
for line in sys.stdin:
    start = json.loads(line)
    sent = []
    def method(**kwargs):
        sent.append(kwargs.get("nextToken"))
        return {"items": list(range(%d))}
    pages = PageIterator(method, ["nextToken"], [jmespath.compile("nextToken")], None,
                         [jmespath.compile("items")], [], "maxResults", None, start, None, {})
    try:
        kept = [len(p["items"]) for p in pages]
        out = {"sent": sent[0], "kept": kept[0]}
        if sent[0] == "":  # a real client's validator refuses it: the model's min length is 1
            out = {"error": "ParamValidationError", "requests": 0}
    except Exception as exc:
        out = {"error": type(exc).__name__, "requests": len(sent)}
    print(json.dumps(out))
]]

local function boto3_outcomes()
  local lines = {}
  for i, t in ipairs(TOKENS) do lines[i] = cjson.encode(t[2]) end
  local out = helpers.python(ORACLE:format(ITEMS), table.concat(lines, "\n") .. "\n")
  local res = {}
  for line in out:gmatch("[^\n]+") do res[#res + 1] = cjson.decode(line) end
  return res
end

local function url_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- The Lua paginator's outcome, in the oracle's terms.
local function lua_outcome(start)
  local items = {}
  for i = 1, ITEMS do items[i] = string.format('{"imageSetId":"%032d"}', i) end
  local stub = helpers.stub_transport(function()
    return 200, {}, '{"imageSetsMetadataSummaries":[' .. table.concat(items, ",") .. "]}"
  end)
  local client = assert(hi.client { region = "us-east-1", credentials = helpers.CREDENTIALS, transport = stub })
  local pages = client:get_paginator("search_image_sets"):paginate {
    datastoreId = ID, PaginationConfig = { StartingToken = start } }
  local ok, page = pcall(pages)
  if not ok then return { error = page.code, requests = #stub.requests } end
  local query = stub.requests[1].url:match("%?(.*)$") or ""
  local sent = query:match("nextToken=([^&]*)")
  return { sent = sent and url_decode(sent) or cjson.null, kept = #page.imageSetsMetadataSummaries }
end

describe("a StartingToken, compared with botocore's PageIterator", function()
  local expected = boto3_outcomes()

  it("has an answer from botocore for every token", function()
    assert.are.equal(#TOKENS, #expected)
  end)

  for i, t in ipairs(TOKENS) do
    it("sends the same nextToken and drops the same items, or is refused, for " .. t[1], function()
      local want, got = expected[i], lua_outcome(t[2])
      if want.error then
        -- botocore raises before sending; Lua raises its ParamValidationError.
        assert.are.same({ error = "ParamValidationError", requests = want.requests },
          { error = got.error, requests = got.requests })
      else
        assert.is_nil(got.error)
        assert.are.same(want, got)
      end
    end)
  end
end)

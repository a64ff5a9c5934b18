-- The paginator follows boto3's PaginationConfig and resume tokens exactly.
-- A stub transport plays a service over a fixed list of image sets (the
-- transport seam is stubbed, never the network); tokens are checked against
-- Python's own json.dumps + base64, the format boto3 writes.
local helpers = require "helpers"
local hi = require "healthimaging"
local core = require "healthimaging.core"

local ID = "0123456789abcdefghijklmnopqrstuv"

local fake = require "support.fake_service"
local item_id = fake.item_id

-- A stub transport over n items; opts.script may replace the answer of request k.
local function fake_service(n, opts)
  return helpers.stub_transport(fake.answer(n, opts and opts.script))
end

local function client_for(stub)
  return assert(hi.client { region = "us-east-1", credentials = helpers.CREDENTIALS, transport = stub })
end

local function collect(pages)
  local ids = {}
  for s in pages:items() do ids[#ids + 1] = s.imageSetId end
  return ids
end

local function range_ids(a, b)
  local t = {}
  for i = a, b do t[#t + 1] = item_id(i) end
  return t
end

-- boto3's token: base64 of json.dumps of the dict, computed by Python.
local function python_tokens(list)
  local lines = {}
  for _, e in ipairs(list) do lines[#lines + 1] = core.json_encode(e) end
  local out = helpers.python([[
import sys, json, base64
for line in sys.stdin:
    e = json.loads(line)
    d = {"nextToken": e.get("next")}
    if "amount" in e:
        d["boto_truncate_amount"] = e["amount"]
    print(base64.b64encode(json.dumps(d).encode("utf-8")).decode("utf-8"))
]], table.concat(lines, "\n") .. "\n")
  local tokens = {}
  for l in out:gmatch("[^\n]+") do tokens[#tokens + 1] = l end
  return tokens
end

describe("the search_image_sets paginator", function()
  it("yields every page until the service stops sending a token", function()
    local stub = fake_service(120)
    local pages = client_for(stub):get_paginator("search_image_sets"):paginate { datastoreId = ID }
    local n, count = 0, 0
    for page in pages do
      n = n + 1
      count = count + #page.imageSetsMetadataSummaries
    end
    assert.are.equal(3, n)
    assert.are.equal(120, count)
    assert.is_nil(pages.resume_token)
    assert.are.equal(3, #stub.requests)
  end)

  it("sends PageSize as maxResults and follows nextToken, encoded once", function()
    local stub = fake_service(10)
    collect(client_for(stub):get_paginator("search_image_sets"):paginate {
      datastoreId = ID, PaginationConfig = { PageSize = 4 } })
    assert.are.equal(3, #stub.requests)
    assert.are.equal("maxResults=4", stub.requests[1].url:match("%?(.*)$"))
    assert.are.equal("maxResults=4&nextToken=t%2B%2F%3D4", stub.requests[2].url:match("%?(.*)$"))
  end)

  it("is also found under the model's name SearchImageSets", function()
    local ids = collect(client_for(fake_service(3)):get_paginator("SearchImageSets"):paginate { datastoreId = ID })
    assert.are.same(range_ids(1, 3), ids)
  end)

  it("truncates mid-page at MaxItems and sets boto3's resume token", function()
    local stub = fake_service(100)
    local pages = client_for(stub):get_paginator("search_image_sets"):paginate {
      datastoreId = ID, PaginationConfig = { MaxItems = 7, PageSize = 5 } }
    assert.are.same(range_ids(1, 7), collect(pages))
    local expected = python_tokens { { next = "t+/=5", amount = 2 } }
    assert.are.equal(expected[1], pages.resume_token)
    assert.are.equal(2, #stub.requests)
  end)

  it("writes a null nextToken when the very first page is truncated, as boto3 does", function()
    local pages = client_for(fake_service(100)):get_paginator("search_image_sets"):paginate {
      datastoreId = ID, PaginationConfig = { MaxItems = 3 } }
    assert.are.equal(3, #collect(pages))
    assert.are.equal(python_tokens { { amount = 3 } }[1], pages.resume_token)
  end)

  it("on a page boundary, resumes with the service token alone", function()
    local pages = client_for(fake_service(100)):get_paginator("search_image_sets"):paginate {
      datastoreId = ID, PaginationConfig = { MaxItems = 10, PageSize = 5 } }
    assert.are.equal(10, #collect(pages))
    assert.are.equal(python_tokens { { next = "t+/=10" } }[1], pages.resume_token)
  end)

  it("resumes exactly after the last item returned, for any MaxItems and PageSize", function()
    for _, page_size in ipairs { 1, 3, 50 } do
      for _, max_items in ipairs { 1, 7, 49, 50, 51 } do
        local p = client_for(fake_service(130)):get_paginator("search_image_sets")
        local all, start = {}, nil
        for _ = 1, 200 do
          local pages = p:paginate { datastoreId = ID,
            PaginationConfig = { MaxItems = max_items, PageSize = page_size, StartingToken = start } }
          for _, v in ipairs(collect(pages)) do all[#all + 1] = v end
          start = pages.resume_token
          if not start then break end
        end
        assert.are.same(range_ids(1, 130), all)
      end
    end
  end)

  it("accepts a starting token written by Python (boto3's format)", function()
    local tok = python_tokens { { next = "t+/=5", amount = 2 } }[1]
    local ids = collect(client_for(fake_service(12)):get_paginator("search_image_sets"):paginate {
      datastoreId = ID, PaginationConfig = { StartingToken = tok, PageSize = 5 } })
    assert.are.same(range_ids(8, 12), ids)
  end)

  it("accepts a raw service token as starting token", function()
    local ids = collect(client_for(fake_service(12)):get_paginator("search_image_sets"):paginate {
      datastoreId = ID, PaginationConfig = { StartingToken = "t+/=10" } })
    assert.are.same(range_ids(11, 12), ids)
  end)

  it("does not stop at an empty page that carries a token", function()
    local stub = fake_service(6, { script = {
      [1] = function() return 200, {}, '{"imageSetsMetadataSummaries":[],"nextToken":"t+/=0"}' end,
    } })
    local ids = collect(client_for(stub):get_paginator("search_image_sets"):paginate { datastoreId = ID })
    assert.are.same(range_ids(1, 6), ids)
  end)

  it("stops at an empty token", function()
    local stub = fake_service(6, { script = {
      [1] = function() return 200, {}, '{"imageSetsMetadataSummaries":[{"imageSetId":"a"}],"nextToken":""}' end,
    } })
    local ids = collect(client_for(stub):get_paginator("search_image_sets"):paginate { datastoreId = ID })
    assert.are.same({ "a" }, ids)
    assert.are.equal(1, #stub.requests)
  end)

  it("raises a PaginationError when the service repeats a token, even in a cycle", function()
    local body = function(tok)
      return function() return 200, {}, '{"imageSetsMetadataSummaries":[],"nextToken":"' .. tok .. '"}' end
    end
    local stub = fake_service(0, { script = { body("A"), body("B"), body("A"), body("C") } })
    local pages = client_for(stub):get_paginator("search_image_sets"):paginate { datastoreId = ID }
    local ok, err = pcall(function() for _ in pages do end end)
    assert.is_false(ok)
    assert.are.equal("PaginationError", err.code)
    assert.is_true(hi.is_error(err))
    assert.are.equal(3, #stub.requests)
  end)

  it("raises the error object of a failed page, whole, with the resume token of that page", function()
    local stub = fake_service(100, { script = {
      [2] = function()
        return 404, { ["x-amzn-errortype"] = "ResourceNotFoundException:http://x/", ["x-amzn-requestid"] = "r-2" },
          '{"message":"Datastore not found"}'
      end,
    } })
    local c = assert(hi.client { region = "us-east-1", credentials = helpers.CREDENTIALS, transport = stub,
                                 max_attempts = 1 })
    local pages = c:get_paginator("search_image_sets"):paginate {
      datastoreId = ID, PaginationConfig = { PageSize = 10 } }
    local seen = {}
    local items = pages:items()
    local ok, err = pcall(function() for s in items do seen[#seen + 1] = s.imageSetId end end)
    assert.is_false(ok)
    assert.are.same(range_ids(1, 10), seen)
    assert.are.equal("ResourceNotFoundException", err.code)
    assert.are.equal(404, err.status)
    assert.are.equal("r-2", err.request_id)
    assert.are.equal(python_tokens { { next = "t+/=10" } }[1], err.resume_token)

    -- a new iteration started from the token goes on from that page
    local again = collect(c:get_paginator("search_image_sets"):paginate {
      datastoreId = ID, PaginationConfig = { PageSize = 10, StartingToken = err.resume_token } })
    assert.are.same(range_ids(11, 100), again)

    -- and so does the same iterator, when called again
    for s in items do seen[#seen + 1] = s.imageSetId end
    assert.are.same(range_ids(1, 100), seen)
  end)

  it("gives a failed first page of a resumed iteration the token it was resumed with", function()
    local tok = python_tokens { { next = "t+/=5", amount = 2 } }[1]
    local stub = fake_service(20, { script = { [1] = function() return 500, {}, "{}" end } })
    local c = assert(hi.client { region = "us-east-1", credentials = helpers.CREDENTIALS, transport = stub,
                                 max_attempts = 1 })
    local pages = c:get_paginator("search_image_sets"):paginate {
      datastoreId = ID, PaginationConfig = { PageSize = 5, StartingToken = tok } }
    local ok, err = pcall(pages)
    assert.is_false(ok)
    assert.are.equal(500, err.status)
    assert.are.equal(tok, err.resume_token)
    assert.are.same(range_ids(8, 20), collect(pages))
  end)

  it("stops with a PaginationError after max_pages pages", function()
    local stub = fake_service(100)
    local pages = client_for(stub):get_paginator("search_image_sets", { max_pages = 3 }):paginate {
      datastoreId = ID, PaginationConfig = { PageSize = 10 } }
    local n = 0
    local ok, err = pcall(function() for _ in pages do n = n + 1 end end)
    assert.is_false(ok)
    assert.are.equal("PaginationError", err.code)
    assert.are.equal(3, n)
    assert.are.equal(3, #stub.requests)
  end)

  it("raises a validation error for a bad PaginationConfig before sending anything", function()
    local bad = {
      { { MaxItems = 0 }, "PaginationConfig.MaxItems" },
      { { MaxItems = 1.5 }, "PaginationConfig.MaxItems" },
      { { PageSize = 51 }, "PaginationConfig.PageSize" },
      { { Pagesize = 5 }, "PaginationConfig.Pagesize" },
      { { StartingToken = 5 }, "PaginationConfig.StartingToken" },
      { "all", "PaginationConfig" },
    }
    for _, case in ipairs(bad) do
      local stub = fake_service(10)
      local pages = client_for(stub):get_paginator("search_image_sets"):paginate {
        datastoreId = ID, PaginationConfig = case[1] }
      local ok, err = pcall(pages)
      assert.is_false(ok)
      assert.are.equal("ParamValidationError", err.code)
      assert.are.equal(case[2], err.path)
      assert.are.equal(0, #stub.requests)
    end
  end)

  it("raises a validation error for bad search parameters before sending anything", function()
    local stub = fake_service(10)
    local pages = client_for(stub):get_paginator("search_image_sets"):paginate { datastoreId = "short" }
    local ok, err = pcall(function() for _ in pages do end end)
    assert.is_false(ok)
    assert.are.equal("datastoreId", err.path)
    assert.are.equal(0, #stub.requests)
  end)

  it("builds the full result as boto3: the items, sort from the first page, and NextToken", function()
    local full = client_for(fake_service(30)):get_paginator("search_image_sets"):paginate {
      datastoreId = ID, PaginationConfig = { MaxItems = 12, PageSize = 5 } }:build_full_result()
    assert.are.equal(12, #full.imageSetsMetadataSummaries)
    assert.are.same({ sortField = "createdAt", sortOrder = "ASC" }, full.sort)
    assert.are.equal(python_tokens { { next = "t+/=10", amount = 2 } }[1], full.NextToken)
    local whole = client_for(fake_service(30)):get_paginator("search_image_sets"):paginate {
      datastoreId = ID }:build_full_result()
    assert.are.equal(30, #whole.imageSetsMetadataSummaries)
    assert.is_nil(whole.NextToken)
  end)

  it("lets a transport's own yields pass through to the host's scheduler", function()
    local inner = fake_service(9)
    local yielding = { requests = inner.requests }
    function yielding.request(_, req)
      local answer = coroutine.yield("waiting for socket")
      assert.are.equal("socket ready", answer)
      return inner:request(req)
    end
    local pages = client_for(yielding):get_paginator("search_image_sets"):paginate {
      datastoreId = ID, PaginationConfig = { PageSize = 4 } }
    local host = coroutine.wrap(function()
      local ids = collect(pages)
      return "done", ids
    end)
    local waits, what, ids = 0, host()
    while what == "waiting for socket" do
      waits = waits + 1
      what, ids = host("socket ready")
    end
    assert.are.equal("done", what)
    assert.are.equal(3, waits)
    assert.are.same(range_ids(1, 9), ids)
  end)

  it("raises at once on misuse", function()
    local p = client_for(fake_service(1)):get_paginator("search_image_sets")
    assert.has_error(function() p:paginate("x") end, "bad argument #1 to 'paginate' (table expected, got string)")
    local c = client_for(fake_service(1))
    assert.has_error(function() c:get_paginator("list_datastores") end,
      "bad argument #1 to 'get_paginator' (no paginator named 'list_datastores'; this client has 'search_image_sets')")
  end)
end)

-- The paginator's opt-in prefetch: the request for page k+1 is started
-- before page k is handed to the consumer, on a transport that can start a
-- request and finish it later. A stub transport with that API (start,
-- finish, cancel, as the libcurl one has) records the order of events; the
-- transport seam is stubbed, never the network.
local helpers = require "helpers"
local hi = require "healthimaging"
local token = require "healthimaging.token"

local ID = "0123456789abcdefghijklmnopqrstuv"

local fake = require "support.fake_service"
local item_id, offset_of, service = fake.item_id, fake.offset_of, fake.answer

--[[
A stub transport with the asynchronous API of the libcurl one: start(req)
returns a ticket, finish(ticket) the answer, cancel(ticket) abandons it; one
request in flight at a time, and a new start abandons the one in flight.
events lists "start @offset", "finish @offset" and "cancel @offset".
]]
local function async_stub(n, script)
  local answer = service(n, script)
  local t = { requests = {}, events = {}, finished = 0 }
  local pending
  function t.start(self, req)
    self.requests[#self.requests + 1] = req
    pending = { ticket = #self.requests, req = req }
    self.events[#self.events + 1] = "start @" .. offset_of(req)
    return pending.ticket
  end
  function t.finish(self, ticket)
    if not pending or pending.ticket ~= ticket then
      return nil, { code = "RequestAbandoned", message = "no longer in flight", retryable = true }
    end
    local p = pending
    pending = nil
    self.finished = self.finished + 1
    self.events[#self.events + 1] = "finish @" .. offset_of(p.req)
    return answer(p.req, p.ticket)
  end
  function t.cancel(self, ticket)
    if not pending or (ticket and pending.ticket ~= ticket) then return false end
    self.events[#self.events + 1] = "cancel @" .. offset_of(pending.req)
    pending = nil
    return true
  end
  function t.request(self, req)
    return self:finish(self:start(req))
  end
  return t
end

local function client_for(stub, extra)
  local opts = { region = "us-east-1", credentials = helpers.CREDENTIALS, transport = stub,
                 sleep = function() end }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(hi.client(opts))
end

local function collect(pages)
  local ids = {}
  for s in pages:items() do ids[#ids + 1] = s.imageSetId end
  return ids
end

describe("prefetch = true on the paginator", function()
  it("yields exactly the same items as without prefetch, for any MaxItems, PageSize and StartingToken", function()
    local cases = {
      {}, { PageSize = 7 }, { PageSize = 50 }, { MaxItems = 1 }, { MaxItems = 49, PageSize = 7 },
      { MaxItems = 50 }, { MaxItems = 51, PageSize = 10 }, { StartingToken = "t+/=30", PageSize = 9 },
      { StartingToken = token.encode("t+/=10", 3), PageSize = 10, MaxItems = 44 },
    }
    for i, pc in ipairs(cases) do
      local plain = client_for(async_stub(130)):get_paginator("search_image_sets")
        :paginate { datastoreId = ID, PaginationConfig = pc }
      local fetched = client_for(async_stub(130)):get_paginator("search_image_sets")
        :paginate { datastoreId = ID, PaginationConfig = pc, prefetch = true }
      local a, b = collect(plain), collect(fetched)
      assert.is_true(#a > 0, "case " .. i)
      assert.are.same(a, b, "case " .. i)
      assert.are.equal(plain.resume_token, fetched.resume_token, "case " .. i)
    end
  end)

  it("starts the request for page k+1 before page k reaches the consumer", function()
    local stub = async_stub(120)
    local pages = client_for(stub):get_paginator("search_image_sets"):paginate { datastoreId = ID, prefetch = true }
    for page in pages do
      stub.events[#stub.events + 1] = "consume " .. #page.imageSetsMetadataSummaries
    end
    assert.are.same({
      "start @0", "finish @0", "start @50", "consume 50",
      "finish @50", "start @100", "consume 50",
      "finish @100", "consume 20",
    }, stub.events)
  end)

  it("is also an option of get_paginator, which paginate can turn off", function()
    local stub = async_stub(120)
    local p = client_for(stub):get_paginator("search_image_sets", { prefetch = true })
    local pages = p:paginate { datastoreId = ID }
    pages()
    assert.are.equal(2, #stub.requests)
    stub = async_stub(120)
    p = client_for(stub):get_paginator("search_image_sets", { prefetch = true })
    p:paginate { datastoreId = ID, prefetch = false }()
    assert.are.equal(1, #stub.requests)
  end)

  it("costs exactly one request beyond the pages consumed when the consumer stops early", function()
    local stub = async_stub(500)
    for s in client_for(stub):get_paginator("search_image_sets")
        :paginate({ datastoreId = ID, prefetch = true }):items() do
      if s.imageSetId == item_id(60) then break end
    end
    assert.are.equal(3, #stub.requests)   -- pages 1 and 2 consumed, page 3 in flight
    assert.are.equal(2, stub.finished)
  end)

  it("requests nothing past MaxItems", function()
    for _, case in ipairs { { 50, 50, 1 }, { 60, 50, 2 }, { 100, 50, 2 }, { 7, 5, 2 } } do
      local stub = async_stub(500)
      local pages = client_for(stub):get_paginator("search_image_sets"):paginate {
        datastoreId = ID, prefetch = true, PaginationConfig = { MaxItems = case[1], PageSize = case[2] } }
      assert.are.equal(case[1], #collect(pages))
      assert.are.equal(case[3], #stub.requests, "MaxItems " .. case[1])
    end
  end)

  it("retries a prefetched page that failed with the client's retry loop", function()
    local stub = async_stub(120, {
      [2] = function() return 500, { ["x-amzn-errortype"] = "InternalServerException" }, '{"message":"boom"}' end,
    })
    local ids = collect(client_for(stub):get_paginator("search_image_sets")
      :paginate { datastoreId = ID, prefetch = true })
    assert.are.equal(120, #ids)
    assert.are.equal(item_id(120), ids[120])
    assert.are.equal(4, #stub.requests)
    assert.are.equal(50, offset_of(stub.requests[3]))   -- the retry asks for the same page
  end)

  it("raises a prefetched page's lasting error at that page, with its resume token; a new call retries it", function()
    local stub = async_stub(120, {
      [2] = function()
        return 400, { ["x-amzn-errortype"] = "ValidationException", ["x-amzn-requestid"] = "r-2" }, '{"message":"no"}'
      end,
    })
    local pages = client_for(stub):get_paginator("search_image_sets"):paginate { datastoreId = ID, prefetch = true }
    assert.are.equal(50, #pages().imageSetsMetadataSummaries)
    local ok, err = pcall(pages)
    assert.is_false(ok)
    assert.are.equal("ValidationException", err.code)
    assert.are.equal("r-2", err.request_id)
    assert.are.equal(token.encode("t+/=50"), err.resume_token)
    local n = 0
    for page in pages do n = n + #page.imageSetsMetadataSummaries end
    assert.are.equal(70, n)
  end)

  it("does not prefetch with a transport that has no start/finish", function()
    local plain = helpers.stub_transport(service(120))
    local pages = client_for(plain):get_paginator("search_image_sets"):paginate { datastoreId = ID, prefetch = true }
    pages()
    assert.are.equal(1, #plain.requests)
    local n = 50
    for page in pages do n = n + #page.imageSetsMetadataSummaries end
    assert.are.equal(120, n)
  end)

  it("sends a prefetched request again when another request on the client replaced it", function()
    local stub = async_stub(120)
    local c = client_for(stub)
    local pages = c:get_paginator("search_image_sets"):paginate { datastoreId = ID, prefetch = true }
    local first = pages()
    assert.is_table(assert(c:search_image_sets { datastoreId = ID, maxResults = 1 }))
    local ids = {}
    for _, s in ipairs(first.imageSetsMetadataSummaries) do ids[#ids + 1] = s.imageSetId end
    for page in pages do
      for _, s in ipairs(page.imageSetsMetadataSummaries) do ids[#ids + 1] = s.imageSetId end
    end
    assert.are.equal(120, #ids)
    assert.are.equal(item_id(51), ids[51])
  end)

  it("pages:close() ends the iteration and abandons the request in flight", function()
    local stub = async_stub(500)
    local pages = client_for(stub):get_paginator("search_image_sets"):paginate { datastoreId = ID, prefetch = true }
    pages()
    pages:close()
    assert.are.equal("cancel @50", stub.events[#stub.events])
    assert.is_nil(pages())
    assert.are.equal(2, #stub.requests)
  end)

  it("refuses a prefetch that is not a boolean", function()
    local c = client_for(async_stub(1))
    assert.has.error(function() c:get_paginator("search_image_sets"):paginate { datastoreId = ID, prefetch = 1 } end,
      "bad argument #1 to 'paginate' (field 'prefetch' must be a boolean)")
    assert.has.error(function() c:get_paginator("search_image_sets", { prefetch = "yes" }) end,
      "bad argument #2 to 'get_paginator' (prefetch must be a boolean)")
  end)
end)

-- healthimaging.paginator: boto3's paginator for SearchImageSets, driven by a
-- coroutine. PaginationConfig (MaxItems, PageSize, StartingToken) and the
-- resume token follow boto3 exactly, so tokens move between Python and Lua.
-- The coroutine marks its own yields; any other yield (a non-blocking
-- transport giving way to its scheduler) passes through to the host.
-- With prefetch, the request for page k+1 is started before page k is handed
-- over, in a second coroutine, on a transport that can start a request and
-- finish it later (start/finish, as the libcurl one).

local model = require "healthimaging.model"
local errors = require "healthimaging.errors"
local validate = require "healthimaging.validate"
local token = require "healthimaging.token"

local type = type
local tostring = tostring
local find = string.find
local pairs = pairs
local ipairs = ipairs
local error = error
local setmetatable = setmetatable
local getmetatable = getmetatable
local tointeger = math.tointeger
local create = coroutine.create
local resume = coroutine.resume
local yield = coroutine.yield
local costatus = coroutine.status
local running = coroutine.running
local pack = table.pack
local unpack = table.unpack

local P = model.PAGINATOR
local RESULT_KEY = P.result_key

local _M = {}

local paginator_mt = { __name = "healthimaging.paginator" }
paginator_mt.__index = paginator_mt

local Pages = {}
local pages_mt = { __index = Pages, __name = "healthimaging.pages" }

-- The paginator's own yields carry one of these markers first: a page, or
-- the error of a page that failed (the coroutine stays alive to retry it).
local PAGE = setmetatable({}, { __name = "healthimaging.paginator.PAGE" })
local FAILED = setmetatable({}, { __name = "healthimaging.paginator.FAILED" })
-- Yielded by a prefetch coroutine once its request is on the wire.
local STARTED = setmetatable({}, { __name = "healthimaging.paginator.STARTED" })

-- The prefetch coroutines that are alive, each to its job (the transport
-- and ticket of its request in flight); weak, so an abandoned one goes.
local prefetching = setmetatable({}, { __mode = "k" })

-- Pages an iteration may request before it stops with a PaginationError: a
-- guard against a service that never stops sending new tokens.
_M.DEFAULT_MAX_PAGES = 1000000

local PAGINATION_KEYS = { MaxItems = true, PageSize = true, StartingToken = true }

local fail = errors.validation

local function positive_integer(v, path, max)
  local i = type(v) == "number" and tointeger(v) or nil
  if not i or i < 1 or (max and i > max) then
    return nil, fail(path, "must be an integer from 1" .. (max and (" to " .. max) or " up"))
  end
  return i
end

-- Checks PaginationConfig and returns { max_items, page_size, next_token, truncate } or nil, err.
local function read_pagination_config(pc)
  local out = { truncate = 0 }
  if pc == nil then return out end
  if type(pc) ~= "table" then
    return nil, fail("PaginationConfig", "must be a table, got " .. type(pc))
  end
  for k in pairs(pc) do
    if not PAGINATION_KEYS[k] then
      local name = type(k) == "string" and k or ("<" .. type(k) .. ">")
      return nil, fail("PaginationConfig." .. name, "is not one of MaxItems, PageSize, StartingToken")
    end
  end
  local err
  if pc.MaxItems ~= nil then
    out.max_items, err = positive_integer(pc.MaxItems, "PaginationConfig.MaxItems")
    if err then return nil, err end
  end
  if pc.PageSize ~= nil then
    out.page_size, err = positive_integer(pc.PageSize, "PaginationConfig.PageSize",
      model.SHAPES.MaxResults.max)
    if err then return nil, err end
  end
  if pc.StartingToken ~= nil then
    if type(pc.StartingToken) ~= "string" or pc.StartingToken == "" then
      return nil, fail("PaginationConfig.StartingToken", "must be a non-empty string")
    end
    local nt, amount, msg = token.decode(pc.StartingToken)
    if msg then return nil, fail("PaginationConfig.StartingToken", msg) end
    out.starting, out.next_token, out.truncate = true, nt, amount
  end
  return out
end

--[[
Makes a paginator. opts.max_pages caps the pages of one iteration
(default DEFAULT_MAX_PAGES); opts.prefetch = true makes each iteration
request the next page while the consumer handles the current one.
]]
function _M.new(client, opts)
  local max_pages = opts and opts.max_pages or _M.DEFAULT_MAX_PAGES
  local prefetch = opts and opts.prefetch
  if prefetch ~= nil and type(prefetch) ~= "boolean" then
    error("bad argument #2 to 'get_paginator' (prefetch must be a boolean)", 3)
  end
  return setmetatable({ client = client, max_pages = max_pages, prefetch = prefetch == true }, paginator_mt)
end

--[[
How the client hands a request to its transport; get_transport() returns
the client's current one. Inside a prefetch coroutine, with a transport that
has start and finish, the request is started, the coroutine yields STARTED,
and the answer is collected when the paginator resumes it (the consumer
wants the page). A request abandoned meanwhile (replaced by another one on
the same transport, or its transport closed by client:close()) is simply
sent again, on the client's transport of that moment. Everywhere else:
t:request(req).
]]
function _M.send(get_transport, req)
  local t = get_transport()
  local job = prefetching[running()]
  if not (job and t.start and t.finish) then return t:request(req) end
  local ticket = t:start(req)
  job.transport, job.ticket = t, ticket
  yield(STARTED)
  job.ticket = nil
  local ok, status, headers, body = pcall(t.finish, t, ticket)
  if not ok then
    if not find(tostring(status), "transport is closed", 1, true) then error(status, 0) end
    return get_transport():request(req)
  end
  if status == nil and type(headers) == "table" and headers.code == "RequestAbandoned" then
    return get_transport():request(req)
  end
  return status, headers, body
end

--[[
Starts an iteration.
Input: params = the SearchImageSets parameters plus an optional
PaginationConfig = { MaxItems, PageSize, StartingToken }.
Returns: a pages object: call it (or use it in a generic for) for the next
page; :items() iterates the image-set summaries; :build_full_result()
collects everything. Invalid input is reported by raising the
ParamValidationError on the first step, before anything is sent.
]]
function paginator_mt:paginate(params)
  if getmetatable(self) ~= paginator_mt then
    error("bad argument #1 to 'paginate' (healthimaging.paginator expected; use paginator:paginate)", 2)
  end
  if type(params) ~= "table" then
    error("bad argument #1 to 'paginate' (table expected, got " .. type(params) .. ")", 2)
  end
  local prefetch = self.prefetch
  if params.prefetch ~= nil then
    if type(params.prefetch) ~= "boolean" then
      error("bad argument #1 to 'paginate' (field 'prefetch' must be a boolean)", 2)
    end
    prefetch = params.prefetch
  end
  local kwargs = {}
  for k, v in pairs(params) do
    if k ~= "PaginationConfig" and k ~= "prefetch" then kwargs[k] = v end
  end
  local pages = setmetatable({ client = self.client, kwargs = kwargs, max_pages = self.max_pages }, pages_mt)
  -- A transport given by the caller prefetches only if it can start a
  -- request and finish it later; the libcurl one can.
  local t = self.client.opts and self.client.opts.transport
  pages._prefetch = prefetch and (t == nil or (t.start ~= nil and t.finish ~= nil))
  -- No raise may escape as a bare string: anything unexpected while reading
  -- the input becomes the error object the first step raises.
  local ok, cfg, err = pcall(function()
    local c, e = read_pagination_config(params.PaginationConfig)
    if c then
      if c.page_size then kwargs[P.limit_key] = c.page_size end
      if c.starting then kwargs[P.input_token] = c.next_token end
      local _
      _, e = validate.search_image_sets(kwargs)
    end
    return c, e
  end)
  if not ok then cfg, err = nil, errors.from_raise(cfg) end
  pages._cfg, pages._err = cfg, err
  return pages
end

-- Removes the first n items of a page (the part a resume token says was
-- already returned).
local function drop_first(list, n)
  local out = {}
  for i = n + 1, #list do out[#out + 1] = list[i] end
  return out
end

local function keep_first(list, n)
  local out = {}
  for i = 1, n do out[i] = list[i] end
  return out
end

local function fatal(message)
  error(errors.new { code = "PaginationError", message = message }, 0)
end

--[[
Starts the search for kwargs in a prefetch coroutine, which runs until its
request is on the wire (or it is over). Returns the job that await() takes.
Runs inside the paginator's coroutine; foreign yields pass up.
]]
local function launch(self, kwargs)
  local client = self.client
  local job = {}
  job.co = create(function() return client:search_image_sets(kwargs) end)
  prefetching[job.co] = job
  local r = pack(resume(job.co))
  while r[1] and costatus(job.co) ~= "dead" and r[2] ~= STARTED do
    r = pack(resume(job.co, yield(unpack(r, 2, r.n))))
  end
  job.r = r
  self._job = job
  return job
end

-- Waits for a launched search: its res, or nil, err. Foreign yields pass up.
local function await(self, job)
  local r = job.r
  while r[1] and costatus(job.co) ~= "dead" do
    if r[2] == STARTED then
      r = pack(resume(job.co))
    else
      r = pack(resume(job.co, yield(unpack(r, 2, r.n))))
    end
  end
  prefetching[job.co] = nil
  self._job = nil
  if not r[1] then error(r[2], 0) end
  return r[2], r[3]
end

--[[
Requests one page (or takes the prefetched one, job). A failure is handed
to the consumer with the resume token of exactly this page (where a new
iteration would start it again); when the consumer calls again, the same
page is requested again, without prefetch.
]]
local function fetch(self, kwargs, current, truncate, job)
  while true do
    local res, err
    if job then
      res, err = await(self, job)
      job = nil
    else
      res, err = self.client:search_image_sets(kwargs)
    end
    if res then return res end
    if err.code == "ParamValidationError" then error(err, 0) end
    err.resume_token = token.encode(current, truncate > 0 and truncate or nil)
    yield(FAILED, err)
  end
end

--[[
The body of the coroutine: boto3's PageIterator.__iter__, page by page.
Runs inside the coroutine; raises only for errors that end the iteration.
]]
local function produce(self)
  local cfg, kwargs = self._cfg, self.kwargs
  local max_items = cfg.max_items
  local current = kwargs[P.input_token]   -- the token that asked for this page
  local seen = {}
  if current then seen[current] = true end
  local total, first, pages, job = 0, true, 0, nil
  while true do
    pages = pages + 1
    if pages > self.max_pages then
      fatal("more than " .. self.max_pages .. " pages in one iteration; stopping (see max_pages)")
    end
    local res = fetch(self, kwargs, current, first and cfg.starting and cfg.truncate or 0, job)
    job = nil
    local starting_truncation = 0
    if first then
      first = false
      if cfg.starting and cfg.truncate > 0 then
        starting_truncation = cfg.truncate
        res[RESULT_KEY] = drop_first(res[RESULT_KEY], starting_truncation)
      end
      local kept = {}
      for _, k in ipairs(P.non_aggregate_keys) do kept[k] = res[k] end
      self._non_aggregate = kept
    end
    local items = res[RESULT_KEY]
    local n = #items
    if max_items and total + n > max_items then
      local keep = max_items - total
      res[RESULT_KEY] = keep_first(items, keep)
      self.resume_token = token.encode(current, keep + starting_truncation)
      yield(PAGE, res)
      return
    end
    local nt = res[P.output_token]
    -- Prefetch only a page that the loop below is sure to request next.
    if self._prefetch and nt ~= nil and nt ~= "" and not seen[nt] and pages < self.max_pages
        and not (max_items and total + n == max_items) then
      local next_kwargs = {}
      for k, v in pairs(kwargs) do next_kwargs[k] = v end
      next_kwargs[P.input_token] = nt
      job = launch(self, next_kwargs)
    end
    yield(PAGE, res)
    if not job then nt = res[P.output_token] end   -- as boto3: read after the consumer had the page
    total = total + n
    if nt == nil or nt == "" then return end
    if max_items and total == max_items then
      self.resume_token = token.encode(nt)
      return
    end
    if seen[nt] then
      fatal("the service returned a next token already seen in this iteration; stopping instead of looping")
    end
    seen[nt] = true
    kwargs[P.input_token] = nt
    current = nt
  end
end

--[[
Returns the next page, or nil when the iteration is over. Raises the error
object of a failed request (pcall returns it whole); it carries
resume_token, and calling again retries that same page.
]]
local function next_page(self)
  if self._done then
    -- An iteration that ended on an error ends on it every time: a second
    -- call must not look like a scan that completed.
    if self._fatal then error(self._fatal, 0) end
    return nil
  end
  if self._err then
    self._done, self._fatal = true, self._err
    error(self._err, 0)
  end
  local co = self._co
  local r
  if not co then
    co = create(produce)
    self._co = co
    r = pack(resume(co, self))
  else
    r = pack(resume(co))
  end
  while true do
    if not r[1] then
      self._done, self._fatal = true, errors.from_raise(r[2])
      error(self._fatal, 0)
    end
    if costatus(co) == "dead" then
      self._done = true
      return nil
    end
    if r[2] == PAGE then return r[3] end
    if r[2] == FAILED then error(r[3], 0) end
    -- A yield that is not ours (a transport giving way): pass it up and
    -- hand the answer back down.
    r = pack(resume(co, yield(unpack(r, 2, r.n))))
  end
end

pages_mt.__call = next_page

-- Misuse (pages.items() instead of pages:items()) raises at once.
local function check_pages(self, name)
  if getmetatable(self) ~= pages_mt then
    error("bad argument #1 to '" .. name .. "' (healthimaging.pages expected; use pages:" .. name .. ")", 3)
  end
end

--[[
Ends the iteration early: the next call returns nil, and a prefetched
request still in flight is abandoned (its connection closed unless the
answer had fully arrived). Optional: without it, the next request on the
same client abandons that request anyway.
]]
function Pages:close()
  check_pages(self, "close")
  self._done, self._closed = true, true
  local job = self._job
  self._job = nil
  if job and job.transport and job.ticket and job.transport.cancel then
    job.transport:cancel(job.ticket)
  end
end

-- Iterates the image-set summaries across pages (MaxItems applies).
function Pages:items()
  check_pages(self, "items")
  local page, i = nil, 0
  return function()
    while true do
      if self._closed then return nil end
      if page then
        i = i + 1
        local item = page[RESULT_KEY][i]
        if item ~= nil then return item end
      end
      page = next_page(self)
      if page == nil then return nil end
      i = 0
    end
  end
end

--[[
Collects every page as boto3's build_full_result does: the summaries
concatenated, `sort` from the first page, and NextToken (the resume token)
when MaxItems cut the iteration short.
]]
function Pages:build_full_result()
  check_pages(self, "build_full_result")
  -- The items gathered so far live on the object: when a page fails, the
  -- error is raised, and calling build_full_result again goes on from that
  -- page and returns everything, nothing lost and nothing twice.
  for page in next_page, self do
    local list = page[RESULT_KEY]
    if list then
      local items = self._full_items or {}
      self._full_items = items
      for i = 1, #list do items[#items + 1] = list[i] end
    end
  end
  local out = { [RESULT_KEY] = self._full_items or {} }
  for k, v in pairs(self._non_aggregate or {}) do out[k] = v end
  if self.resume_token then out.NextToken = self.resume_token end
  return out
end

return _M

-- healthimaging.paginator: boto3's paginator for SearchImageSets, driven by a
-- coroutine. PaginationConfig (MaxItems, PageSize, StartingToken) and the
-- resume token follow boto3 exactly, so tokens move between Python and Lua.
-- The coroutine marks its own yields; any other yield (a non-blocking
-- transport giving way to its scheduler) passes through to the host.

local model = require "healthimaging.model"
local errors = require "healthimaging.errors"
local validate = require "healthimaging.validate"
local token = require "healthimaging.token"

local type = type
local pairs = pairs
local ipairs = ipairs
local error = error
local tostring = tostring
local setmetatable = setmetatable
local getmetatable = getmetatable
local tointeger = math.tointeger
local create = coroutine.create
local resume = coroutine.resume
local yield = coroutine.yield
local costatus = coroutine.status
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
      return nil, fail("PaginationConfig." .. tostring(k), "is not one of MaxItems, PageSize, StartingToken")
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
(default DEFAULT_MAX_PAGES).
]]
function _M.new(client, opts)
  local max_pages = opts and opts.max_pages or _M.DEFAULT_MAX_PAGES
  return setmetatable({ client = client, max_pages = max_pages }, paginator_mt)
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
  local kwargs = {}
  for k, v in pairs(params) do
    if k ~= "PaginationConfig" then kwargs[k] = v end
  end
  local pages = setmetatable({ client = self.client, kwargs = kwargs, max_pages = self.max_pages }, pages_mt)
  local cfg, err = read_pagination_config(params.PaginationConfig)
  if cfg then
    if cfg.page_size then kwargs[P.limit_key] = cfg.page_size end
    if cfg.starting then kwargs[P.input_token] = cfg.next_token end
    local _
    _, err = validate.search_image_sets(kwargs)
  end
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
Requests one page. A failure is handed to the consumer with the resume
token of exactly this page (where a new iteration would start it again);
when the consumer calls again, the same page is requested again.
]]
local function fetch(self, kwargs, current, truncate)
  while true do
    local res, err = self.client:search_image_sets(kwargs)
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
  local total, first, pages = 0, true, 0
  while true do
    pages = pages + 1
    if pages > self.max_pages then
      fatal("more than " .. self.max_pages .. " pages in one iteration; stopping (see max_pages)")
    end
    local res = fetch(self, kwargs, current, first and cfg.starting and cfg.truncate or 0)
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
    yield(PAGE, res)
    total = total + n
    local nt = res[P.output_token]
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
  if self._done then return nil end
  if self._err then
    self._done = true
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
      self._done = true
      error(errors.from_raise(r[2]), 0)
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

-- Iterates the image-set summaries across pages (MaxItems applies).
function Pages:items()
  local page, i = nil, 0
  return function()
    while true do
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
  local out, items = {}, nil
  for page in next_page, self do
    local list = page[RESULT_KEY]
    if list then
      items = items or {}
      for i = 1, #list do items[#items + 1] = list[i] end
    end
  end
  out[RESULT_KEY] = items
  for k, v in pairs(self._non_aggregate or {}) do out[k] = v end
  if self.resume_token then out.NextToken = self.resume_token end
  return out
end

return _M

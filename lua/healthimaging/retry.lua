-- healthimaging.retry: the AWS SDKs' "standard" and "adaptive" retry modes.
-- Standard: a few attempts with full-jitter exponential backoff capped at
-- 20 s, paid for from a retry quota so that a failing service is not
-- hammered. Adaptive adds a client-side token bucket whose rate follows
-- CUBIC: cut on throttling, grown back on success.
-- Constants come from the AWS SDKs and Tools reference guide ("Retry behavior").

local floor = math.floor
local min = math.min
local max = math.max

local _M = {}

-- Standard mode.
_M.DEFAULT_MAX_ATTEMPTS = 3
_M.MAX_BACKOFF = 20            -- seconds
_M.INITIAL_QUOTA = 500         -- retry tokens a client starts with
_M.RETRY_COST = 5              -- tokens a retry takes
_M.TIMEOUT_RETRY_COST = 10     -- tokens a retry after a timeout takes
_M.NO_RETRY_INCREMENT = 1      -- tokens a first-attempt success gives back
_M.MAX_RETRY_AFTER_EXTRA = 5   -- seconds a retry-after hint may add to the backoff

-- Adaptive mode (CUBIC).
local BETA = 0.7
local SCALE = 0.4
local SMOOTH = 0.8
local MIN_FILL_RATE = 0.5
local MIN_CAPACITY = 1

local R = {}
local mt = { __index = R, __name = "healthimaging.retry" }

--[[
Creates the retry state of one client.
Input: opts = { max_attempts, mode = "standard"|"adaptive", random = fn() -> [0,1),
now = fn() -> seconds (monotonic) }.
]]
function _M.new(opts)
  local self = setmetatable({
    max_attempts = opts.max_attempts or _M.DEFAULT_MAX_ATTEMPTS,
    mode = opts.mode or "standard",
    quota = _M.INITIAL_QUOTA,
    random = opts.random or math.random,
    now = opts.now,
  }, mt)
  if self.mode == "adaptive" then
    local t = self.now()
    self.bucket = {
      enabled = false, fill_rate = 0, max_capacity = 0, capacity = 0, last = t,
      measured_rate = 0, last_rate_bucket = floor(t * 2) / 2, count = 0,
      last_max_rate = 0, last_throttle = t, window = 0,
    }
  end
  return self
end

--[[
Decides whether a failed attempt is tried again.
Input: err (an error object), attempt (1-based number of the attempt that failed).
Returns: the delay in seconds and the quota taken, or nil and why not.
]]
function R:retry_delay(err, attempt)
  if not err.retryable then return nil, "not retryable" end
  if attempt >= self.max_attempts then return nil, "max attempts reached" end
  local cost = err.code == "TimeoutError" and _M.TIMEOUT_RETRY_COST or _M.RETRY_COST
  if self.quota < cost then return nil, "retry quota exhausted" end
  self.quota = self.quota - cost
  local delay = min(self.random() * 2 ^ (attempt - 1), _M.MAX_BACKOFF)
  if err.retry_after then
    delay = min(max(err.retry_after, delay), delay + _M.MAX_RETRY_AFTER_EXTRA, _M.MAX_BACKOFF)
  end
  return delay, cost
end

-- A success gives back what its retries took, or a token for a first try.
function R:on_success(cost)
  self.quota = min(_M.INITIAL_QUOTA, self.quota + (cost or _M.NO_RETRY_INCREMENT))
end

-- {==== Adaptive mode: token bucket and CUBIC rate -------------------------

local function refill(b, t)
  b.capacity = min(b.max_capacity, b.capacity + (t - b.last) * b.fill_rate)
  b.last = t
end

--[[
Before each attempt: in adaptive mode, once throttling has been seen, wait
for a token of the bucket.
Returns: the seconds to wait first (0 when none).
]]
function R:before_attempt()
  local b = self.bucket
  if not b or not b.enabled then return 0 end
  local t = self.now()
  refill(b, t)
  local wait = 0
  if b.capacity < 1 then
    wait = (1 - b.capacity) / b.fill_rate
    b.capacity = 1
  end
  b.capacity = b.capacity - 1
  return wait
end

local function update_measured_rate(b, t)
  local bucket = floor(t * 2) / 2
  b.count = b.count + 1
  if bucket > b.last_rate_bucket then
    local rate = b.count / (bucket - b.last_rate_bucket)
    b.measured_rate = rate * SMOOTH + b.measured_rate * (1 - SMOOTH)
    b.count = 0
    b.last_rate_bucket = bucket
  end
end

local function time_window(b)
  b.window = ((b.last_max_rate * (1 - BETA)) / SCALE) ^ (1 / 3)
end

--[[
After each answer: in adaptive mode, lower the rate on throttling (CUBIC's
multiplicative cut), raise it along the cubic curve otherwise.
]]
function R:after_attempt(throttled)
  local b = self.bucket
  if not b then return end
  local t = self.now()
  update_measured_rate(b, t)
  local rate
  if throttled then
    local base = b.enabled and min(b.measured_rate, b.fill_rate) or b.measured_rate
    b.last_max_rate = base
    time_window(b)
    b.last_throttle = t
    rate = base * BETA
    b.enabled = true
  else
    time_window(b)
    rate = SCALE * (t - b.last_throttle - b.window) ^ 3 + b.last_max_rate
  end
  rate = min(rate, 2 * b.measured_rate)
  refill(b, t)
  b.fill_rate = max(rate, MIN_FILL_RATE)
  b.max_capacity = max(rate, MIN_CAPACITY)
  b.capacity = min(b.capacity, b.max_capacity)
end

-- }====

return _M

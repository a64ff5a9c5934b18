-- healthimaging.errors: the one error object every call returns as `nil, err`
-- and every iterator raises. It is a plain table (code, message, status,
-- request_id, retryable, ...) with a __tostring; it never holds a secret,
-- a request body or a DICOM tag value, so printing it is always safe.

local setmetatable = setmetatable
local getmetatable = getmetatable
local tostring = tostring
local type = type
local find = string.find
local sub = string.sub
local format = string.format
local lower = string.lower
local gsub = string.gsub
local tonumber = tonumber

local time = require "healthimaging.time"

local _M = {}

local mt = { __name = "healthimaging.error" }

-- Renders "Code: message (HTTP 400, request id X)"; only fields that are set.
mt.__tostring = function(err)
  local s = (err.code or "Error") .. ": " .. tostring(err.message or "")
  local extra = {}
  if err.status then extra[#extra + 1] = "HTTP " .. err.status end
  if err.request_id then extra[#extra + 1] = "request id " .. err.request_id end
  if #extra > 0 then s = s .. " (" .. table.concat(extra, ", ") .. ")" end
  return s
end

-- Throttling codes of the AWS "standard" retry mode (the SDKs' shared list).
_M.THROTTLING_CODES = {
  Throttling = true, ThrottlingException = true, ThrottledException = true,
  RequestThrottledException = true, TooManyRequestsException = true,
  ProvisionedThroughputExceededException = true, TransactionInProgressException = true,
  RequestLimitExceeded = true, BandwidthLimitExceeded = true, LimitExceededException = true,
  RequestThrottled = true, SlowDown = true, PriorRequestNotComplete = true,
  EC2ThrottledException = true,
}

-- Transient codes and statuses of the same retry mode.
_M.TRANSIENT_CODES = {
  RequestTimeout = true, RequestTimeoutException = true, PriorRequestNotComplete = true,
}
_M.TRANSIENT_STATUS = { [500] = true, [502] = true, [503] = true, [504] = true }

--[[
Makes an error object.
Input: fields, a table with at least code and message.
Returns: the same table, now an error object (retryable defaults to false).
]]
function _M.new(fields)
  if fields.retryable == nil then fields.retryable = false end
  return setmetatable(fields, mt)
end

-- True for a value made by new (or raised by an iterator).
function _M.is_error(v)
  return type(v) == "table" and getmetatable(v) == mt
end

-- A request that failed validation before anything was sent. `path` names
-- the field as the user wrote it, e.g. searchCriteria.filters[1].values[2].
function _M.validation(path, rule)
  return _M.new {
    code = "ParamValidationError",
    message = format("Invalid parameter %s: %s", path, rule),
    path = path,
    retryable = false,
  }
end

--[[
Sanitizes an x-amzn-ErrorType value or a body code as restJson1 prescribes:
keep what is before the first ':', then what is after the first '#'.
Input: raw string or nil. Returns: the code or nil.
]]
function _M.sanitize_code(raw)
  if type(raw) ~= "string" or raw == "" then return nil end
  local colon = find(raw, ":", 1, true)
  if colon then raw = sub(raw, 1, colon - 1) end
  local hash = find(raw, "#", 1, true)
  if hash then raw = sub(raw, hash + 1) end
  if raw == "" then return nil end
  return raw
end

-- Codes that mean "your clock is off" (the SDKs' list), and the message by
-- which an InvalidSignatureException says so.
_M.CLOCK_SKEW_CODES = {
  RequestTimeTooSkewed = true, RequestExpired = true, RequestInTheFuture = true,
  InvalidSignatureException = "expired", SignatureDoesNotMatch = "expired",
  AuthFailure = "expired",
}

-- True when err says the request's signing time was too far from the server's.
function _M.is_clock_skew(err)
  local rule = _M.CLOCK_SKEW_CODES[err.code]
  if rule == true then return true end
  return rule ~= nil and type(err.message) == "string" and find(lower(err.message), rule, 1, true) ~= nil
end

-- The longest service message kept, in bytes.
_M.MAX_MESSAGE = 1024

--[[
Makes a service's error message safe to print: AWS validation messages
quote the rejected value ("Value 'X' at 'path' failed to satisfy
constraint"), and a rejected value may be a tag value, so a quoted value
after the word Value becomes <redacted>; control characters (CR/LF, ANSI
escapes) become spaces, so a message stays one line; it is cut at
MAX_MESSAGE bytes.
]]
function _M.sanitize_message(msg)
  msg = gsub(msg, "([Vv]alue%s+)'[^']*'", "%1'<redacted>'")
  msg = gsub(msg, '([Vv]alue%s+)"[^"]*"', '%1"<redacted>"')
  msg = gsub(msg, "%c", " ")
  if #msg > _M.MAX_MESSAGE then
    msg = sub(msg, 1, _M.MAX_MESSAGE) .. "... (cut)"
  end
  return msg
end

--[[
Builds the error object of an HTTP answer that is not a success.
Input: status (integer), headers (lowercase names), decoded body (table or nil).
Returns: an error object naming the service's code, message and request id.
]]
function _M.from_response(status, headers, body)
  body = type(body) == "table" and body or {}
  local code = _M.sanitize_code(headers["x-amzn-errortype"])
    or _M.sanitize_code(body.code) or _M.sanitize_code(body.__type)
  if not code then
    code = status >= 500 and "InternalServerError" or ("HTTP" .. status)
  end
  local message = body.message or body.Message
  if type(message) ~= "string" then message = "HTTP status " .. status end
  message = _M.sanitize_message(message)
  return _M.new {
    code = code,
    message = message,
    status = status,
    request_id = headers["x-amzn-requestid"] or headers["x-amz-request-id"],
    retryable = _M.THROTTLING_CODES[code] or _M.TRANSIENT_CODES[code]
      or _M.TRANSIENT_STATUS[status] or false,
    throttling = _M.THROTTLING_CODES[code] or false,
    -- x-amz-retry-after is in milliseconds
    retry_after = tonumber(headers["x-amz-retry-after"]) and tonumber(headers["x-amz-retry-after"]) / 1000,
    server_time = time.parse_http_date(headers["date"]),
  }
end

--[[
The error object of a failed transport call. The libcurl transport gives a
plain table { code, message, retryable, curl_code }; a custom transport may
give anything (a string, a table with a metatable of its own): only those
fields are taken, by rawget and type, into a new error object.
]]
function _M.from_transport(e)
  if _M.is_error(e) then return e end
  if type(e) == "table" then
    local code, message = rawget(e, "code"), rawget(e, "message")
    return _M.new {
      code = type(code) == "string" and code or "TransportError",
      message = type(message) == "string" and message or "the transport failed",
      retryable = rawget(e, "retryable") == true,
      curl_code = math.type(rawget(e, "curl_code")) == "integer" and rawget(e, "curl_code") or nil,
    }
  end
  return _M.new {
    code = "TransportError",
    message = type(e) == "string" and e or ("the transport failed (" .. type(e) .. ")"),
  }
end

--[[
Turns whatever an internal raise produced into an error object, so that no
public entry point lets a bare string escape. Memory errors are raised again.
]]
function _M.from_raise(e)
  if _M.is_error(e) then return e end
  local msg = tostring(e)
  if msg == "not enough memory" then error(e, 0) end
  return _M.new { code = "InternalError", message = msg }
end

return _M

-- healthimaging.endpoints: the service's endpoint rules and the AWS
-- partitions they consult, transcribed as facts: the rules from botocore's
-- medical-imaging endpoint-rule-set-1.json, the partitions from the AWS SDKs'
-- partitions.json (aws-sdk-js-v3 packages/util-endpoints). Pure functions:
-- no I/O, no environment. spec/09-endpoints checks them against every case of
-- endpoint-tests-1.json and against the rule set itself.

local find = string.find
local match = string.match

local _M = {}

-- The service's identity for configuration (service-2.json metadata
-- serviceId "Medical Imaging"): the AWS_ENDPOINT_URL_<ENV> variable and the
-- key of a `services` section of the shared config file.
_M.SERVICE_ENV = "MEDICAL_IMAGING"
_M.SERVICE_KEY = "medical_imaging"

--[[
The partitions, in the order aws.partition tries their regionRegex
(partitions.json, version 1.1). `pattern` is the Lua form of regionRegex
(\w+ is [%w_]+, \d+ is %d+); `prefixes`, when present, is the alternation
that opens it. `regions` keeps only the region names of the file that the
pattern does not match (the "-global" pseudo-regions): every other listed
region matches its partition's pattern, so listing it would add nothing.
]]
_M.PARTITIONS = {
  { name = "aws", dnsSuffix = "amazonaws.com", dualStackDnsSuffix = "api.aws",
    supportsFIPS = true, supportsDualStack = true, implicitGlobalRegion = "us-east-1",
    -- ^(us|eu|ap|sa|ca|me|af|il|mx)\-\w+\-\d+$
    pattern = "^(%l%l)%-[%w_]+%-%d+$",
    prefixes = { us = true, eu = true, ap = true, sa = true, ca = true, me = true, af = true,
                 il = true, mx = true },
    regions = { ["aws-global"] = true } },
  { name = "aws-cn", dnsSuffix = "amazonaws.com.cn", dualStackDnsSuffix = "api.amazonwebservices.com.cn",
    supportsFIPS = true, supportsDualStack = true, implicitGlobalRegion = "cn-northwest-1",
    pattern = "^cn%-[%w_]+%-%d+$", regions = { ["aws-cn-global"] = true } },
  { name = "aws-us-gov", dnsSuffix = "amazonaws.com", dualStackDnsSuffix = "api.aws",
    supportsFIPS = true, supportsDualStack = true, implicitGlobalRegion = "us-gov-west-1",
    pattern = "^us%-gov%-[%w_]+%-%d+$", regions = { ["aws-us-gov-global"] = true } },
  { name = "aws-iso", dnsSuffix = "c2s.ic.gov", dualStackDnsSuffix = "c2s.ic.gov",
    supportsFIPS = true, supportsDualStack = false, implicitGlobalRegion = "us-iso-east-1",
    pattern = "^us%-iso%-[%w_]+%-%d+$", regions = { ["aws-iso-global"] = true } },
  { name = "aws-iso-b", dnsSuffix = "sc2s.sgov.gov", dualStackDnsSuffix = "sc2s.sgov.gov",
    supportsFIPS = true, supportsDualStack = false, implicitGlobalRegion = "us-isob-east-1",
    pattern = "^us%-isob%-[%w_]+%-%d+$", regions = { ["aws-iso-b-global"] = true } },
  { name = "aws-iso-e", dnsSuffix = "cloud.adc-e.uk", dualStackDnsSuffix = "cloud.adc-e.uk",
    supportsFIPS = true, supportsDualStack = false, implicitGlobalRegion = "eu-isoe-west-1",
    pattern = "^eu%-isoe%-[%w_]+%-%d+$", regions = { ["aws-iso-e-global"] = true } },
  { name = "aws-iso-f", dnsSuffix = "csp.hci.ic.gov", dualStackDnsSuffix = "csp.hci.ic.gov",
    supportsFIPS = true, supportsDualStack = false, implicitGlobalRegion = "us-isof-south-1",
    pattern = "^us%-isof%-[%w_]+%-%d+$", regions = { ["aws-iso-f-global"] = true } },
  { name = "aws-eusc", dnsSuffix = "amazonaws.eu", dualStackDnsSuffix = "amazonaws.eu",
    supportsFIPS = true, supportsDualStack = false, implicitGlobalRegion = "eusc-de-east-1",
    pattern = "^eusc%-de%-[%w_]+%-%d+$", regions = {} },
}

local function matches(p, region)
  local first = match(region, p.pattern)
  if not first then return false end
  return p.prefixes == nil or p.prefixes[first] == true
end

--[[
The rules engine's aws.partition: a region named by a partition, else the
first partition whose pattern matches, else "aws" (the engine's default,
so an unknown region still gets the commercial suffixes).
Input: region (string). Returns: the partition's table.
]]
function _M.partition(region)
  for _, p in ipairs(_M.PARTITIONS) do
    if p.regions[region] then return p end
  end
  for _, p in ipairs(_M.PARTITIONS) do
    if matches(p, region) then return p end
  end
  return _M.PARTITIONS[1]
end

-- The rule set's error messages, word for word (tests compare them).
_M.MESSAGES = {
  fips_custom = "Invalid Configuration: FIPS and custom endpoint are not supported",
  dualstack_custom = "Invalid Configuration: Dualstack and custom endpoint are not supported",
  no_region = "Invalid Configuration: Missing Region",
  fips_dualstack = "FIPS and DualStack are enabled, but this partition does not support one or both",
  fips = "FIPS is enabled but this partition does not support FIPS",
  dualstack = "DualStack is enabled but this partition does not support DualStack",
}

--[[
The rule set of medical-imaging, rule by rule, in its order.
Input: params = { Region = string|nil, UseFIPS = bool, UseDualStack = bool,
Endpoint = string|nil } (the rule set's parameter names; the two booleans
default to false).
Returns: the endpoint URL, or nil and the rule set's error message.
]]
function _M.resolve(params)
  local fips = params.UseFIPS == true
  local dualstack = params.UseDualStack == true
  local region = params.Region
  if params.Endpoint ~= nil then
    if fips then return nil, _M.MESSAGES.fips_custom end
    if dualstack then return nil, _M.MESSAGES.dualstack_custom end
    return params.Endpoint
  end
  if region == nil then return nil, _M.MESSAGES.no_region end
  local p = _M.partition(region)
  if fips and dualstack then
    if p.supportsFIPS and p.supportsDualStack then
      return "https://medical-imaging-fips." .. region .. "." .. p.dualStackDnsSuffix
    end
    return nil, _M.MESSAGES.fips_dualstack
  end
  if fips then
    if p.supportsFIPS then return "https://medical-imaging-fips." .. region .. "." .. p.dnsSuffix end
    return nil, _M.MESSAGES.fips
  end
  if dualstack then
    if p.supportsDualStack then return "https://medical-imaging." .. region .. "." .. p.dualStackDnsSuffix end
    return nil, _M.MESSAGES.dualstack
  end
  return "https://medical-imaging." .. region .. "." .. p.dnsSuffix
end

--[[
The regional STS endpoint used for AssumeRole and AssumeRoleWithWebIdentity
when no custom STS endpoint is configured: https://sts.{region}.{dnsSuffix}
(STS's own rule set has more cases, FIPS and dual-stack among them; they
are not applied here: set AWS_ENDPOINT_URL_STS to choose another).
]]
function _M.sts(region)
  return "https://sts." .. region .. "." .. _M.partition(region).dnsSuffix
end

-- True when host is an IPv4 or IPv6 literal, or localhost (any case): names
-- in front of which a host prefix could never resolve.
function _M.is_literal_host(host)
  local h = host:lower()
  return find(h, "^%d+%.%d+%.%d+%.%d+$") ~= nil or find(h, "^%[") ~= nil or find(h, ":", 1, true) ~= nil
    or h == "localhost"
end

return _M

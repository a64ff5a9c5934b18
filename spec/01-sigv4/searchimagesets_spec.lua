-- SigV4 for a HealthImaging SearchImageSets call, checked against botocore's
-- SigV4Auth (Debian package python3-botocore), run at test time on the same
-- inputs: an implementation independent of this C code.
-- luacheck: std +busted
local core = require "healthimaging.core"
local oracle = require "01-sigv4.oracle"

local ipairs = ipairs

-- botocore signs the same request; X-Amz-Date and the token header are
-- added here as sign() adds them, and the clock is pinned through
-- request.context["timestamp"] (what SigV4Auth.add_auth would set).
local BOTOCORE_SCRIPT = [[
import hashlib, json, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
with open(sys.argv[1], "rb") as f:
    inp = json.load(f)
body = inp["body"].encode("utf-8")
req = AWSRequest(method=inp["method"], url=inp["url"], data=body)
for name, value in inp["headers"]:
    req.headers[name] = value
req.headers["X-Amz-Date"] = inp["amz_date"]
if inp["sign_body"]:
    req.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
if inp["session_token"]:
    req.headers["X-Amz-Security-Token"] = inp["session_token"]
req.context["timestamp"] = inp["amz_date"]
creds = Credentials(inp["access_key_id"], inp["secret_access_key"], inp["session_token"] or None)
auth = SigV4Auth(creds, inp["service"], inp["region"])
creq = auth.canonical_request(req)
sts = auth.string_to_sign(req, creq)
sig = auth.signature(sts, req)
signed = auth.signed_headers(auth.headers_to_sign(req))
authz = "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=%s, Signature=%s" % (auth.scope(req), signed, sig)
print(json.dumps({"canonical_request": creq, "string_to_sign": sts,
                  "signature": sig, "authorization": authz,
                  "payload_hash": hashlib.sha256(body).hexdigest()}))
]]

local REGION = "us-east-1"
local HOST = "runtime-medical-imaging." .. REGION .. ".amazonaws.com"
local DATASTORE_ID = "8c4f2a6b1d3e5f7091a2b3c4d5e6f708"
local PATH = "/datastore/" .. DATASTORE_ID .. "/searchImageSets"
-- A pagination token with every character that needs encoding: + / = space.
local NEXT_TOKEN = "AbC+dEf/GhI= jKl=="
local BODY = '{"searchCriteria":{"filters":[{"values":[{"DICOMPatientId":"TEST-0001"}],'
  .. '"operator":"EQUAL"}]}}'
-- AWS's documentation example credentials, and a made-up session token.
local ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
local SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
local TOKEN = "FwoGZXIvYXdzEXAMPLE//////////wEaDExampleToken+abc/def=="
local AMZ_DATE = "20240115T093000Z"

local function percent_encode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local QUERY = "maxResults=10&nextToken=" .. percent_encode(NEXT_TOKEN)

local VARIANTS = {
  { title = "with long-term credentials" },
  { title = "with a session token", session_token = TOKEN },
  { title = "with a session token and a signed payload hash", session_token = TOKEN, sign_body = true },
}

local function request(v)
  return {
    method = "POST", path = PATH, query = QUERY,
    headers = { { "host", HOST }, { "content-type", "application/json" } },
    body = BODY,
    access_key_id = ACCESS_KEY_ID, secret_access_key = SECRET, session_token = v.session_token,
    region = REGION, service = "medical-imaging", amz_date = AMZ_DATE,
    sign_body = v.sign_body,
  }
end

describe("signing a HealthImaging SearchImageSets request", function()
  it("encodes the next token's + / = and space in the query as %2B %2F %3D %20", function()
    assert.equal("maxResults=10&nextToken=AbC%2BdEf%2FGhI%3D%20jKl%3D%3D", QUERY)
    assert.equal(QUERY, core._sigv4.canonical_query(QUERY))
  end)

  for _, v in ipairs(VARIANTS) do
    describe(v.title, function()
      local mine, theirs
      -- One botocore run per variant, shared by its `it`s.
      local function results()
        if not theirs then
          local r = request(v)
          theirs = oracle.run(BOTOCORE_SCRIPT, {
            method = r.method, url = "https://" .. HOST .. PATH .. "?" .. QUERY,
            headers = r.headers, body = r.body, amz_date = r.amz_date,
            sign_body = v.sign_body == true, session_token = v.session_token or false,
            access_key_id = r.access_key_id, secret_access_key = r.secret_access_key,
            region = r.region, service = r.service,
          })
          mine = assert(core.sign(r))
        end
        return mine, theirs
      end

      it("builds the same canonical request as botocore", function()
        local a, b = results()
        assert.equal(b.canonical_request, a.canonical_request)
        assert.equal(b.payload_hash, a.payload_hash)
      end)

      it("builds the same string to sign as botocore", function()
        local a, b = results()
        assert.equal(b.string_to_sign, a.string_to_sign)
      end)

      it("computes the same signature and Authorization header as botocore", function()
        local a, b = results()
        assert.equal(b.signature, a.signature)
        assert.equal(b.authorization, a.authorization)
      end)

      it("signs host, content-type and the headers it asks the caller to add", function()
        local a = results()
        local expected_signed = "content-type;host"
          .. (v.sign_body and ";x-amz-content-sha256" or "")
          .. ";x-amz-date"
          .. (v.session_token and ";x-amz-security-token" or "")
        assert.equal(expected_signed, a.signed_headers)
        local expected_headers = { { "X-Amz-Date", AMZ_DATE } }
        if v.sign_body then
          expected_headers[#expected_headers + 1] = { "x-amz-content-sha256", a.payload_hash }
        end
        if v.session_token then
          expected_headers[#expected_headers + 1] = { "X-Amz-Security-Token", TOKEN }
        end
        assert.same(expected_headers, a.headers)
      end)
    end)
  end
end)

-- The SigV4 pipeline stage by stage, through core._sigv4: canonical URI,
-- query and headers, the hashes, the signing key and the string to sign.
-- Expected values are worked out by hand from the SigV4 rules, taken from
-- published vectors (FIPS 180-2, RFC 4231, the suite's README) or computed
-- by Python's hashlib/hmac at test time.
-- luacheck: std +busted
local core = require "healthimaging.core"
local oracle = require "01-sigv4.oracle"

local ipairs, tostring = ipairs, tostring
local string_rep = string.rep

local sigv4 = core._sigv4

describe("core._sigv4.canonical_uri", function()
  local CASES = {
    -- path, normalize, expected
    { "", nil, "/" },
    { "/", nil, "/" },
    { "//", nil, "/" },
    { "/./", nil, "/" },
    { "/example/..", nil, "/" },
    { "/example1/example2/../..", nil, "/" },
    { "/../../a", nil, "/a" },
    { "/a/b/..", nil, "/a/" },
    { "/a/.", nil, "/a/" },
    { "/a/./b/../c", nil, "/a/c" },
    { "//example//", nil, "/example/" },
    { "/./example", nil, "/example" },
    { "a/b", nil, "/a/b" },
    { "/example space/", nil, "/example%20space/" },
    { "/example/$delete", nil, "/example/%24delete" },
    { "/\xe1\x88\xb4", nil, "/%E1%88%B4" },
    { "/-._~09AZaz", nil, "/-._~09AZaz" },
    { "/a%2Fb+c", nil, "/a%252Fb%2Bc" },
    { "/datastore/8c4f2a6b1d3e5f7091a2b3c4d5e6f708/searchImageSets", true,
      "/datastore/8c4f2a6b1d3e5f7091a2b3c4d5e6f708/searchImageSets" },
    { "/a\0b", true, "/a%00b" },
    { "/\xff\xfe\xc3", true, "/%FF%FE%C3" },
    { "", false, "/" },
    { "a", false, "/a" },
    { "//example//", false, "//example//" },
    { "/example1/example2/../..", false, "/example1/example2/../.." },
    { "/./example space", false, "/./example%20space" },
  }
  for _, c in ipairs(CASES) do
    local mode = c[2] == false and "unnormalized" or "normalized"
    it(("turns %q (%s) into %q"):format(c[1], mode, c[3]), function()
      assert.equal(c[3], sigv4.canonical_uri(c[1], c[2]))
    end)
  end

  it("normalizes by default", function()
    assert.equal("/b", sigv4.canonical_uri("/a/../b"))
  end)

  it("survives a 1 MB path of dot segments", function()
    assert.equal("/", sigv4.canonical_uri(string_rep("/x/..", 200000)))
    assert.equal(string_rep("/x", 200000), sigv4.canonical_uri(string_rep("/x", 200000)))
  end)
end)

describe("core._sigv4.canonical_query", function()
  local CASES = {
    { nil, "" },
    { "", "" },
    { "b=2&a=1", "a=1&b=2" },
    { "Param2=value2&Param1=value1", "Param1=value1&Param2=value2" },
    { "Param1=value2&Param1=Value1", "Param1=Value1&Param1=value2" },
    { "Param-3=Value3&Param=Value2&%E1%88%B4=Value1", "%E1%88%B4=Value1&Param=Value2&Param-3=Value3" },
    { "b=1&B=1&a=1", "B=1&a=1&b=1" },
    { "flag", "flag=" },
    { "flag=", "flag=" },
    { "=v", "=v" },
    { "a=1&&b=2&", "a=1&b=2" },
    { "x=a=b", "x=a%3Db" },
    { "x=%zz", "x=%25zz" },
    { "x=%", "x=%25" },
    { "x=%4", "x=%254" },
    { "x=%4g", "x=%254g" },
    { "x=a+b", "x=a%2Bb" },
    { "x=%2b%2F", "x=%2B%2F" },
    { "x=%41%7e", "x=A~" },
    { "x=a b", "x=a%20b" },
    { "\xe1\x88\xb4=bar", "%E1%88%B4=bar" },
    { "x=\0\xff", "x=%00%FF" },
    { "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~",
      "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~" },
    { "maxResults=10&nextToken=a%2Bb%2F%3D%20c", "maxResults=10&nextToken=a%2Bb%2F%3D%20c" },
    { "nextToken=a%2bb&maxResults=10", "maxResults=10&nextToken=a%2Bb" },
  }
  for _, c in ipairs(CASES) do
    it(("turns %q into %q"):format(tostring(c[1]), c[2]), function()
      assert.equal(c[2], sigv4.canonical_query(c[1]))
    end)
  end
end)

describe("core._sigv4.canonical_headers", function()
  it("lowercases, trims, collapses spaces, folds lines and sorts", function()
    local block, signed = sigv4.canonical_headers({
      { "Host", "example.amazonaws.com" },
      { "X-Multi", "value1\n  value2\r\n\t   value3" },
      { "My-Header2", '  "a   b   c"  ' },
      { "Content-Type", "application/json" },
    })
    assert.equal("content-type:application/json\n"
      .. "host:example.amazonaws.com\n"
      .. 'my-header2:"a b c"\n'
      .. "x-multi:value1 value2 value3\n", block)
    assert.equal("content-type;host;my-header2;x-multi", signed)
  end)

  it("joins duplicates with ',' in the order given, whatever their case", function()
    local block, signed = sigv4.canonical_headers({
      { "My-Header1", "value4" }, { "Host", "h" }, { "my-header1", "value1" },
      { "MY-HEADER1", " value3 " }, { "My-Header1", "value2" },
    })
    assert.equal("host:h\nmy-header1:value4,value1,value3,value2\n", block)
    assert.equal("host;my-header1", signed)
  end)

  it("keeps an empty value and the value's case", function()
    local block = sigv4.canonical_headers({ { "X-Empty", "   " }, { "X-Case", "VALUE1" } })
    assert.equal("x-case:VALUE1\nx-empty:\n", block)
  end)

  it("never signs the ALWAYS_UNSIGNABLE headers", function()
    local headers = { { "Host", "h" } }
    for _, name in ipairs({ "Authorization", "Connection", "Expect", "Keep-Alive",
                            "Proxy-Authorization", "TE", "Trailer", "Transfer-Encoding",
                            "Upgrade", "User-Agent", "X-Amzn-Trace-Id" }) do
      headers[#headers + 1] = { name, "v" }
    end
    local block, signed = sigv4.canonical_headers(headers)
    assert.equal("host:h\n", block)
    assert.equal("host", signed)
  end)

  it("accepts a number as a value and an empty list", function()
    assert.equal("content-length:13\n", (sigv4.canonical_headers({ { "Content-Length", 13 } })))
    local block, signed = sigv4.canonical_headers({})
    assert.equal("", block)
    assert.equal("", signed)
  end)
end)

describe("the hashes and the signing key", function()
  it("hashes with SHA-256 (FIPS 180-2 examples)", function()
    assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", sigv4.sha256_hex(""))
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", sigv4.sha256_hex("abc"))
  end)

  it("computes HMAC-SHA256 (RFC 4231 test case 2)", function()
    assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      sigv4.hmac_sha256_hex("Jefe", "what do ya want for nothing?"))
  end)

  it("derives the suite's signing key given in its README", function()
    assert.equal("938127b5336810ddb6a5d6af445fcac9e371f9ed418ed386b022aed82901be75",
      sigv4.signing_key_hex("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "service"))
  end)

  it("agrees with Python's hashlib and hmac on binary and large inputs", function()
    local big = string_rep("0123456789abcdef", 65536)  -- 1 MiB
    local inputs = { "", "a\0b", "\xff\xfe\xc3\x28", big }
    local script = [==[
import hashlib, hmac, json, sys
inp = json.load(open(sys.argv[1]))
b = lambda h: bytes.fromhex(h)
def mac(k, d): return hmac.new(k, d, hashlib.sha256).digest()
def key(secret, date, region, service):
    k = mac(b"AWS4" + secret, date)
    for part in (region, service, b"aws4_request"):
        k = mac(k, part)
    return k.hex()
print(json.dumps({
  "sha": [hashlib.sha256(b(x)).hexdigest() for x in inp["data"]],
  "hmac": [mac(b(k), b(d)).hex() for k, d in inp["pairs"]],
  "key": key(b(inp["secret"]), b"20240115", b"eu-west-1", b"medical-imaging"),
  "sts_hash": hashlib.sha256(b(inp["creq"])).hexdigest(),
}))
]==]
    local pairs_in = { { "", "data" }, { "k\0ey", "\0" }, { big, "x" }, { "key", big } }
    local creq = "POST\n/\n\nhost:h\0\xff\n\nhost\n" .. string_rep("e", 64)
    local hexed = {}
    for i, p in ipairs(pairs_in) do hexed[i] = { oracle.hex(p[1]), oracle.hex(p[2]) } end
    local data = {}
    for i, s in ipairs(inputs) do data[i] = oracle.hex(s) end
    local want = oracle.run(script, {
      data = data, pairs = hexed, secret = oracle.hex("s3cr\0t/+="), creq = oracle.hex(creq),
    })
    for i, s in ipairs(inputs) do assert.equal(want.sha[i], sigv4.sha256_hex(s)) end
    for i, p in ipairs(pairs_in) do assert.equal(want.hmac[i], sigv4.hmac_sha256_hex(p[1], p[2])) end
    assert.equal(want.key, sigv4.signing_key_hex("s3cr\0t/+=", "20240115", "eu-west-1", "medical-imaging"))
    assert.equal("AWS4-HMAC-SHA256\n20240115T093000Z\n20240115/eu-west-1/medical-imaging/aws4_request\n"
      .. want.sts_hash,
      sigv4.string_to_sign("20240115T093000Z", "20240115/eu-west-1/medical-imaging/aws4_request", creq))
  end)
end)

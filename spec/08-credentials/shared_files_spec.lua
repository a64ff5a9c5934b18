-- The shared files (~/.aws/config, ~/.aws/credentials) read as botocore
-- reads them: Debian's python3-botocore (configloader.raw_config_parse and
-- build_profile_map) is the oracle for every file below, and Python's
-- shlex.split for credential_process command lines.
local helpers = require "helpers"
local config = require "healthimaging.config"
local core = require "healthimaging.core"

local ORACLE = [==[
import json, os, shlex, sys, tempfile
import botocore.configloader as cl
out = []
for text in json.load(sys.stdin):
    fd, path = tempfile.mkstemp()
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode("latin-1"))
    try:
        raw = cl.raw_config_parse(path)
        built = cl.build_profile_map(raw)
        services = {}
        for key, values in raw.items():
            if key.startswith("services"):
                try:
                    parts = shlex.split(key)
                except ValueError:
                    continue
                if len(parts) == 2:
                    services[parts[1]] = values
        out.append({"raw": raw, "profiles": built["profiles"], "services": services})
    except Exception as e:
        out.append({"error": type(e).__name__})
    finally:
        os.remove(path)
print(json.dumps(out))
]==]

-- Files as bytes (each byte is one latin-1 character for the oracle).
local FILES = {
  { "profiles, spacing and quotes",
    "[default]\nregion = us-east-1\n[profile  a ]\nregion=eu-west-1\n[profile \"my name\"]\noutput = json\n" },
  { "full-line comments, no inline comments",
    "# top\n[default]\n; semi\n   # indented comment\nregion = us-east-1 # not a comment\nx = a;b\n" },
  { "':' as delimiter, keys lowercased and trimmed",
    "[default]\nRegion: us-west-2\nSome Key   =   spaced value  \nurl = http://h:1/p\n" },
  { "nested blocks, blank lines inside, nested keys keep their case",
    "[services local]\nmedical_imaging =\n  endpoint_url = http://127.0.0.1:8089\n\n  Other = v\n"
      .. "sts =\n    endpoint_url = http://127.0.0.1:9\n[default]\nservices = local\ns3 =\n\tmax = 10\n" },
  { "a continued value that does not start empty stays text", "[default]\nregion = us-east-1\n  more text\n" },
  { "[DEFAULT] gives its keys to every section",
    "[DEFAULT]\nregion = ap-south-1\n[default]\noutput = json\n[profile b]\nregion = eu-west-3\n" },
  { "the later of [default] and [profile default] wins",
    "[profile default]\nregion = us-west-1\n[default]\noutput = text\n" },
  { "CRLF and lone CR line ends", "[default]\r\nregion = us-east-2\r\n[profile c]\routput = json\r" },
  { "odd section names: [profilex y], [profile], three words, unbalanced quotes",
    "[profilex y]\nk = 1\n[profile]\nk = 2\n[profile a b]\nk = 3\n[profile \"q]\nk = 4\n[sso-session s]\nk = 5\n" },
  { "junk after a section header", "[default] # trailing\nregion = us-east-1\n[a]b]\nk = v\n" },
  { "empty values and '=' inside values", "[default]\nempty =\nexpr = a = b = c\ncolon = a:b\n" },
  { "an indented header after a key is a continuation", "[default]\nregion = x\n  [profile b]\nnext = 1\n" },
  { "indented keys at the start of a section", "[default]\n   region = x\n   output = json\n" },
  { "an empty file", "" },
  { "only comments", "# nothing\n; here\n" },
  { "error: a key before any section", "region = us-east-1\n[default]\n" },
  { "error: a section twice", "[default]\na = 1\n[default]\nb = 2\n" },
  { "error: a key twice (case-insensitive)", "[default]\nRegion = a\nregion = b\n" },
  { "error: a line that is neither", "[default]\njust words\n" },
  { "error: a nested line without '='", "[default]\ns3 =\n  no equals here\n" },
  { "error: an empty key", "[default]\n = value\n" },
  { "error: bytes that are not UTF-8", "[default]\nregion = \255\254\n" },
  { "a UTF-8 BOM is not skipped (so the header is not one)", "\239\187\191[default]\nregion = x\n" },
}

local function decode(s)
  return core.json_decode(s)
end

describe("the shared files", function()
  local oracle

  setup(function()
    local texts = {}
    for i, f in ipairs(FILES) do texts[i] = f[2] end
    -- bytes -> latin-1 JSON strings, so that every byte reaches the oracle as is
    local json_texts = {}
    for i, t in ipairs(texts) do
      json_texts[i] = '"' .. t:gsub('[%c"\\\128-\255]', function(c)
        return string.format("\\u%04x", c:byte())
      end) .. '"'
    end
    oracle = decode(helpers.python(ORACLE, "[" .. table.concat(json_texts, ",") .. "]"))
  end)

  for i, f in ipairs(FILES) do
    it("parse as botocore does: " .. f[1], function()
      local want = oracle[i]
      local sections, why = config.parse_ini(f[2])
      if want.error then
        assert.is_nil(sections, "botocore refuses this file (" .. want.error .. ")")
        assert.is_string(why)
        return
      end
      assert.is_table(sections, tostring(why))
      local ok, where = helpers.same(want.raw, sections)
      assert.is_true(ok, "sections differ at " .. tostring(where))
      local path = os.tmpname()
      helpers.write(path, f[2])
      helpers.with_aws_env({ AWS_CONFIG_FILE = path }, function()
        local files = config.load_files()
        ok, where = helpers.same(want.profiles, files.config_profiles)
        assert.is_true(ok, "profiles differ at " .. tostring(where))
        ok, where = helpers.same(want.services, files.services)
        assert.is_true(ok, "services differ at " .. tostring(where))
      end)
      os.remove(path)
    end)
  end

  it("lay the credentials file's section over the config file's profile", function()
    local cfg, cred = os.tmpname(), os.tmpname()
    helpers.write(cfg, "[profile p]\nregion = eu-west-1\noutput = json\n")
    helpers.write(cred, "[p]\nregion = eu-north-1\naws_access_key_id = AKID\n[profile p]\nregion = nowhere\n")
    helpers.with_aws_env({ AWS_CONFIG_FILE = cfg, AWS_SHARED_CREDENTIALS_FILE = cred }, function()
      local p = config.load_profile("p", "option")
      assert.are.same({ region = "eu-north-1", output = "json", aws_access_key_id = "AKID" }, p.config)
      assert.are.same({ region = "eu-west-1", output = "json" }, p.config_file)
      assert.are.equal("nowhere", config.load_files().profiles["profile p"].region)
    end)
    os.remove(cfg)
    os.remove(cred)
  end)

  it("find the files through AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE, expanding ~ and $VARS", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. helpers.shell_quote(dir .. "/.aws")))
    helpers.write(dir .. "/.aws/config", "[default]\nregion = sa-east-1\n")
    helpers.write(dir .. "/.aws/credentials", "[default]\naws_access_key_id = AKIDHOME\n")
    helpers.write(dir .. "/other", "[default]\nregion = af-south-1\n")
    helpers.with_aws_env({ HOME = dir, AWS_CONFIG_FILE = false, AWS_SHARED_CREDENTIALS_FILE = false }, function()
      local p = config.load_profile("default")
      assert.are.equal("sa-east-1", p.config.region)
      assert.are.equal("AKIDHOME", p.credentials.aws_access_key_id)
    end)
    helpers.with_aws_env({ HOME = dir, SPEC_DIR = dir, AWS_CONFIG_FILE = "$SPEC_DIR/other" }, function()
      assert.are.equal("af-south-1", config.load_profile("default").config.region)
    end)
    helpers.with_aws_env({ HOME = dir, SPEC_DIR = dir, AWS_CONFIG_FILE = "${SPEC_DIR}/other" }, function()
      assert.are.equal("af-south-1", config.load_profile("default").config.region)
    end)
    helpers.with_aws_env({ HOME = dir, AWS_CONFIG_FILE = "~/other" }, function()
      assert.are.equal("af-south-1", config.load_profile("default").config.region)
    end)
    assert.are.equal("$HEALTHIMAGING_SPEC_UNSET/x", config.expand_path("$HEALTHIMAGING_SPEC_UNSET/x"))
    os.execute("rm -rf " .. helpers.shell_quote(dir))
  end)

  it("treat a missing file and a folder as no file", function()
    helpers.with_aws_env({ AWS_CONFIG_FILE = "/", AWS_SHARED_CREDENTIALS_FILE = "/nonexistent/x" }, function()
      local files = config.load_files()
      assert.are.same({}, files.profiles)
    end)
  end)

  it("report a file that cannot be parsed with its path and line, not its content", function()
    local path = os.tmpname()
    helpers.write(path, "[default]\naws_secret_access_key\nsecret-value-on-its-own-line\n")
    helpers.with_aws_env({ AWS_SHARED_CREDENTIALS_FILE = path }, function()
      local ok, err = pcall(config.load_files)
      assert.is_false(ok)
      assert.are.equal("ConfigParseError", err.code)
      assert.matches(path, err.message, 1, true)
      assert.matches("line 2", err.message, 1, true)
      assert.is_nil(err.message:find("secret-value", 1, true))
    end)
    os.remove(path)
  end)
end)

describe("credential_process command lines", function()
  local LINES = {
    "/usr/bin/aws-vault export --format=json work",
    "tool 'a b' \"c d\" e\\ f",
    [[tool "say \"hi\"" 'it''s' "back\\slash" "keep\n" x\y]],
    "tool '' \"\" end",
    "  leading   and\ttrailing  ",
    "tool $HOME `date` ; rm -rf / | cat > out",
    "tool 'unclosed",
    "tool \"unclosed",
    "tool trailing\\",
    "",
  }

  it("split as Python's shlex.split does (no shell)", function()
    local code = [[
import json, shlex, sys
out = []
for s in json.load(sys.stdin):
    try:
        out.append(shlex.split(s))
    except ValueError:
        out.append(False)
print(json.dumps(out))
]]
    local quoted = {}
    for i, l in ipairs(LINES) do
      quoted[i] = '"' .. l:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
    end
    local want = core.json_decode(helpers.python(code, "[" .. table.concat(quoted, ",") .. "]"))
    for i, l in ipairs(LINES) do
      local got = config.shell_split(l)
      if want[i] == false then
        assert.is_nil(got, "shlex refuses line " .. i)
      else
        assert.are.same(want[i], got, "line " .. i)
      end
    end
  end)
end)

rockspec_format = "3.0"
package = "healthimaging"
version = "0.1.0-1"
source = {
  url = "git+https://example.invalid/healthimaging.git",
  tag = "v0.1.0",
}
description = {
  summary = "AWS HealthImaging SearchImageSets client for Lua, with a C core",
  detailed = [[
    Searches AWS HealthImaging image sets (DICOM studies and series) through
    SearchImageSets and pages through the results with a coroutine-based
    paginator that follows boto3's PaginationConfig and resume tokens.
    SigV4 with OpenSSL, HTTP with libcurl, JSON with a private lua-cjson.
  ]],
  license = "Apache-2.0",
}
dependencies = {
  "lua >= 5.4, < 5.5",
  "lua-cjson >= 2.1.0",
}
external_dependencies = {
  CURL = { header = "curl/curl.h", library = "curl" },
  CRYPTO = { header = "openssl/evp.h", library = "crypto" },
}
test_dependencies = { "busted" }
test = { type = "busted" }
build = {
  type = "builtin",
  modules = {
    ["healthimaging"] = "lua/healthimaging.lua",
    ["healthimaging.client"] = "lua/healthimaging/client.lua",
    ["healthimaging.config"] = "lua/healthimaging/config.lua",
    ["healthimaging.credentials"] = "lua/healthimaging/credentials.lua",
    ["healthimaging.endpoints"] = "lua/healthimaging/endpoints.lua",
    ["healthimaging.errors"] = "lua/healthimaging/errors.lua",
    ["healthimaging.model"] = "lua/healthimaging/model.lua",
    ["healthimaging.paginator"] = "lua/healthimaging/paginator.lua",
    ["healthimaging.request"] = "lua/healthimaging/request.lua",
    ["healthimaging.retry"] = "lua/healthimaging/retry.lua",
    ["healthimaging.time"] = "lua/healthimaging/time.lua",
    ["healthimaging.token"] = "lua/healthimaging/token.lua",
    ["healthimaging.validate"] = "lua/healthimaging/validate.lua",
    ["healthimaging.core"] = {
      sources = { "csrc/hi_core.c", "csrc/hi_sigv4.c", "csrc/hi_http.c", "csrc/hi_json.c", "csrc/hi_proc.c" },
      libraries = { "curl", "crypto" },
      incdirs = { "$(CURL_INCDIR)", "$(CRYPTO_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(CRYPTO_LIBDIR)" },
      defines = {},
    },
  },
  install = {
    bin = {
      ["healthimaging"] = "bin/healthimaging",
    },
  },
}

#!/bin/sh
# Installs, with apt-get, the Debian packages the build, the tests and the
# demo need, skipping those already there. Used by `make demo` and .ci/run.
# Needs root (or sudo) only when something is missing.
set -eu

PACKAGES="build-essential pkg-config lua5.4 liblua5.4-dev lua-cjson lua-busted lua-check
libcurl4-openssl-dev libssl-dev openssl python3 python3-pydicom python3-botocore python3-boto3 ca-certificates
clang libclang-rt-14-dev llvm valgrind"

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
# Node.js and npm run the JS SDK of `make conformance` (peers/). Checked by
# command: a NodeSource nodejs package carries its own npm, and Debian's npm
# package would conflict with it.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing="$missing nodejs npm"
fi

if [ -z "$missing" ]; then
  exit 0
fi

echo "installing:$missing"
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: these packages are missing and I am not root:$missing" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing

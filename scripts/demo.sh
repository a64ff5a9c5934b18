#!/bin/sh
# The demo behind `make demo`: serves the imported pydicom files with
# healthimaging-local on a free port, runs searches with bin/healthimaging,
# and stops the emulator again. Expects DATA and DATASTORE (the Makefile sets them).
set -eu
cd "$(dirname "$0")/.."
: "${DATA:=build/demo/datastore.json}"
: "${DATASTORE:=healthimagingdemodatastore000001}"

fifo_dir=$(mktemp -d)
mkfifo "$fifo_dir/out"
bin/healthimaging-local serve --data "$DATA" --port 0 >"$fifo_dir/out" 2>"$fifo_dir/log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$fifo_dir"' EXIT INT TERM
exec 3<"$fifo_dir/out"
read -r first <&3
url=${first#listening on }
echo "healthimaging-local is serving $DATA on $url"

# The emulator's documented default credentials.
export AWS_ACCESS_KEY_ID=AKIDLOCALHEALTHIMAGING
export AWS_SECRET_ACCESS_KEY=healthimaging-local-secret
export AWS_REGION=us-east-1

run() {
  echo
  echo "\$ healthimaging search-image-sets $*"
  bin/healthimaging search-image-sets --endpoint-url "$url" --datastore-id "$DATASTORE" "$@"
}

run --output table --max-items 10

run --output table --search-criteria '{"filters":[{"operator":"BETWEEN","values":[
  {"DICOMStudyDateAndTime":{"DICOMStudyDate":"19990101"}},
  {"DICOMStudyDateAndTime":{"DICOMStudyDate":"20101231"}}]}],
  "sort":{"sortField":"DICOMStudyDateAndTime","sortOrder":"ASC"}}'

echo
echo "\$ ${LUA:-lua5.4} scripts/demo.lua $url $DATASTORE"
"${LUA:-lua5.4}" scripts/demo.lua "$url" "$DATASTORE"

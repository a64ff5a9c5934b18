#!/bin/sh
# Prints the one closing line of `make test`, "N passed, M failed", from the
# logs of its runners: busted's "S successes / F failures / E errors" and
# unittest's "Ran N tests" followed by OK or FAILED (failures=.., errors=..).
# Usage: test-summary.sh BUSTED_LOG UNITTEST_LOG
set -eu
busted_log=$1
unittest_log=$2
awk '
  FILENAME == ARGV[1] && / successes \/ / {
    gsub(/\033\[[0-9;]*m/, "")
    passed += $1; failed += $4 + $7
  }
  FILENAME == ARGV[2] && /^Ran [0-9]+ tests? in / { ran += $2 }
  FILENAME == ARGV[2] && /^FAILED \(/ {
    line = $0
    while (match(line, /(failures|errors)=[0-9]+/)) {
      n = substr(line, RSTART, RLENGTH); sub(/.*=/, "", n); bad += n
      line = substr(line, RSTART + RLENGTH)
    }
  }
  END { printf "%d passed, %d failed\n", passed + ran - bad, failed + bad }
' "$busted_log" "$unittest_log"

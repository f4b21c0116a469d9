#!/usr/bin/env bash
# Runs every test with -race and -v into tmp/test.log; prints the package
# results, the failures in full, and which tests were skipped. Under CI
# (CI=true) a skipped test fails the run: CI installs everything a test needs.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p tmp
log=tmp/test.log
# Everything runs here: TAPFW_NO_KERNEL (make test-unit's) would skip the
# kernel tests.
unset TAPFW_NO_KERNEL
# -tags kernelcheck adds pkg/explain's check of every explained packet
# against the real kernel.
go test -race -tags kernelcheck -count=1 -timeout 30m -v ./... >"$log" 2>&1
status=$?
if [ $status -ne 0 ]; then
  grep -E -B2 -A30 -- '--- FAIL|^panic:' "$log" | head -400
fi
grep -E '^(ok|FAIL|\?)\s' "$log"
skipped=$(grep -E -- '--- SKIP' "$log" || true)
passed=$(grep -cE -- '--- PASS' "$log" || true)
failed=$(grep -cE -- '--- FAIL' "$log" || true)
nskipped=$(printf '%s' "$skipped" | grep -c . || true)
if [ -n "$skipped" ]; then
  echo "skipped:"
  echo "$skipped"
fi
echo "tests: $passed passed, $failed failed, $nskipped skipped"
[ $status -eq 0 ] || exit $status
# The fuzz targets, each for a budget of executions (see scripts/fuzz.sh).
if [ "$(id -u)" -eq 0 ]; then
  # Budgets in executions, not seconds (see scripts/fuzz.sh): about 15 s
  # each on this machine.
  FUZZTIME_FuzzParse=${FUZZTIME_FuzzParse:-100000x} FUZZTIME_FuzzRender=${FUZZTIME_FuzzRender:-3000x} \
    FUZZTIME_FuzzExplainNFT=${FUZZTIME_FuzzExplainNFT:-100000x} FUZZTIME_FuzzApply=${FUZZTIME_FuzzApply:-30000x} \
    scripts/fuzz.sh >tmp/fuzz.log 2>&1
  fstatus=$?
  grep -E '^== ' tmp/fuzz.log
  if [ $fstatus -ne 0 ]; then
    tail -60 tmp/fuzz.log
    echo "fuzzing failed (full log in tmp/fuzz.log)"
    exit $fstatus
  fi
  echo "fuzzing: every target ran its budget without a failure (log in tmp/fuzz.log)"
elif [ "${CI:-}" = true ]; then
  echo "CI: fuzzing needs root"
  exit 1
fi
if [ -n "$skipped" ] && [ "${CI:-}" = true ]; then
  echo "CI: no test may be skipped here"
  exit 1
fi

#!/usr/bin/env bash
# Runs every Go fuzz target of the repository (func FuzzXxx in a _test.go
# file) for a bounded time each, as root, and exits non-zero if any fails.
#
#   FUZZTIME=20s          time per target (any `go test -fuzztime` value)
#   FUZZTIME_<Target>=Nx  that target's budget instead, e.g. FUZZTIME_FuzzRender=3000x:
#                         a count of executions has no wall-clock deadline, and
#                         Go 1.26's fuzz coordinator can fail a target with a bare
#                         "context deadline exceeded" when a duration ends while a
#                         worker is busy (go.dev/issue/75804, fixed in Go 1.27)
#   FUZZ_PARALLEL=N       fuzz workers per target (default: GOMAXPROCS)
#   FUZZMINIMIZETIME=50x  how long each new input is shrunk (go test -fuzzminimizetime):
#                         Go's default of 60s per input starves a target whose
#                         seeds are kilobytes (a listing of nft rules) of executions
#
# Root is needed because FuzzRender hands its restore files to
# iptables-restore, and FuzzApply applies its plans over netlink, inside a
# network namespace of their own (one per fuzz worker, named
# tfwfz<pid>-*); the host's own netfilter state is never
# touched. A failing input is saved under <package>/testdata/fuzz/<target>/
# and replays with `go test ./<package> -run <target>/<file>`.
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-20s}
if [ "$(id -u)" -ne 0 ]; then
  echo "fuzz.sh: run as root (FuzzRender runs iptables-restore in a namespace)" >&2
  exit 2
fi

# The namespaces of this run, so that any a killed worker leaves go too.
export TAPFW_FUZZ_NS="fz$$"
cleanup() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep "^tfw${TAPFW_FUZZ_NS}-" |
    while read -r ns; do ip netns delete "$ns"; done
}
trap cleanup EXIT

targets=$(find . -name '*_test.go' -not -path './vendor/*' -not -path './.git/*' -not -path './tmp/*' | sort)
status=0
count=0
for file in $targets; do
  for name in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*\*testing\.F).*/\1/p' "$file"); do
    pkg=$(dirname "$file")
    count=$((count + 1))
    budget_var="FUZZTIME_${name}"
    budget=${!budget_var:-$FUZZTIME}
    echo "== $name ($pkg, $budget)"
    if ! go test "$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "$budget" -fuzzminimizetime "${FUZZMINIMIZETIME:-50x}" ${FUZZ_PARALLEL:+-parallel "$FUZZ_PARALLEL"}; then
      echo "== $name FAILED"
      status=1
    fi
  done
done
if [ "$count" -eq 0 ]; then
  echo "fuzz.sh: no fuzz targets found" >&2
  exit 2
fi
exit $status

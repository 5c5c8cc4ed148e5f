#!/usr/bin/env bash
# Fuzzes every decoder of a file, flag, record or packet hitless reads.
#   bash hack/fuzz.sh [regexp]    fuzz the targets matching regexp (default: all),
#                                 each for HITLESS_FUZZTIME (default 30s)
#   bash hack/fuzz.sh --check     only check that every Fuzz function is listed
# The seed corpora (testdata/fuzz and the f.Add calls) run as plain tests in
# every `go test`, CI's included. Fuzzing itself rebuilds every dependency
# with coverage instrumentation (about 10 minutes on 2 cores before the
# first input), so CI runs only --check and this runs by hand or nightly.
# A crash found is written to the package's testdata/fuzz and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

# package target
targets=$(cat <<'TARGETS'
component/manifest FuzzParse
component FuzzLoadValidate
component/chart FuzzSplit
component/release FuzzRevision
check/params FuzzParseNetwork
check/params FuzzParseMatrix
check FuzzRecord
check/catalog FuzzAgentReport
engine/journal FuzzParse
engine/migrate/plan FuzzParse
engine/roll FuzzBatch
engine/roll FuzzSpec
engine/roll FuzzJobParams
kube/store FuzzUnpack
controller FuzzUntar
cli/cluster FuzzFault
cli/cluster FuzzLabels
localcluster FuzzState
localcluster/kubelet FuzzParseImage
measure FuzzProbeResult
measure/probe FuzzPacket
measure/agent FuzzProbeRequest
measure/agent FuzzMeminfo
measure/agent FuzzKernelConfig
measure/agent FuzzResolvConf
measure/agent FuzzProcNet
measure/agent FuzzModuleLines
TARGETS
)

# Every fuzz target in the tree is in the list.
found=$(grep -rl --include='*_test.go' '^func Fuzz' internal | while read -r f; do
  grep -o '^func Fuzz[A-Za-z0-9]*' "$f" | sed "s|^func |$(dirname "${f#internal/}") |"
done | sort)
missing=$(comm -23 <(echo "$found") <(echo "$targets" | sort))
if [ -n "$missing" ]; then
  echo "fuzz targets not in hack/fuzz.sh's list:"; echo "$missing"; exit 1
fi
stale=$(comm -13 <(echo "$found") <(echo "$targets" | sort))
if [ -n "$stale" ]; then
  echo "hack/fuzz.sh lists fuzz targets that are gone:"; echo "$stale"; exit 1
fi
if [ "${1:-}" = "--check" ]; then
  echo "$(echo "$targets" | wc -l) fuzz targets, every one listed"
  exit 0
fi
want="${1:-.}"

# Go's fuzzing engine can fail at the -fuzztime boundary without finding
# anything (golang/go#51484, #56238: "context deadline exceeded", a worker
# "hung or terminated unexpectedly"). A finding always writes its input
# ("Failing input written to"): that fails the run at once. Any other
# failure is printed whole and the target fuzzed once more; failing again
# fails the run.
fuzzlog=$(mktemp)
trap 'rm -f "$fuzzlog"' EXIT
fuzz() {
  go test -short -run '^$' -fuzz "^${2}\$" -fuzztime "${HITLESS_FUZZTIME:-30s}" -fuzzminimizetime 10x "./internal/$1" </dev/null >"$fuzzlog" 2>&1
}
while read -r pkg target; do
  [[ "$pkg $target" =~ $want ]] || continue
  echo "-- $pkg $target"
  if fuzz "$pkg" "$target"; then tail -n 3 "$fuzzlog"; continue; fi
  cat "$fuzzlog"
  if grep -q 'Failing input written to' "$fuzzlog"; then
    # The input, for whoever reads this log without the machine.
    sed -n 's/.*Failing input written to //p' "$fuzzlog" | while read -r f; do cat "internal/$pkg/$f"; done
    exit 1
  fi
  echo "-- $pkg $target: the engine failed without an input that fails; fuzzing it once more"
  if ! fuzz "$pkg" "$target"; then cat "$fuzzlog"; exit 1; fi
  tail -n 3 "$fuzzlog"
done <<<"$targets"

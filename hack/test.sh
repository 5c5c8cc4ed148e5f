#!/usr/bin/env bash
# The test command of README.md, run by CI as is: formatting, vet, lint, unit
# tests with the race detector, a short fuzz of the parsers, and the
# integration tests on real local clusters. It builds everything it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

GOLANGCI_LINT_VERSION=v2.6.2
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "go modules"
go mod download
go mod verify >/dev/null

step "gofmt"
unformatted=$(gofmt -l cmd internal examples api config)
if [ -n "$unformatted" ]; then
  echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi

step "generated code is current (controller-gen)"
bash hack/gen.sh --check

step "go vet"
go vet ./...

step "golangci-lint $GOLANGCI_LINT_VERSION"
mkdir -p bin
if ! bin/golangci-lint version 2>/dev/null | grep -q "${GOLANGCI_LINT_VERSION#v}"; then
  GOBIN="$PWD/bin" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION"
fi
bin/golangci-lint run ./...

step "unit tests (-race -short)"
go test -race -short -count=1 ./...

step "fuzz every decoder (each for ${HITLESS_FUZZTIME:-8s})"
# package target: every parser of a file, flag, record or packet hitless
# reads. -short keeps the packages' test clusters from starting; a crash
# found is written to the package's testdata/fuzz and fails the run.
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
  echo "fuzz targets not in hack/test.sh's list:"; echo "$missing"; exit 1
fi
# Go's fuzzing engine can fail at the -fuzztime boundary without finding
# anything (golang/go#51484, #56238: "context deadline exceeded", a worker
# "hung or terminated unexpectedly"). A finding always writes its input
# ("Failing input written to"): that fails the run at once. Any other
# failure is printed whole and the target fuzzed once more; failing again
# fails the run.
fuzz() {
  go test -short -run '^$' -fuzz "^${2}\$" -fuzztime "${HITLESS_FUZZTIME:-8s}" -fuzzminimizetime 10x "./internal/$1" </dev/null >"$fuzzlog" 2>&1
}
fuzzlog=$(mktemp)
while read -r pkg target; do
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
rm -f "$fuzzlog"

step "local cluster binaries (built once, then cached)"
go run ./cmd/hitless cluster binaries

# The lab's real data planes (kube-router) program iptables and ipset in
# their nodes' namespaces, as on a real node.
step "the packet lab's packages (iptables, ipset)"
if ! command -v iptables >/dev/null || ! command -v ipset >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq iptables ipset >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq iptables ipset >/dev/null; }
  else
    echo "iptables and ipset are missing and this is not root: the lab's real data-plane tests will fail"
  fi
fi

# The component operations' chaos runs under the race detector, beside the
# others: its SIGKILLed CLI runs are the test binary, race-instrumented too,
# so upgrade, rollback, uninstall and their data-plane rolls (the roll
# engine) run instrumented. (The roll's own crash test counts its runs to
# the kill, which a race-slowed start would skew.)
race='/internal/engine/lifecycle/chaos$'
step "integration tests on local clusters (the chaos under -race)"
go test -race -count=1 -timeout 30m $(go list ./... | grep -E "$race") &
racing=$!
rc=0
go test -count=1 -timeout 30m $(go list ./... | grep -v -E "/internal/measure|/internal/localcluster/kubelet(/flannel)?$|/internal/engine/cutover/migration$|/internal/controller/breach$" | grep -v -E "$race") || rc=$?
wait "$racing" || rc=$?
[ "$rc" -eq 0 ] || exit "$rc"

# The packet measurements (loss windows of a few hundred milliseconds, the
# lab's real data planes) run alone, one package at a time: beside other
# packages' clusters a busy CPU shifts them.
step "packet measurement tests, alone"
go test -p 1 -count=1 -timeout 20m ./internal/measure/... ./internal/localcluster/kubelet/ ./internal/localcluster/kubelet/flannel/ ./internal/engine/cutover/migration/ ./internal/controller/breach/

step "done"

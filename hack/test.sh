#!/usr/bin/env bash
# The test command of README.md, run by CI as is: formatting, vet, lint, the
# fuzz targets' list (hack/fuzz.sh fuzzes them), every package's unit and
# integration tests on real local clusters, the concurrent packages' unit
# tests and the chaos under the race detector, then the packet measurements
# alone. It builds everything it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

GOLANGCI_LINT_VERSION=v2.6.2
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
# Static builds, as the images need them (internal/image's test builds the
# binary): vet, lint and the tests then share one build of every
# dependency. Only the race detector needs cgo (CGO_ENABLED=1 below).
export CGO_ENABLED=0

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

# The fuzz targets: every one is listed in hack/fuzz.sh, which fuzzes them
# by hand or nightly; their seed corpora run below as plain tests.
step "fuzz targets listed (hack/fuzz.sh --check)"
bash hack/fuzz.sh --check

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

# One run of every package's tests, unit and integration (the unit tests
# are the -short subset of the same binaries). Beside it, under the race
# detector: the unit tests of the packages that run goroutines of their own
# (engines, controller, probes, agent, checks), then the component
# operations' chaos: its SIGKILLed CLI runs are the test binary,
# race-instrumented too, so upgrade, rollback, uninstall and their
# data-plane rolls (the roll engine) run instrumented. (The roll's own crash
# test counts its runs to the kill, which a race-slowed start would skew.)
race='/internal/engine/lifecycle/chaos$'
concurrent=$(go list ./internal/engine/... ./internal/controller/... ./internal/measure/... ./internal/kube/... ./internal/check/... ./internal/cli/opcmd ./internal/localcluster ./internal/localcluster/kubelet | grep -v -E "$race")
step "tests: unit and integration on local clusters; beside them, under -race, the concurrent packages' unit tests and the chaos"
( export CGO_ENABLED=1; go test -race -short -count=1 $concurrent && go test -race -count=1 -timeout 30m $(go list ./... | grep -E "$race") ) &
racing=$!
rc=0
# The longest start first, so that the end is not one long package running
# alone. (Three at a time, -p 3, skews the kill tests: a run slowed by the
# load is killed before it has counted itself in the journal.)
pkgs=$(go list ./... | grep -v -E "/internal/measure|/internal/localcluster/kubelet(/flannel)?$|/internal/engine/cutover/migration$|/internal/controller/breach$" | grep -v -E "$race")
long='/internal/engine/lifecycle$|/internal/engine/lifecycle/pairs$|/internal/localcluster/openshift$|/internal/engine/migrate/issu$|/internal/controller$|/internal/demo$|/internal/engine/roll$|/internal/image$'
go test -count=1 -timeout 30m $(grep -E "$long" <<<"$pkgs") $(grep -v -E "$long" <<<"$pkgs") || rc=$?
wait "$racing" || rc=$?
[ "$rc" -eq 0 ] || exit "$rc"

# The packet measurements (loss windows of a few hundred milliseconds, the
# lab's real data planes) run alone, one package at a time: beside other
# packages' clusters a busy CPU shifts them.
step "packet measurement tests, alone"
go test -p 1 -count=1 -timeout 20m ./internal/measure/... ./internal/localcluster/kubelet/ ./internal/localcluster/kubelet/flannel/ ./internal/engine/cutover/migration/ ./internal/controller/breach/

step "done"

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
unformatted=$(gofmt -l cmd internal examples)
if [ -n "$unformatted" ]; then
  echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi

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

step "fuzz the parsers"
go test -run '^$' -fuzz FuzzParse -fuzztime "${HITLESS_FUZZTIME:-20s}" ./internal/component/manifest
go test -run '^$' -fuzz '^FuzzParseNetwork$' -fuzztime "${HITLESS_FUZZTIME:-20s}" ./internal/check/params
go test -run '^$' -fuzz '^FuzzParseMatrix$' -fuzztime "${HITLESS_FUZZTIME:-20s}" ./internal/check/params
go test -run '^$' -fuzz '^FuzzLoadValidate$' -fuzztime "${HITLESS_FUZZTIME:-20s}" ./internal/component
go test -short -run '^$' -fuzz '^FuzzParse$' -fuzztime "${HITLESS_FUZZTIME:-20s}" ./internal/engine/journal
go test -short -run '^$' -fuzz '^FuzzParse$' -fuzztime "${HITLESS_FUZZTIME:-20s}" ./internal/engine/migrate/plan
go test -run '^$' -fuzz '^FuzzSplit$' -fuzztime "${HITLESS_FUZZTIME:-20s}" ./internal/component/chart

step "local cluster binaries (built once, then cached)"
go run ./cmd/hitless cluster binaries

step "integration tests on local clusters"
go test -count=1 -timeout 30m $(go list ./... | grep -v '/internal/measure')

# The packet measurements (loss windows of a few hundred milliseconds) run
# alone: beside other packages' clusters a busy CPU shifts them.
step "packet measurement tests, alone"
go test -count=1 -timeout 15m ./internal/measure/...

step "done"

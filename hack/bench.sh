#!/usr/bin/env bash
# Benchmarks that are too long for CI, each printing a table: run by hand.
#   bash hack/bench.sh [regexp]   (default: every benchmark below)
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
go run ./cmd/hitless cluster binaries >/dev/null
run() { go test -run '^$' -bench "$1" -benchtime 1x -timeout 60m "$2"; }
want="${1:-.}"
for b in \
  "BenchmarkOfflineMigration500Nodes ./internal/localcluster/openshift/bench" \
  "BenchmarkRoll500NodesBatch10Percent ./internal/engine/roll" \
  "BenchmarkRollVsKubectlLoop ./internal/engine/roll" \
  "BenchmarkLab ./internal/localcluster/kubelet/bench" \
  "BenchmarkCutover ./internal/engine/cutover/bench" \
  "BenchmarkController ./internal/controller"; do
  set -- $b
  if [[ "$1" =~ $want ]]; then run "^$1\$" "$2"; fi
done

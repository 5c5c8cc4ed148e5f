#!/usr/bin/env bash
# Every benchmark, too long for CI: run by hand on an idle machine.
#   bash hack/bench.sh [regexp]   (default: all of them)
# Each benchmark's output goes to bench-out/<date>/<name>.txt; then benchstat
# prints every metric as a table, the baselines beside hitless where a
# benchmark has them (its tool=... sub-benchmarks are the columns).
# Some print a table of their own as well. The lab and outage benchmarks
# need root (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
benchstat=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
go run ./cmd/hitless cluster binaries >/dev/null
want="${1:-.}"
out="bench-out/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
ran=()
#        name                                 package                                  -benchtime
for b in \
  "BenchmarkUp                                ./internal/localcluster                  1x" \
  "BenchmarkMemory1000Nodes10000Pods          ./internal/localcluster                  1x" \
  "BenchmarkRollVsKubectlLoop                 ./internal/engine/roll                   1x" \
  "BenchmarkRoll500NodesBatch10Percent        ./internal/engine/roll                   1x" \
  "BenchmarkPreflight                         ./internal/check/catalog                 3x" \
  "BenchmarkUpgrade                           ./internal/engine/lifecycle              1x" \
  "BenchmarkInstallCiliumChart                ./internal/engine/lifecycle              3x" \
  "BenchmarkRenderCilium                      ./internal/component/chart               1s" \
  "BenchmarkPortCilium                        ./internal/component/chart               1s" \
  "BenchmarkOfflineMigration500Nodes          ./internal/localcluster/openshift/bench  1x" \
  "BenchmarkLab                               ./internal/localcluster/kubelet/bench    1x" \
  "BenchmarkCutover                           ./internal/engine/cutover/bench          1x" \
  "BenchmarkController                        ./internal/controller                    1x" \
  "BenchmarkAgentFiftyPeers                   ./internal/measure/probe                 2x" \
  "BenchmarkSmallestOutage                    ./internal/measure/probe                 1x"; do
  set -- $b
  if [[ "$1" =~ $want ]]; then
    go test -run '^$' -bench "^$1\$" -benchtime "$3" -timeout 60m "$2" | tee "$out/$1.txt"
    ran+=("$out/$1.txt")
  fi
done
if ((${#ran[@]} == 0)); then
  echo "no benchmark matches $want" >&2
  exit 2
fi
for f in "${ran[@]}"; do
  echo
  echo "== $(basename "$f" .txt)"
  go run "$benchstat" -col /tool "$f"
done

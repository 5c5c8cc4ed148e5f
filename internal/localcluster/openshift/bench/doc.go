// Package bench holds the benchmark of the offline migration on a
// 500-node OpenShift rehearsal cluster (hack/bench.sh runs it; CI does not).
package bench

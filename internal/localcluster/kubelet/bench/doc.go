// Package bench measures the packet lab: start time, memory and the idle
// noise floor of the modeled data plane (--dataplane netns) beside the
// real one (--dataplane cni with flannel) at 3, 10 and 20 nodes. Its
// benchmarks are run by hand (hack/bench.sh Lab), never in CI.
package bench

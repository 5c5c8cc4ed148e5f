// Package localcluster runs real Kubernetes control planes with KWOK nodes
// on loopback: the embedded cluster of the demo, the tests and benchmarks.
package localcluster

// Package migration holds the tests of the per-node CNI migration on the
// packet lab's real data planes (kube-router and flanneld run by the lab
// kubelet in every node's namespace): the built-in cni-node-by-node plan
// both ways, per-node rollback, measured pod to pod. They need a cluster
// of their own (a node carries one data plane at a time).
package migration

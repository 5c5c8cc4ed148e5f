// Package catalog holds the cluster-level preflight and postflight checks
// and runs them: one snapshot of the cluster, the agents' fresh node
// results folded in, the run recorded in the cluster.
package catalog

// Package issu tests, on a local cluster of its own, the built-in plan
// sample-plugin-issu (seed 004's in-service upgrade of the sample plugin
// from 1.x to 2.0.0: the new controller beside the old, its configuration
// synced while the vRouters move node by node, the old retired, the
// rollback from the middle), and the ISSU and the per-node migration
// (cni-node-by-node, between two DaemonSets) SIGKILLed ten times each.
package issu

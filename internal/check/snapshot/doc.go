// Package snapshot reads what the cluster-level checks look at, once per
// run: one paginated LIST per resource type, in parallel, however many
// nodes and pods the cluster has.
package snapshot

// Package roll is the node-by-node maintenance engine: it plans batches,
// then per node cordons, runs hooks, drains through the Eviction API, runs
// the action, waits, and uncordons, journaling every transition in the
// cluster so any crash is resumed by running the same roll again.
package roll

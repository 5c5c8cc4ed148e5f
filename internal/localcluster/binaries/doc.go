// Package binaries finds, or builds on first use and caches, the pinned
// control-plane binaries that run a local cluster.
package binaries

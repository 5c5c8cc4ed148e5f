// Package lock holds the one-operation-per-cluster lock: a Lease in the
// hitless-system namespace naming the holder, its host, process and start.
package lock

// Package lock holds the one-operation-per-cluster lock: a Lease in the
// hitless-system namespace naming the operation and its holder (host and
// process, or pod and node inside the cluster), renewed while it runs. A
// lapsed lease, or a holder proven gone (its pod or node deleted, or its
// process dead on this host), is taken over.
package lock

// Package eviction holds hitless's drain rules in one place, for the
// preflight checks, the roll's plan and the drain alike: which pods a
// drain leaves (DaemonSet and mirror pods), which it may evict, which
// block it (unmanaged pods, emptyDir data), which can run on one node only,
// which PodDisruptionBudgets cover a pod, and the server-side dry-run
// evictions that predict a refusal.
//
// Unmanaged is seed 003's rule, chosen over kubectl drain's "any
// controller": a pod is managed only when a ReplicationController,
// ReplicaSet, Job, DaemonSet or StatefulSet controls it, the controllers
// that recreate a pod elsewhere (a Deployment's pods belong to its
// ReplicaSet). A pod controlled by anything else (a custom controller, a
// bare owner reference) may not come back when evicted, so hitless treats
// it as unmanaged: the preflight fails on it and a roll refuses to drain
// it without --force.
package eviction

// Package cutover moves a node from one data plane to another: the
// per-node cutover action (switch the node's data-plane label, wait for
// the old data-plane pod to go and the new one to be Ready, remove what
// the old one left on the node through its agent, re-wire the node's
// pod-network pods, verify pod to pod), its inverse for per-node
// rollback, and what is known of whether two data planes reach each
// other while a cluster is mixed.
package cutover

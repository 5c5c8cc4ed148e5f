// Package lab gives each worker of a local cluster a network namespace
// with its own address on a shared bridge, so that probes between nodes
// are real packets through real interfaces, and injects faults into them:
// link down, random loss (nftables numgen), all on this machine.
package lab

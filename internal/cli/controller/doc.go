// Package controller implements `hitless controller`: the in-cluster
// controller's process (run) and its install manifests (manifest).
package controller

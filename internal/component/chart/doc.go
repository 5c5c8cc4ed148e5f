// Package chart renders Helm charts into component sources through the
// Helm SDK, with the cluster's real capabilities (Kubernetes version and
// API versions), so that a chart goes through the same lifecycle as any
// set of manifests.
package chart

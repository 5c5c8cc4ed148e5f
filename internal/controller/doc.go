// Package controller is the in-cluster front end: controller-runtime
// reconcilers that turn hitless.dev custom resources into calls of the same
// engines the CLI calls, and report what they do in the resources' status,
// in Events and in metrics.
package controller

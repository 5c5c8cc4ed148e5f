// Package condition evaluates CEL conditions over Kubernetes objects,
// type-checked against the API server's published schemas the way
// ValidatingAdmissionPolicy expressions are.
package condition

// Package v1alpha1 is the hitless.dev/v1alpha1 API: the custom resources
// the in-cluster controller drives the engines from (NodeRoll).
//
// +kubebuilder:object:generate=true
// +groupName=hitless.dev
package v1alpha1

// Package openshift turns a local cluster into an OpenShift SDN cluster
// to rehearse network migrations on: the real OpenShift CRDs, the objects
// of an SDN cluster, and a simulator — a model, not OpenShift — of what the
// cluster network operator and the machine-config operator do in the
// documented migration procedures (seed 002).
package openshift

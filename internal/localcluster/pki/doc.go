// Package pki generates the certificate authority, serving and client
// certificates, and service-account keys of a local cluster.
package pki

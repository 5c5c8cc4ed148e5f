// Package image builds hitless's container image without Docker: the
// static hitless binary on an empty base, run as a non-root user, written
// as an OCI image layout archive that a registry (crane push) or a
// container runtime (ctr import) accepts, with go-containerregistry.
package image

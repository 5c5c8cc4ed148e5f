// Package release keeps a component's revisions in the cluster: each
// revision's vendor manifests, the objects applied (its inventory), the
// customizations carried into it, and backups of the objects it changed or
// deleted. Records are gzip-compressed JSON in Secrets of hitless-system,
// since manifests may carry credentials; nothing here prints a value.
package release

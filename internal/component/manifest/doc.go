// Package manifest reads Kubernetes objects from YAML files, naming the
// file, document and object in every error.
package manifest

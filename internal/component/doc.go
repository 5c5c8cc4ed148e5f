// Package component works on a component's manifests: it reads them (a
// file, a directory of YAML, or a kustomization directory), checks them
// before any change (parse errors, duplicate objects, namespaces objects
// can land in, images at one release), and ports the user's
// customizations from one release to the next, three-way.
package component

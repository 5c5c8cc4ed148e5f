// Package config embeds hitless's install manifests, the kustomize bases
// crd (generated from api/ by controller-gen), rbac (from the controller's
// markers), manager, agent (from the agent's manifest) and default (all of
// them), and renders them with krusty for `hitless controller manifest`
// and the tests.
package config

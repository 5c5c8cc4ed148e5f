// Package config embeds hitless's install manifests: the CustomResource
// Definitions controller-gen generates from api/ (crd/), for `hitless
// controller manifest` and the tests.
package config

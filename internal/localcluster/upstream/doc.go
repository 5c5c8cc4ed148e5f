// Package upstream locates the shared upstream manifests and CRDs that
// tests read: HITLESS_TESTDATA, or ../shared/testdata beside the repository.
package upstream

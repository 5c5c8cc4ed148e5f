package agent

import (
	_ "embed"
	"strings"
)

//go:embed manifest.yaml
var manifestYAML string

// DefaultImage is the agent image the manifest names unless told.
const DefaultImage = "ghcr.io/hitless-dev/hitless:latest"

// Manifest returns the agent's Namespace, RBAC and DaemonSet with image.
func Manifest(image string) string {
	if image == "" {
		image = DefaultImage
	}
	return strings.Replace(manifestYAML, "image: IMAGE", "image: "+image, 1)
}

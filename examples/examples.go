// Package examples embeds the sample network plugin releases and the sample
// applications, so `hitless demo` works from the binary alone.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed sample-plugin sample-apps flannel-lab
var files embed.FS

// Paths of the embedded sets, relative to FS().
const (
	PluginV1 = "sample-plugin/v1"
	PluginV2 = "sample-plugin/v2"
	// PluginV3 is 2.0.0, which installs beside 1.x for an ISSU.
	PluginV3 = "sample-plugin/v3"
	Apps     = "sample-apps"
	// FlannelLab is flannel's DaemonSet written for the packet lab's
	// real data plane (--dataplane cni).
	FlannelLab = "flannel-lab"
)

// FS returns the embedded examples.
func FS() fs.FS { return files }

// Package examples embeds the sample network plugin releases and the sample
// applications, so `hitless demo` works from the binary alone.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed sample-plugin sample-apps
var files embed.FS

// Paths of the embedded sets, relative to FS().
const (
	PluginV1 = "sample-plugin/v1"
	PluginV2 = "sample-plugin/v2"
	Apps     = "sample-apps"
)

// FS returns the embedded examples.
func FS() fs.FS { return files }

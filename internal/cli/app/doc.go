// Package app wires the hitless command tree and turns its outcome into an
// exit code.
package app

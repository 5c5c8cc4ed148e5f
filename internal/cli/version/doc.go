// Package version implements `hitless version`.
package version

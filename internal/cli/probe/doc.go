// Package probe implements `hitless probe`.
package probe

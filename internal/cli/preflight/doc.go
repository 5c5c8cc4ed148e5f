// Package preflight implements `hitless preflight`.
package preflight

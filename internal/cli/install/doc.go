// Package install implements `hitless install`.
package install

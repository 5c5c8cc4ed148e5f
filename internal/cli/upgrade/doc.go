// Package upgrade implements `hitless upgrade`.
package upgrade

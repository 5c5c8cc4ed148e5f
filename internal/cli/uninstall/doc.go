// Package uninstall implements `hitless uninstall`.
package uninstall

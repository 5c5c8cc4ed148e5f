// Package apply server-side applies sets of objects in dependency order and
// waits until they are really ready, through fluxcd/pkg/ssa and kstatus.
package apply

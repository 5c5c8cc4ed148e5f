// Package chaos holds no code: its tests kill `hitless upgrade`, `hitless
// rollback` and `hitless uninstall` with SIGKILL at random moments, ten
// times each, and restart the API server in the middle of an upgrade and
// an uninstall, on a cluster of their own; re-running the same command
// must finish the operation with every PDB held, no node left cordoned,
// nothing deleted that was not the component's, and one journal that
// counts every run.
package chaos

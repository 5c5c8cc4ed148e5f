// Package checkrun is the command wiring preflight and postflight share:
// flags, the run, the printed report and the exit code.
package checkrun

// Package opcmd holds what the commands of mutating operations share:
// a client from the kubectl flags, exit codes for the engine's errors, and
// the printing of plans, progress and recaps.
package opcmd

// Package profile holds the check profiles: which checks a preflight or
// postflight runs, at which severity, against which thresholds, each
// encoding one vendor procedure.
package profile

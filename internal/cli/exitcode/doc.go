// Package exitcode maps errors to the process exit codes every hitless
// command uses: 0 success, 1 failure, 2 bad input or usage, 3 refused
// because another operation holds the cluster lock.
package exitcode

// Package transient tells API errors worth retrying (the API server
// restarting, overloaded or briefly unreachable) from final ones, and
// retries calls through them.
package transient

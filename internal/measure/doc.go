// Package measure runs probe sessions across the cluster's agents, for a
// standalone measurement or for the length of an operation, gathers their
// numbers into one report, checks them against budgets, and ties every
// loss window to the node and step of the operation that overlapped it.
package measure

// Package check runs checks in parallel, each with a timeout, and reports
// their results in a stable shape (table, JSON, YAML, JUnit).
package check

// Package output prints command results as a table, JSON or YAML, chosen
// by the -o flag every result-printing command shares.
package output

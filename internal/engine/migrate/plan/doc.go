// Package plan is the migration plan document: its types, parsing with
// errors that name the file, step and field, parameters and their
// substitution, and the built-in plans of the seed procedures.
package plan

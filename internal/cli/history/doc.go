// Package history implements `hitless history`.
package history

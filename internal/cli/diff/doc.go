// Package diff implements `hitless diff`.
package diff

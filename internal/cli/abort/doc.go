// Package abort implements `hitless abort`.
package abort

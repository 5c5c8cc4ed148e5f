// Package roll implements `hitless roll`.
package roll

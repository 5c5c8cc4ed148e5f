// Package agent implements `hitless agent`.
package agent

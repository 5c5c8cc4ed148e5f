// Package rollback implements `hitless rollback`.
package rollback

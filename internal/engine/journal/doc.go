// Package journal keeps the record of every hitless operation in the
// cluster, written before each step acts, so a crashed run can resume.
//
// An operation is a ConfigMap named hitless-op-<id> in hitless-system,
// labelled hitless.dev/operation, hitless.dev/kind and hitless.dev/status,
// holding the gzip-compressed JSON of Operation under binaryData
// "operation.json.gz". Writers use optimistic concurrency: a write that
// loses to another (an abort request) re-reads and reports it.
package journal

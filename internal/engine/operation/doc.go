// Package operation is the runtime every kind of hitless operation runs
// on (roll, install, upgrade, rollback, uninstall; migrate and the
// controller next): the questions an operation asks a person (Approver),
// the field names its errors use (FieldError), and the registry through
// which resume, abort and status find the kind of a journaled operation.
package operation

package exitcode

import "errors"

// The exit codes.
const (
	OK     = 0
	Failed = 1
	Usage  = 2
	Locked = 3
)

// Error carries an exit code with the error that caused it.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// BadInput marks err as bad input or usage (exit 2).
func BadInput(err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: Usage, Err: err}
}

// LockHeld marks err as a refusal because the cluster lock is held (exit 3).
func LockHeld(err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: Locked, Err: err}
}

// Of returns the exit code for err: 0 for nil, the code of the outermost
// Error in its chain, else 1.
func Of(err error) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Failed
}

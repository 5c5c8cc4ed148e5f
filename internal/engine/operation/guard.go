package operation

import (
	"context"
	"encoding/json"
	"strings"
)

// Guard watches an operation from outside and may stop it: a probe
// session with a disruption budget (measure.Guard). Any operation can
// attach one; the same guard serves an operation and the rolls inside it.
type Guard interface {
	// Check is asked before each node or step starts (next is the node's
	// name, or StepTarget of the step's); an error stops the operation
	// there, with the error as the reason.
	Check(ctx context.Context, next string) error
	// Aborts says whether a failed Check aborts the operation cleanly
	// instead of pausing it (resumable).
	Aborts() bool
	// Spec is what is journaled with the operation, so that a resume
	// attaches the same guard again.
	Spec() json.RawMessage
}

// Guards starts a guard from a journaled spec: a front end passes it so
// that an operation resumed without a guard gets its journaled one back.
type Guards func(ctx context.Context, spec json.RawMessage) (Guard, error)

// Attach returns the guard to run a resumed operation under: the one the
// caller gave, or the one its journal names started by guards. An
// operation journaled with a guard is never resumed without one.
func Attach(ctx context.Context, given Guard, journaled json.RawMessage, guards Guards) (Guard, error) {
	if given != nil || len(journaled) == 0 {
		return given, nil
	}
	if guards == nil {
		return nil, &FieldError{Field: "guard", Msg: "the operation was started under a guard (" + string(journaled) + "); resume it with the same guard"}
	}
	return guards(ctx, journaled)
}

// StepTarget is what a guard is asked about before a step: next names the
// step, not a node.
func StepTarget(step string) string { return stepPrefix + step }

const stepPrefix = "step "

// Before says what a guard's next is: "node NAME" or "step NAME".
func Before(next string) string {
	if strings.HasPrefix(next, stepPrefix) {
		return next
	}
	return "node " + next
}

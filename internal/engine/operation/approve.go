package operation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// Kinds of question.
const (
	// AskCanary asks whether to go on after a roll's canary batch.
	AskCanary = "canary"
	// AskPreNode asks the operator to stop routing to a node before its
	// drain (seed 003's "stop routing requests to node X").
	AskPreNode = "pre-node"
	// AskPostNode asks the operator to resume routing to a node.
	AskPostNode = "post-node"
)

// Question is what an operation asks before it goes on.
type Question struct {
	Kind string `json:"kind"`
	Node string `json:"node,omitempty"`
	// Step is the step of a migration that asks (its pause step, or the
	// roll step whose canary is done).
	Step string `json:"step,omitempty"`
	Text string `json:"text"`
}

// Approver answers questions: the CLI from the terminal (or --yes), the
// controller from the resource. Approve returns nil to go on, or why not.
type Approver interface {
	Approve(ctx context.Context, q Question) error
}

// ErrNoApprover is returned for a question nobody can answer.
var ErrNoApprover = errors.New("nobody to ask")

// Ask asks a, or refuses when a is nil.
func Ask(ctx context.Context, a Approver, q Question) error {
	if a == nil {
		return fmt.Errorf("%s: %w (approve it: `approve`)", q.Text, ErrNoApprover)
	}
	return a.Approve(ctx, q)
}

// ApproveKinds approves the questions of the listed kinds and refuses the
// others: how a caller that already decided (a component upgrade's
// data-plane roll, the controller's approval field) answers.
type ApproveKinds []string

// Approve implements Approver.
func (k ApproveKinds) Approve(_ context.Context, q Question) error {
	for _, kind := range k {
		if kind == q.Kind {
			return nil
		}
	}
	return fmt.Errorf("%s: not approved", q.Text)
}

// FieldError is bad input: Field names the spec field (as in its JSON),
// which a front end maps to its own name for it (a flag, a resource
// field).
type FieldError struct{ Field, Msg string }

func (e *FieldError) Error() string { return "`" + e.Field + "`: " + e.Msg }

// Hash identifies a spec: its JSON's SHA-256, shortened. Running an
// operation whose spec has the hash of an unfinished one resumes it.
func Hash(spec any) string {
	b, err := json.Marshal(spec)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

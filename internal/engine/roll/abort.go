package roll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/operation"
)

// ErrFinished is returned when aborting or resuming an operation that is over.
var ErrFinished = operation.ErrFinished

// SpecOf decodes the spec journaled with a roll, for resume.
func SpecOf(op *journal.Operation) (Spec, error) {
	var s Spec
	if op.Kind != Kind {
		return s, fmt.Errorf("operation %s is a %s, not a roll: run its command again to resume it (%s)", op.ID, op.Kind, op.Command)
	}
	if err := journal.Current(op); err != nil {
		return s, err
	}
	if err := json.Unmarshal(op.Spec, &s); err != nil {
		return s, fmt.Errorf("reading the spec of operation %s: %w", op.ID, err)
	}
	return s, nil
}

// OperationKind is the roll as the operation registry knows it: its abort
// restores the nodes in flight, its status counts nodes.
func OperationKind() operation.Kind {
	return operation.Kind{Name: Kind, Undo: undo, Describe: describe}
}

// Abort stops roll id cleanly (see operation.Registry.Abort): nodes in
// flight are uncordoned and unmarked, the lock released.
func Abort(ctx context.Context, cs kubernetes.Interface, id, command string, wait time.Duration) (*Journal, error) {
	reg, err := operation.NewRegistry(OperationKind())
	if err != nil {
		return nil, err
	}
	raw, err := reg.Abort(ctx, operation.Cluster{Client: cs}, id, command, wait)
	if raw == nil {
		return nil, err
	}
	op, derr := journal.Decode[Record](raw)
	if derr != nil {
		return nil, errors.Join(err, derr)
	}
	return op, err
}

func describe(raw *journal.Raw) operation.Summary {
	op, err := journal.Decode[Record](raw)
	if err != nil {
		return operation.Summary{Progress: "unreadable", Lines: []string{err.Error()}}
	}
	done := 0
	var lines []string
	for _, n := range op.Record.Nodes {
		if n.Phase == PhaseDone {
			done++
		}
		lines = append(lines, fmt.Sprintf("node %s batch %d: %s %s (action runs %d, resumed %d)", n.Name, n.Batch, n.Phase, n.Outcome, n.ActionRuns, n.Resumed))
	}
	return operation.Summary{Progress: fmt.Sprintf("%d/%d", done, len(op.Record.Nodes)), Lines: lines}
}

// undo restores every node the roll had in flight: only those carry
// anything of ours; a finished node was uncordoned and may have been
// cordoned by someone since.
func undo(ctx context.Context, c operation.Cluster, raw *journal.Raw) error {
	cs := c.Client
	op, err := journal.Decode[Record](raw)
	if err != nil {
		return err
	}
	store := journal.NewStore(cs)
	w := journal.NewWriter(store, op)
	r := &runner{cs: cs, store: store, w: w}
	var errs []error
	for _, n := range op.Record.Nodes {
		if !InFlight(n.Phase) {
			continue
		}
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			errs = append(errs, fmt.Errorf("reading node %s: %w", n.Name, err))
			continue
		case node.Annotations[AnnotationOperation] == op.ID:
			// Our mark is on it, so the cordon (if any) is ours to undo.
			if err := r.patchNode(ctx, n.Name, "", n.CordonedByUs, false); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
				continue
			}
		}
		name := n.Name
		if err := w.Force(ctx, func(op *Journal) {
			n := op.Record.NodeByName(name)
			now := time.Now().UTC()
			closePhase(n, now, "aborted")
			if InFlight(n.Phase) {
				n.Phase, n.Outcome = PhaseAborted, OutcomeSkipped
				n.Error = "aborted in flight; restored by hitless abort"
			}
			n.CordonedByUs = false
		}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

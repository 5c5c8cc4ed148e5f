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
	"github.com/hitless-dev/hitless/internal/engine/lock"
)

// ErrFinished is returned when aborting or resuming an operation that is over.
var ErrFinished = errors.New("operation already finished")

// SpecOf decodes the spec journaled with a roll, for resume.
func SpecOf(op *journal.Operation) (Spec, error) {
	var s Spec
	if op.Kind != Kind {
		return s, fmt.Errorf("operation %s is a %s, not a roll: run its command again to resume it (%s)", op.ID, op.Kind, op.Command)
	}
	if err := json.Unmarshal(op.Spec, &s); err != nil {
		return s, fmt.Errorf("reading the spec of operation %s: %w", op.ID, err)
	}
	return s, nil
}

// Abort stops operation id cleanly: it asks the running process to stop
// and waits for it; when no live process runs it, Abort itself uncordons
// the nodes hitless cordoned, removes its marks, and releases the lock.
func Abort(ctx context.Context, cs kubernetes.Interface, id, command string, wait time.Duration) (*journal.Operation, error) {
	store := journal.NewStore(cs)
	op, err := store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if !op.Status.Resumable() && op.Status != journal.Aborting {
		return op, fmt.Errorf("operation %s is %s: %w", id, op.Status, ErrFinished)
	}
	for attempt := 0; op.Status != journal.Aborting; attempt++ {
		op.Status = journal.Aborting
		op.Message = "abort requested by " + command
		err := store.Put(ctx, op)
		if err == nil {
			break
		}
		if !apierrors.IsConflict(err) || attempt > 5 {
			return nil, err
		}
		if op, err = store.Get(ctx, id); err != nil {
			return nil, err
		}
	}
	// A live runner notices within seconds, cleans its nodes and finishes.
	deadline := time.Now().Add(wait)
	for {
		holder, err := lock.Current(ctx, cs)
		if err != nil {
			return nil, err
		}
		if holder == nil || holder.Operation != id {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("operation %s is still held by %s after %s; run abort again once it stops", id, holder, wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		// A process that died on this host can be taken over at once.
		if lk, err := lock.Acquire(ctx, cs, lock.Self(id, command)); err == nil {
			return finishAbort(ctx, cs, store, id, lk)
		}
	}
	op, err = store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if op.Status == journal.Aborted {
		return op, nil
	}
	lk, err := lock.Acquire(ctx, cs, lock.Self(id, command))
	if err != nil {
		return nil, err
	}
	return finishAbort(ctx, cs, store, id, lk)
}

// finishAbort restores every node the operation touched and marks it Aborted.
func finishAbort(ctx context.Context, cs kubernetes.Interface, store *journal.Store, id string, lk *lock.Lock) (*journal.Operation, error) {
	defer func() { _ = lk.Release(context.WithoutCancel(ctx)) }()
	op, err := store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	r := &runner{cs: cs, store: store}
	w := journal.NewWriter(store, op)
	r.w = w
	var errs []error
	for _, n := range op.Nodes {
		// Only nodes in flight carry anything of ours; a finished node was
		// uncordoned and may have been cordoned by someone since.
		if !inFlight(n.Phase) {
			continue
		}
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			errs = append(errs, fmt.Errorf("reading node %s: %w", n.Name, err))
			continue
		case node.Annotations[AnnotationOperation] == id:
			// Our mark is on it, so the cordon (if any) is ours to undo.
			if err := r.patchNode(ctx, n.Name, "", n.CordonedByUs, false); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
				continue
			}
		}
		name := n.Name
		if err := w.Force(ctx, func(op *journal.Operation) {
			n := op.NodeByName(name)
			now := time.Now().UTC()
			closePhase(n, now, "aborted")
			if inFlight(n.Phase) {
				n.Phase, n.Outcome = PhaseAborted, OutcomeSkipped
				n.Error = "aborted in flight; restored by hitless abort"
			}
			n.CordonedByUs = false
		}); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return w.Snapshot(), fmt.Errorf("aborting %s: %w", id, errors.Join(errs...))
	}
	err = w.Force(ctx, func(op *journal.Operation) {
		op.Status = journal.Aborted
		now := time.Now().UTC()
		op.Finished = &now
	})
	return w.Snapshot(), err
}

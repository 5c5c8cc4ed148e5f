package operation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lock"
)

// Cluster is what the operations talk to.
type Cluster struct {
	Client kubernetes.Interface
	Config *rest.Config
	// Lock, during an abort, is the cluster lock taken for the operation
	// being undone, for the engines its undo drives to use.
	Lock *lock.Lock
}

// Kind is one kind of operation as resume, abort and status know it. A
// new kind plugs in by registering one; none of the three names a kind.
type Kind struct {
	// Name is the journal kind ("roll", "upgrade").
	Name string
	// Undo restores what an unfinished operation did, newest first and
	// only what it did, for an abort; the caller holds the cluster lock
	// and marks the operation Aborted afterwards.
	Undo func(ctx context.Context, c Cluster, op *journal.Raw) error
	// Describe summarizes an operation for status.
	Describe func(op *journal.Raw) Summary
}

// Summary is what status shows of one operation.
type Summary struct {
	// Progress is a short count ("3/5 nodes", "4 steps").
	Progress string `json:"progress"`
	// Lines detail where each node or step is.
	Lines []string `json:"lines,omitempty"`
}

// Registry holds the kinds of operation.
type Registry struct {
	kinds map[string]Kind
}

// NewRegistry returns a registry of kinds.
func NewRegistry(kinds ...Kind) (*Registry, error) {
	r := &Registry{kinds: map[string]Kind{}}
	for _, k := range kinds {
		if err := r.Register(k); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds a kind; a name already taken is refused.
func (r *Registry) Register(k Kind) error {
	if k.Name == "" || k.Undo == nil || k.Describe == nil {
		return errors.New("registering an operation kind: a name, Undo and Describe are required")
	}
	if _, ok := r.kinds[k.Name]; ok {
		return fmt.Errorf("operation kind %q is already registered", k.Name)
	}
	r.kinds[k.Name] = k
	return nil
}

// Names lists the registered kinds, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.kinds))
	for n := range r.kinds {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// ErrUnknownKind is wrapped for an operation of a kind nobody registered.
var ErrUnknownKind = errors.New("unknown kind of operation")

// Lookup returns the kind of op.
func (r *Registry) Lookup(op *journal.Operation) (Kind, error) {
	k, ok := r.kinds[op.Kind]
	if !ok {
		return Kind{}, fmt.Errorf("operation %s is a %q: %w (known: %v)", op.ID, op.Kind, ErrUnknownKind, r.Names())
	}
	return k, nil
}

// Describe summarizes op through its kind; an unknown kind shows its
// steps only.
func (r *Registry) Describe(op *journal.Raw) Summary {
	if k, err := r.Lookup(&op.Operation); err == nil {
		return k.Describe(op)
	}
	return DescribeSteps(op)
}

// DescribeSteps summarizes an operation that runs in journaled steps.
func DescribeSteps(op *journal.Raw) Summary {
	done := 0
	var lines []string
	for _, s := range op.Steps {
		state := "in progress or interrupted"
		switch {
		case s.Error != "":
			state = "failed: " + s.Error
		case s.Finished != nil:
			state = "done"
			done++
		}
		lines = append(lines, fmt.Sprintf("step %s (runs %d): %s", s.Name, s.Runs, state))
	}
	return Summary{Progress: fmt.Sprintf("%d steps", done), Lines: lines}
}

// ErrFinished is returned when aborting an operation that is over.
var ErrFinished = errors.New("operation already finished")

// Abort stops operation id cleanly, whatever its kind: it asks the process
// running it to stop (a live runner notices within seconds, restores what
// it has in flight and finishes) and waits up to wait for it; when no live
// process runs it, Abort takes the lock, has the kind undo what the
// operation did, and marks it Aborted.
func (r *Registry) Abort(ctx context.Context, c Cluster, id, command string, wait time.Duration) (*journal.Raw, error) {
	cs := c.Client
	store := journal.NewStore(cs)
	op, err := store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	kind, err := r.Lookup(&op.Operation)
	if err != nil {
		return nil, err
	}
	if !op.Status.Resumable() && op.Status != journal.Aborting {
		return op, fmt.Errorf("operation %s is %s: %w", id, op.Status, ErrFinished)
	}
	if err := requestAbort(ctx, store, op, command); err != nil {
		return nil, err
	}
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
		// A holder proven gone is taken over at once.
		if lk, err := lock.Acquire(ctx, cs, lock.Self(id, command)); err == nil {
			return undo(ctx, c, store, kind, id, lk)
		}
	}
	if op, err = store.Get(ctx, id); err != nil {
		return nil, err
	}
	if op.Status == journal.Aborted {
		return op, nil
	}
	lk, err := lock.Acquire(ctx, cs, lock.Self(id, command))
	if err != nil {
		return nil, err
	}
	return undo(ctx, c, store, kind, id, lk)
}

// requestAbort marks the operation Aborting, which its runner watches.
func requestAbort(ctx context.Context, store *journal.Store, op *journal.Raw, command string) error {
	for attempt := 0; op.Status != journal.Aborting; attempt++ {
		op.Status = journal.Aborting
		op.Message = "abort requested by " + command
		err := store.Put(ctx, op)
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) || attempt > 5 {
			return err
		}
		fresh, err := store.Get(ctx, op.ID)
		if err != nil {
			return err
		}
		*op = *fresh
	}
	return nil
}

// undo has the kind restore what the operation did, then marks it
// Aborted; the lock is released on the way out.
func undo(ctx context.Context, c Cluster, store *journal.Store, kind Kind, id string, lk *lock.Lock) (*journal.Raw, error) {
	defer func() { _ = lk.Release(context.WithoutCancel(ctx)) }()
	op, err := store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	c.Lock = lk
	if err := kind.Undo(ctx, c, op); err != nil {
		return op, fmt.Errorf("aborting %s: %w", id, err)
	}
	return store.Close(ctx, id, journal.Aborted, "")
}

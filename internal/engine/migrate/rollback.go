package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/kube/condition"
)

// RollbackOptions configure Rollback.
type RollbackOptions struct {
	Command  string
	Approver operation.Approver
	Progress func(string)
	Poll     time.Duration
	// Nodes, when set, rolls back only these nodes: the roll steps that
	// moved them with an inverse action (a cutover) move them back; the
	// migration's other nodes and steps are untouched, and its next run
	// moves them again.
	Nodes []string
	// RollProgress reports the rolls' node lines.
	RollProgress func(roll.Event)
}

// Rollback undoes a migration's finished steps, newest first: each step's
// explicit rollback, or the inverse derived from its backup. Every undo
// is journaled in the migration's journal as rollback-<step>; running it
// again continues where it stopped.
func Rollback(ctx context.Context, c operation.Cluster, id string, opts RollbackOptions) (*Result, error) {
	store := journal.NewStore(c.Client)
	raw, err := store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if raw.Kind != Kind {
		return nil, &operation.FieldError{Field: "id", Msg: fmt.Sprintf("%s is a %s, not a migration", id, raw.Kind)}
	}
	lk, err := lock.Acquire(ctx, c.Client, lock.Self(id, opts.Command))
	if err != nil {
		return nil, err
	}
	defer lk.Close(ctx)
	if len(opts.Nodes) > 0 {
		return returnNodes(ctx, c, store, raw, lk, opts)
	}
	res, runErr := undoSteps(ctx, c, store, raw, lk, opts)
	return res, runErr
}

// returnNodes is Rollback of some nodes under the lock: the migration
// stays open (Paused) so that its next run moves them again.
func returnNodes(ctx context.Context, c operation.Cluster, store *journal.Store, raw *journal.Raw, lk *lock.Lock, opts RollbackOptions) (*Result, error) {
	switch raw.Status {
	case journal.Succeeded, journal.Aborted, journal.Aborting:
		return nil, &operation.FieldError{Field: "nodes", Msg: fmt.Sprintf("migration %s is %s: only an unfinished migration rolls nodes back alone (roll the whole migration back instead)", raw.ID, raw.Status)}
	}
	r, err := openRunner(ctx, c, store, raw, lk, opts)
	if err != nil {
		return nil, err
	}
	if err := r.w.Update(ctx, func(op *Journal) { op.Runs++ }); err != nil {
		return r.res, err
	}
	runErr := r.returnNodes(ctx, opts.Nodes)
	status, msg := journal.Paused, "node(s) "+strings.Join(opts.Nodes, ", ")+" rolled back alone; run the migration again to move them again"
	if runErr != nil {
		status, msg = journal.Failed, "rolling back "+strings.Join(opts.Nodes, ", ")+": "+runErr.Error()
	}
	if err := r.w.Force(context.WithoutCancel(ctx), func(op *Journal) {
		op.Status, op.Message = status, msg
	}); err != nil && runErr == nil {
		runErr = err
	}
	r.res.Steps = r.w.Snapshot().Steps
	return r.res, runErr
}

// undoSteps is Rollback under the lock; the registry's abort runs it too.
func undoSteps(ctx context.Context, c operation.Cluster, store *journal.Store, raw *journal.Raw, lk *lock.Lock, opts RollbackOptions) (*Result, error) {
	r, err := openRunner(ctx, c, store, raw, lk, opts)
	if err != nil {
		return nil, err
	}
	res := r.res
	if err := r.w.Update(ctx, func(op *Journal) {
		op.Runs++
		op.Status, op.Message, op.Finished = journal.Aborting, "rolling back", nil
	}); err != nil {
		return res, err
	}
	runErr := r.undo(ctx)
	status, msg := journal.Aborted, "rolled back"
	if runErr != nil {
		status, msg = journal.Failed, "rollback: "+runErr.Error()
		if errors.Is(runErr, context.Canceled) {
			status = journal.Interrupted
		}
	}
	now := time.Now().UTC()
	if err := r.w.Force(context.WithoutCancel(ctx), func(op *Journal) {
		op.Status, op.Message, op.Finished = status, msg, &now
	}); err != nil && runErr == nil {
		runErr = err
	}
	res.Steps = r.w.Snapshot().Steps
	return res, runErr
}

// openRunner reads a migration's journal and plan for a rollback.
func openRunner(ctx context.Context, c operation.Cluster, store *journal.Store, raw *journal.Raw, lk *lock.Lock, opts RollbackOptions) (*runner, error) {
	if err := journal.Current(&raw.Operation); err != nil {
		return nil, err
	}
	op, err := journal.Decode[Record](raw)
	if err != nil {
		return nil, err
	}
	rec := op.Record
	if rec.Plan == nil {
		return nil, fmt.Errorf("migration %s has no plan in its journal", raw.ID)
	}
	rendered, _, err := rec.Plan.Render(ctx, rec.Params)
	if err != nil {
		return nil, err
	}
	if opts.Poll == 0 {
		opts.Poll = time.Second
	}
	objs, err := newObjects(c)
	if err != nil {
		return nil, err
	}
	res := &Result{Operation: raw.ID, Plan: rendered, Params: rec.Params, Rollbacks: map[string]string{}}
	r := &runner{c: c, objs: objs, res: res, plan: rendered, lock: lk, store: store,
		opts: Options{Command: opts.Command, Approver: opts.Approver, Progress: opts.Progress, Poll: opts.Poll, RollProgress: opts.RollProgress},
		cel:  condition.NewCompiler(condition.Discovery(c.Client.Discovery()))}
	r.w = journal.NewWriter(store, op)
	return r, nil
}

// undo walks the started steps back, newest first.
func (r *runner) undo(ctx context.Context) error {
	snap := r.w.Snapshot()
	steps := slices.Clone(r.plan.Steps)
	slices.Reverse(steps)
	for _, s := range steps {
		js := snap.StepByName(s.Name)
		if js == nil {
			continue // never started
		}
		r.res.Rollbacks[s.Name] = DescribeRollback(s)
		name := "rollback-" + s.Name
		if err := r.step(ctx, name, func(ctx context.Context) ([]string, error) {
			return r.inverse(ctx, s)
		}); err != nil {
			return err
		}
		if err := r.w.Update(ctx, func(op *Journal) {
			if !slices.Contains(op.Record.Undone, s.Name) {
				op.Record.Undone = append(op.Record.Undone, s.Name)
			}
		}); err != nil {
			return err
		}
	}
	return nil
}

// inverse undoes one step: its rollback's actions before, its action or
// the derived inverse, and its actions after.
func (r *runner) inverse(ctx context.Context, s plan.Step) ([]string, error) {
	rb := s.Rollback
	if rb != nil && rb.None {
		return []string{"nothing to undo"}, nil
	}
	if rb == nil {
		return r.derived(ctx, s)
	}
	var lines []string
	do := func(a plan.Action) error {
		more, err := r.act(ctx, "rollback-"+s.Name, a, false)
		lines = append(lines, more...)
		return err
	}
	for _, a := range rb.Before {
		if err := do(a); err != nil {
			return lines, err
		}
	}
	if rb.Derived() {
		more, err := r.derived(ctx, s)
		lines = append(lines, more...)
		if err != nil {
			return lines, err
		}
	} else if err := do(rb.Action); err != nil {
		return lines, err
	}
	for _, a := range rb.Then {
		if err := do(a); err != nil {
			return lines, err
		}
	}
	return lines, nil
}

// derived undoes a step by the inverse the engine works out.
func (r *runner) derived(ctx context.Context, s plan.Step) ([]string, error) {
	switch {
	case s.Patch != nil:
		saved, err := r.saved(ctx, s.Name)
		if err != nil {
			return nil, err
		}
		if len(saved) == 0 {
			return []string{"not patched: nothing to undo"}, nil
		}
		inv := inversePatch(s.Patch, saved[0])
		body, err := json.Marshal(inv)
		if err != nil {
			return nil, err
		}
		ri, err := r.objs.resource(s.Patch.Object)
		if err != nil {
			return nil, err
		}
		if _, err := ri.Patch(ctx, s.Patch.Object.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
			return nil, fmt.Errorf("restoring %s: %w", s.Patch.Object, err)
		}
		return []string{strings.Replace(describePatch(s.Patch, body), "patched", "restored", 1)}, nil
	case s.Delete != nil:
		saved, err := r.saved(ctx, s.Name)
		if err != nil {
			return nil, err
		}
		return r.recreate(ctx, saved)
	case s.Component != nil:
		return r.undoComponent(ctx, s)
	case s.Roll != nil:
		return r.undoRolls(ctx, s.Name, s.Roll)
	case s.Label != nil:
		return r.unlabel(ctx, s.Name, s.Label)
	case s.Sync != nil:
		return r.undoSync(ctx, s.Sync)
	}
	return []string{"nothing to undo"}, nil
}

// recreate puts deleted objects back as their backup held them.
func (r *runner) recreate(ctx context.Context, saved []*unstructured.Unstructured) ([]string, error) {
	var lines []string
	for _, u := range saved {
		ref := refOf(u)
		cur, err := r.objs.get(ctx, ref)
		if err != nil {
			return nil, err
		}
		if cur != nil && cur.GetDeletionTimestamp() == nil {
			lines = append(lines, ref.String()+" exists")
			continue
		}
		if cur != nil {
			return nil, fmt.Errorf("%s is still being deleted (finalizers %v); run the rollback again once it is gone", ref, cur.GetFinalizers())
		}
		obj := u.DeepCopy()
		for _, f := range [][]string{{"metadata", "resourceVersion"}, {"metadata", "uid"}, {"metadata", "creationTimestamp"},
			{"metadata", "managedFields"}, {"metadata", "deletionTimestamp"}, {"metadata", "deletionGracePeriodSeconds"}, {"metadata", "generation"}, {"status"}} {
			unstructured.RemoveNestedField(obj.Object, f...)
		}
		ri, err := r.objs.resource(ref)
		if err != nil {
			return nil, err
		}
		if _, err := ri.Create(ctx, obj, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
			return nil, fmt.Errorf("re-creating %s: %w", ref, err)
		}
		lines = append(lines, "re-created "+ref.String())
	}
	return lines, nil
}

func (r *runner) undoComponent(ctx context.Context, s plan.Step) ([]string, error) {
	rec, ok := r.w.Snapshot().Record.Components[s.Name]
	if !ok {
		return []string{"not deployed: nothing to undo"}, nil
	}
	opts := lifecycle.Options{Name: rec.Name, Command: r.opts.Command, Lock: r.lock}
	switch rec.Action {
	case plan.ComponentInstall:
		_, err := lifecycle.Uninstall(ctx, r.c, opts)
		var state *lifecycle.StateError
		if rec.InFlight && errors.As(err, &state) {
			// Killed before its install made anything.
			return []string{rec.Name + " was not installed: nothing to undo"}, nil
		}
		if err != nil {
			return nil, err
		}
		return []string{"uninstalled " + rec.Name}, nil
	case plan.ComponentUpgrade:
		if rec.InFlight {
			cur, err := r.deployed(ctx, rec.Name)
			if err != nil {
				return nil, err
			}
			if cur != nil && cur.Number == rec.Previous {
				return []string{fmt.Sprintf("%s is still at revision %d: the upgrade did not deploy, nothing to undo", rec.Name, rec.Previous)}, nil
			}
		}
		opts.Revision = rec.Previous
		res, err := lifecycle.Rollback(ctx, r.c, opts)
		if err != nil {
			return nil, err
		}
		return []string{fmt.Sprintf("rolled %s back to revision %d (now revision %d)", rec.Name, rec.Previous, res.Revision)}, nil
	}
	return []string{"an uninstall is not undone"}, nil
}

// OperationKind is a migration as the operation registry knows it:
// status lists its steps, abort rolls it back.
func OperationKind() operation.Kind {
	return operation.Kind{Name: Kind, Describe: operation.DescribeSteps,
		Undo: func(ctx context.Context, c operation.Cluster, raw *journal.Raw) error {
			_, err := undoSteps(ctx, c, journal.NewStore(c.Client), raw, c.Lock, RollbackOptions{Command: raw.Command})
			return err
		}}
}

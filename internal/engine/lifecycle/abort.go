package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hitless-dev/hitless/internal/component/apply"
	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// OperationKinds are install, upgrade, rollback and uninstall as the
// operation registry knows them: status lists their steps, abort undoes
// them.
func OperationKinds() []operation.Kind {
	var out []operation.Kind
	for _, a := range []string{ActionInstall, ActionUpgrade, ActionRollback, ActionUninstall} {
		out = append(out, operation.Kind{Name: a, Undo: undo, Describe: operation.DescribeSteps})
	}
	return out
}

// undo restores what an unfinished component operation did, newest first
// and only what it did: the data-plane rolls it left in flight are undone
// (their nodes uncordoned), then every object its steps changed or
// deleted is put back as its backup holds it, the objects it created are
// deleted, and its revision is marked failed with the one it replaced
// deployed again.
func undo(ctx context.Context, c operation.Cluster, raw *journal.Raw) error {
	op, err := journal.Decode[state](raw)
	if err != nil {
		return err
	}
	st := op.Record
	var errs []error
	for i := len(st.Rolls) - 1; i >= 0; i-- {
		if err := undoRoll(ctx, c, st.Rolls[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 || st.Revision == 0 || op.StepByName("backup") == nil {
		return errors.Join(errs...) // nothing changed before the backup step
	}
	return restore(ctx, c, &op.Operation, componentOf(raw), st)
}

// undoRoll undoes one data-plane roll that has not finished: the one the
// record names, or, when the operation stopped before the roll returned
// (its id is recorded only then), the unfinished roll of its spec.
func undoRoll(ctx context.Context, c operation.Cluster, rec rollRecord) error {
	store := journal.NewStore(c.Client)
	var raw *journal.Raw
	var err error
	if rec.Operation != "" {
		raw, err = store.Get(ctx, rec.Operation)
	} else {
		sp := rec.Spec
		sp.Defaults()
		raw, err = store.Resumable(ctx, roll.Kind, sp.Hash())
	}
	if err != nil {
		return err
	}
	if raw == nil || (!raw.Status.Resumable() && raw.Status != journal.Aborting) {
		return nil
	}
	if err := roll.OperationKind().Undo(ctx, c, raw); err != nil {
		return err
	}
	_, err = store.Close(ctx, raw.ID, journal.Aborted, "aborted with the operation that ran it")
	return err
}

// restore puts back what the operation's steps that started changed, as
// it was before revision st.Revision: objects the stages it ran applied
// or pruned come back from the backup, those it created go.
func restore(ctx context.Context, c operation.Cluster, op *journal.Operation, name string, st state) error {
	action := op.Kind
	rstore := release.NewStore(c.Client)
	revs, err := rstore.List(ctx, name)
	if err != nil {
		return err
	}
	rev := release.Find(revs, st.Revision)
	backup, err := rstore.Backups(ctx, name, st.Revision)
	if err != nil {
		return err
	}
	a, err := apply.New(c.Config)
	if err != nil {
		return err
	}
	touched := touchedBy(op, rev, backup)
	had := map[release.Ref]bool{}
	var back []*unstructured.Unstructured
	for _, o := range backup {
		had[unversioned(o)] = true
		if touched[unversioned(o)] {
			back = append(back, asApplied(o))
		}
	}
	if len(back) > 0 {
		if _, err := a.Apply(ctx, back, apply.Options{Set: name, Wait: 0}); err != nil {
			return fmt.Errorf("restoring the backup of revision %d of %s: %w", st.Revision, name, err)
		}
	}
	if rev != nil && action != ActionUninstall {
		var created []*unstructured.Unstructured
		for _, o := range release.Objects(rev.Applied) {
			if !had[unversioned(o)] && touched[unversioned(o)] {
				created = append(created, o)
			}
		}
		if _, err := a.Delete(ctx, created); err != nil {
			return fmt.Errorf("deleting what revision %d of %s created: %w", st.Revision, name, err)
		}
	}
	return markAborted(ctx, rstore, revs, rev, st.Previous)
}

// markAborted records the aborted revision failed and the one before it
// deployed again.
func markAborted(ctx context.Context, rstore *release.Store, revs []*release.Revision, rev *release.Revision, previous int) error {
	if rev != nil {
		rev.Status = release.Failed
		if err := rstore.Put(ctx, rev); err != nil {
			return err
		}
	}
	if prev := release.Find(revs, previous); prev != nil && prev.Status != release.Deployed {
		prev.Status = release.Deployed
		return rstore.Put(ctx, prev)
	}
	return nil
}

// touchedBy lists the objects the operation's started steps may have
// changed: each apply stage's objects, the pruned ones once pruning
// started, every backed-up object for an uninstall.
func touchedBy(op *journal.Operation, rev *release.Revision, backup []*unstructured.Unstructured) map[release.Ref]bool {
	out := map[release.Ref]bool{}
	if op.Kind == ActionUninstall || rev == nil {
		for _, o := range backup {
			out[unversioned(o)] = true
		}
		return out
	}
	applied := release.Objects(rev.Applied)
	stages := split(applied)
	for _, stage := range []string{StageConfig, StageWorkloads, StageAPI} {
		if op.StepByName(stage) != nil {
			for _, o := range stages[stage] {
				out[unversioned(o)] = true
			}
		}
	}
	if op.StepByName(StagePrune) != nil {
		keep := map[release.Ref]bool{}
		for _, o := range applied {
			keep[unversioned(o)] = true
		}
		for _, o := range backup {
			if !keep[unversioned(o)] {
				out[unversioned(o)] = true
			}
		}
	}
	return out
}

func unversioned(o *unstructured.Unstructured) release.Ref {
	r := release.RefOf(o)
	r.Version = ""
	return r
}

// asApplied is a backed-up object as an apply configuration: without what
// the API server keeps for itself.
func asApplied(o *unstructured.Unstructured) *unstructured.Unstructured {
	c := o.DeepCopy()
	for _, f := range [][]string{{"metadata", "resourceVersion"}, {"metadata", "uid"}, {"metadata", "creationTimestamp"}, {"metadata", "generation"}, {"metadata", "managedFields"}, {"status"}} {
		unstructured.RemoveNestedField(c.Object, f...)
	}
	return c
}

// componentOf reads the component's name from the journaled spec.
func componentOf(raw *journal.Raw) string {
	var sp spec
	_ = json.Unmarshal(raw.Spec, &sp)
	return sp.Name
}

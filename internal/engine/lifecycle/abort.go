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
		if err := undoRoll(ctx, c, st.Rolls[i].Operation); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 || st.Revision == 0 || op.StepByName("backup") == nil {
		return errors.Join(errs...) // nothing changed before the backup step
	}
	return restore(ctx, c, raw.Kind, componentOf(raw), st)
}

// undoRoll undoes one data-plane roll that has not finished.
func undoRoll(ctx context.Context, c operation.Cluster, id string) error {
	if id == "" {
		return nil
	}
	store := journal.NewStore(c.Client)
	raw, err := store.Get(ctx, id)
	if err != nil {
		return err
	}
	if !raw.Status.Resumable() && raw.Status != journal.Aborting {
		return nil
	}
	if err := roll.OperationKind().Undo(ctx, c, raw); err != nil {
		return err
	}
	if raw, err = store.Get(ctx, id); err != nil {
		return err
	}
	raw.Status, raw.Message = journal.Aborted, "aborted with the operation that ran it"
	return store.Put(ctx, raw)
}

// restore puts the component back as it was before revision st.Revision.
func restore(ctx context.Context, c operation.Cluster, action, name string, st state) error {
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
	had := map[release.Ref]bool{}
	var back []*unstructured.Unstructured
	for _, o := range backup {
		had[unversioned(o)] = true
		back = append(back, asApplied(o))
	}
	if len(back) > 0 {
		if _, err := a.Apply(ctx, back, apply.Options{Set: name, Wait: 0}); err != nil {
			return fmt.Errorf("restoring the backup of revision %d of %s: %w", st.Revision, name, err)
		}
	}
	if rev != nil && action != ActionUninstall {
		var created []*unstructured.Unstructured
		for _, o := range release.Objects(rev.Applied) {
			if !had[unversioned(o)] {
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

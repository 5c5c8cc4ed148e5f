package migrate_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hitless-dev/hitless/examples"
	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/component/manifest"
	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
)

// hitless abort ID stops a migration in the middle of a wait and undoes
// the steps it took.
func TestAbortUndoesTheStepsTaken(t *testing.T) {
	cs := env.Client(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: ns}, Data: map[string]string{"a": "old"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	doc := `apiVersion: hitless.dev/v1alpha1
kind: MigrationPlan
metadata: {name: aborted}
steps:
- name: set-a
  patch: {object: {apiVersion: v1, kind: ConfigMap, namespace: ` + ns + `, name: cfg}, patch: {data: {a: new}}}
- name: never
  wait: {for: {apiVersion: v1, kind: ConfigMap, namespace: ` + ns + `, name: cfg}, condition: "object.data['a'] == 'never'", timeout: 10m}
`
	p, err := plan.Parse("aborted.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	c := operation.Cluster{Client: cs, Config: env.Config(t)}
	started := make(chan struct{})
	done := make(chan error, 1)
	var res *migrate.Result
	go func() {
		var err error
		res, err = migrate.Run(ctx, c, migrate.Options{Plan: p, Poll: 100 * time.Millisecond, Progress: func(line string) {
			if strings.HasPrefix(line, "never") {
				select {
				case <-started:
				default:
					close(started)
				}
			}
		}})
		done <- err
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("the migration ended before its wait: %v", err)
	}
	ops, err := journal.NewStore(cs).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := ""
	for _, op := range ops {
		if op.Kind == migrate.Kind && op.Status == journal.Running {
			id = op.ID
		}
	}
	reg, err := operation.NewRegistry(migrate.OperationKind())
	if err != nil {
		t.Fatal(err)
	}
	op, err := reg.Abort(ctx, c, id, "test abort", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if runErr := <-done; !errors.Is(runErr, journal.ErrAborted) {
		t.Errorf("the run returned %v, want it stopped by the abort", runErr)
	}
	if op.Status != journal.Aborted {
		t.Errorf("status %s, want Aborted", op.Status)
	}
	if cm, _ := cs.CoreV1().ConfigMaps(ns).Get(ctx, "cfg", metav1.GetOptions{}); cm.Data["a"] != "old" {
		t.Errorf("cfg after the abort: %v, want the patch undone", cm.Data)
	}
	if h, err := lock.Current(ctx, cs); err != nil || h != nil {
		t.Errorf("lock held after the abort: %v %v", h, err)
	}
	_ = res
}

// A component step installs through the lifecycle engine under the
// migration's lock; rolling the migration back uninstalls it.
func TestComponentStep(t *testing.T) {
	cs := env.Client(t)
	ctx := context.Background()
	objs, err := manifest.ReadDir(examples.FS(), examples.PluginV1)
	if err != nil {
		t.Fatal(err)
	}
	src := &component.Source{Path: "examples/" + examples.PluginV1, Kind: component.KindDirectory, Objects: objs}
	doc := `apiVersion: hitless.dev/v1alpha1
kind: MigrationPlan
metadata: {name: with-component}
steps:
- name: install-plugin
  component: {name: plugin, action: install, source: v1}
`
	p, err := plan.Parse("component.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	c := operation.Cluster{Client: cs, Config: env.Config(t)}
	if _, err := migrate.Run(ctx, c, migrate.Options{Plan: p, Poll: 100 * time.Millisecond}); err == nil {
		t.Fatal("a component step without its release must be refused")
	}
	res, err := migrate.Run(ctx, c, migrate.Options{Plan: p, Poll: 100 * time.Millisecond, Sources: map[string]*component.Source{"v1": src}})
	if err != nil {
		t.Fatal(err)
	}
	revs, err := release.NewStore(cs).List(ctx, "plugin")
	if err != nil {
		t.Fatal(err)
	}
	if cur := release.Current(revs); cur == nil || cur.Number != 1 {
		t.Fatalf("revisions after the install: %+v", revs)
	}

	// Killed after the install ended, before the step was marked done:
	// the journal as such a run leaves it (the step journaled in flight
	// before it acted, the operation running). Run again, the migration
	// takes the install it made instead of refusing it as installed.
	store := journal.NewStore(cs)
	raw, err := store.Get(ctx, res.Operation)
	if err != nil {
		t.Fatal(err)
	}
	op, err := journal.Decode[migrate.Record](raw)
	if err != nil {
		t.Fatal(err)
	}
	rec, ok := op.Record.Components["install-plugin"]
	if !ok || rec.InFlight || rec.Revision != 1 || rec.Previous != 0 {
		t.Fatalf("the component step's record: %+v (journaled %v), want revision 1 over none, done", rec, ok)
	}
	rec.InFlight, rec.Revision = true, 0
	op.Record.Components["install-plugin"] = rec
	op.Status, op.Finished = journal.Running, nil
	st := op.StepByName("install-plugin")
	st.Finished, st.Detail = nil, nil
	forged, err := journal.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, forged); err != nil {
		t.Fatal(err)
	}
	again, err := migrate.Run(ctx, c, migrate.Options{Plan: p, Poll: 100 * time.Millisecond, Sources: map[string]*component.Source{"v1": src}})
	if err != nil {
		t.Fatalf("run again after the kill: %v", err)
	}
	if again.Operation != res.Operation || !again.Resumed {
		t.Errorf("run again: operation %s (resumed %v), want %s resumed", again.Operation, again.Resumed, res.Operation)
	}
	revs, _ = release.NewStore(cs).List(ctx, "plugin")
	if cur := release.Current(revs); cur == nil || cur.Number != 1 || len(revs) != 1 {
		t.Errorf("revisions after the run again: %+v, want revision 1 alone", revs)
	}
	if raw, err = store.Get(ctx, res.Operation); err != nil {
		t.Fatal(err)
	}
	if op, err = journal.Decode[migrate.Record](raw); err != nil {
		t.Fatal(err)
	}
	if rec := op.Record.Components["install-plugin"]; rec.InFlight || rec.Revision != 1 || op.Status != journal.Succeeded {
		t.Errorf("after the run again: %s, record %+v; want Succeeded, revision 1 done", op.Status, rec)
	}

	if _, err := migrate.Rollback(ctx, c, res.Operation, migrate.RollbackOptions{Poll: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	revs, _ = release.NewStore(cs).List(ctx, "plugin")
	if cur := release.Current(revs); cur != nil {
		t.Errorf("revision %d still deployed after the rollback", cur.Number)
	}
}

package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/kube/condition"
)

// What a sync writes on the objects it keeps.
const (
	// LabelSyncedBy is the operation whose sync wrote the object.
	LabelSyncedBy = "hitless.dev/synced-by"
	// AnnotationSyncedFrom names the object it was copied from.
	AnnotationSyncedFrom = "hitless.dev/synced-from"
	// annotationSyncCreated marks an object the sync created (its
	// rollback deletes it; an object that was there is put back).
	annotationSyncCreated = "hitless.dev/synced-created"
	syncManager           = "hitless-sync"
)

// runSync is a run-sync going on in this process.
type runSync struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	passes  int
	changes []string
	err     error
}

// sync runs a sync step: one pass (once), one pass and the run-sync
// (start), or the run-sync's end and its last pass (stop).
func (r *runner) sync(ctx context.Context, s *plan.Sync) ([]string, error) {
	switch s.Mode {
	case plan.SyncStart:
		lines, err := r.syncPass(ctx, s.Objects)
		if err != nil {
			return lines, err
		}
		r.startRunSync(s)
		return append(lines, fmt.Sprintf("run-sync %s started: a pass every %s until its stop", s.SyncName(), plan.Duration(s.Interval, 2*time.Second))), nil
	case plan.SyncStop:
		start := r.plan.SyncStart(s.SyncName())
		if start == nil {
			return nil, fmt.Errorf("no step starts run-sync %s", s.SyncName())
		}
		summary := r.stopRunSync(s.SyncName())
		lines, err := r.syncPass(ctx, start.Objects)
		return append(summary, lines...), err
	}
	return r.syncPass(ctx, s.Objects)
}

// startRunSync starts the run-sync of s in the background, for the rest
// of this run (a resumed run starts it again from its journaled start).
func (r *runner) startRunSync(s *plan.Sync) {
	if r.syncs == nil {
		r.syncs = map[string]*runSync{}
	}
	if _, ok := r.syncs[s.SyncName()]; ok {
		return
	}
	ctx, cancel := context.WithCancel(r.ctx)
	rs := &runSync{cancel: cancel, done: make(chan struct{})}
	r.syncs[s.SyncName()] = rs
	log := klog.FromContext(ctx).WithValues("sync", s.SyncName())
	every := plan.Duration(s.Interval, 2*time.Second)
	go func() {
		defer close(rs.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			lines, err := r.syncPass(ctx, s.Objects)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				log.Error(err, "run-sync pass")
			}
			for _, l := range lines {
				log.V(1).Info("run-sync", "change", l)
			}
			rs.mu.Lock()
			rs.passes++
			rs.changes = append(rs.changes, lines...)
			rs.err = err
			rs.mu.Unlock()
		}
	}()
}

// resumeRunSync starts again, in a resumed run, a run-sync whose start
// an earlier run finished and whose stop it did not.
func (r *runner) resumeRunSync(s plan.Step) {
	if s.Sync == nil || s.Sync.Mode != plan.SyncStart {
		return
	}
	for _, later := range r.plan.Steps {
		if later.Sync != nil && later.Sync.Mode == plan.SyncStop && later.Sync.SyncName() == s.Sync.SyncName() {
			if js := r.w.Snapshot().StepByName(later.Name); js != nil && js.Finished != nil && js.Error == "" {
				return
			}
		}
	}
	r.startRunSync(s.Sync)
	r.opts.progressf("%-10s run-sync %s started again", s.Name, s.Sync.SyncName())
}

// stopRunSync ends a run-sync of this process and says what it did; a
// run-sync of an earlier process ended with it.
func (r *runner) stopRunSync(name string) []string {
	rs, ok := r.syncs[name]
	if !ok {
		return []string{fmt.Sprintf("run-sync %s: not running in this process", name)}
	}
	rs.cancel()
	<-rs.done
	delete(r.syncs, name)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := []string{fmt.Sprintf("run-sync %s stopped after %d pass(es), %d change(s) carried while it ran", name, rs.passes, len(rs.changes))}
	for _, c := range rs.changes {
		out = append(out, "  run-sync: "+c)
	}
	if rs.err != nil {
		out = append(out, "  run-sync's last pass failed: "+rs.err.Error())
	}
	return out
}

// stopAllRunSyncs ends every run-sync of this process (the run ends).
func (r *runner) stopAllRunSyncs() {
	for name, rs := range r.syncs {
		rs.cancel()
		<-rs.done
		delete(r.syncs, name)
	}
}

// syncPass makes every target agree with its source once: created,
// updated, or (a source gone) deleted when the sync created it. It
// returns what it changed.
func (r *runner) syncPass(ctx context.Context, mappings []plan.SyncMapping) ([]string, error) {
	var lines []string
	for _, m := range mappings {
		more, err := r.syncMapping(ctx, m)
		lines = append(lines, more...)
		if err != nil {
			return lines, err
		}
	}
	return lines, nil
}

func (r *runner) syncMapping(ctx context.Context, m plan.SyncMapping) ([]string, error) {
	sources, err := r.objs.list(ctx, m.From)
	if err != nil {
		return nil, err
	}
	var tf *condition.Program
	if m.Transform != "" {
		if tf, err = r.transform(m.From, m.Transform); err != nil {
			return nil, err
		}
	}
	var lines []string
	wanted := map[string]bool{}
	for _, src := range sources {
		fields, err := syncFields(ctx, src, tf, r.res.Params)
		if err != nil {
			return lines, fmt.Errorf("translating %s: %w", refOf(src), err)
		}
		target := m.To
		if target.Name == "" {
			target.Name = src.GetName()
		}
		if target.Namespace == "" {
			target.Namespace = src.GetNamespace()
		}
		wanted[key(target)] = true
		line, err := r.syncOne(ctx, src, target, fields)
		if err != nil {
			return lines, err
		}
		if line != "" {
			lines = append(lines, line)
		}
	}
	gone, err := r.syncPrune(ctx, m, wanted)
	return append(lines, gone...), err
}

// transform compiles a mapping's CEL once per run, typed by the source's
// schema.
func (r *runner) transform(from plan.ObjectRef, expr string) (*condition.Program, error) {
	k := from.APIVersion + "/" + from.Kind + "/" + expr
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.transforms[k]; ok {
		return p, nil
	}
	p, err := r.cel.Map(from.GVK(), expr)
	if err != nil {
		return nil, fmt.Errorf("the transform of %s: %w", from, err)
	}
	if r.transforms == nil {
		r.transforms = map[string]*condition.Program{}
	}
	r.transforms[k] = p
	return p, nil
}

// syncFields are the target's fields other than metadata: the
// transform's, or the source's own but metadata and status.
func syncFields(ctx context.Context, src *unstructured.Unstructured, tf *condition.Program, params map[string]any) (map[string]any, error) {
	out := map[string]any{}
	if tf == nil {
		for k, v := range src.Object {
			out[k] = v
		}
	} else {
		v, err := tf.Eval(ctx, src.Object, params)
		if err != nil {
			return nil, err
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, errors.New("the transform did not give a map")
		}
		out = m
	}
	for _, k := range []string{"apiVersion", "kind", "metadata", "status"} {
		delete(out, k)
	}
	return out, nil
}

// syncOne writes one target (server-side apply, its own field manager),
// backing up an object that was there before the first write.
func (r *runner) syncOne(ctx context.Context, src *unstructured.Unstructured, target plan.ObjectRef, fields map[string]any) (string, error) {
	namespaced, err := r.objs.namespaced(target)
	if err != nil {
		return "", err
	}
	if !namespaced {
		target.Namespace = ""
	}
	cur, err := r.objs.get(ctx, target)
	if err != nil {
		return "", err
	}
	from := refOf(src).String()
	created := cur == nil || cur.GetAnnotations()[annotationSyncCreated] == "true"
	if cur != nil && !created && cur.GetLabels()[LabelSyncedBy] != r.res.Operation {
		if _, err := r.save(ctx, syncBackup(target), []*unstructured.Unstructured{cur}); err != nil {
			return "", err
		}
	}
	if cur != nil && sameFields(cur, fields) && cur.GetLabels()[LabelSyncedBy] == r.res.Operation && cur.GetAnnotations()[AnnotationSyncedFrom] == from {
		return "", nil
	}
	u := &unstructured.Unstructured{Object: fields}
	u.SetAPIVersion(target.APIVersion)
	u.SetKind(target.Kind)
	u.SetName(target.Name)
	u.SetNamespace(target.Namespace)
	u.SetLabels(map[string]string{LabelSyncedBy: r.res.Operation})
	ann := map[string]string{AnnotationSyncedFrom: from}
	if created {
		ann[annotationSyncCreated] = "true"
	}
	u.SetAnnotations(ann)
	body, err := json.Marshal(u.Object)
	if err != nil {
		return "", fmt.Errorf("encoding %s: %w", target, err)
	}
	ri, err := r.objs.resource(target)
	if err != nil {
		return "", err
	}
	if _, err := ri.Patch(ctx, target.Name, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: syncManager, Force: ptr.To(true)}); err != nil {
		return "", fmt.Errorf("writing %s from %s: %w", target, from, err)
	}
	verb := "updated"
	if cur == nil {
		verb = "created"
	}
	what := target.String()
	if target.Kind == "Secret" {
		what += " (a Secret: values not shown)"
	}
	return fmt.Sprintf("%s %s from %s", verb, what, from), nil
}

// syncPrune deletes the targets this operation's sync created whose
// source is gone.
func (r *runner) syncPrune(ctx context.Context, m plan.SyncMapping, wanted map[string]bool) ([]string, error) {
	targets, err := r.synced(ctx, m)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, t := range targets {
		ref := refOf(t)
		if wanted[key(ref)] || t.GetAnnotations()[annotationSyncCreated] != "true" || !fromKind(t, m.From) {
			continue
		}
		ri, err := r.objs.resource(ref)
		if err != nil {
			return lines, err
		}
		if err := ri.Delete(ctx, ref.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return lines, fmt.Errorf("deleting %s (its source %s is gone): %w", ref, t.GetAnnotations()[AnnotationSyncedFrom], err)
		}
		lines = append(lines, fmt.Sprintf("deleted %s (its source %s is gone)", ref, t.GetAnnotations()[AnnotationSyncedFrom]))
	}
	return lines, nil
}

// synced lists the objects of a mapping's target kind this operation's
// sync wrote.
func (r *runner) synced(ctx context.Context, m plan.SyncMapping) ([]*unstructured.Unstructured, error) {
	ref := plan.ObjectRef{APIVersion: m.To.APIVersion, Kind: m.To.Kind, Namespace: m.To.Namespace, Selector: LabelSyncedBy + "=" + r.res.Operation}
	return r.objs.list(ctx, ref)
}

// fromKind tells whether t was copied from an object of from's kind
// (its annotation is the source's ref: "Kind.group namespace/name").
func fromKind(t *unstructured.Unstructured, from plan.ObjectRef) bool {
	kind := from.Kind
	if g := from.GVK().Group; g != "" {
		kind += "." + g
	}
	return strings.HasPrefix(t.GetAnnotations()[AnnotationSyncedFrom], kind+" ")
}

// sameFields tells whether cur already holds fields (compared as JSON:
// a translation's numbers are floats, the API server's integers).
func sameFields(cur *unstructured.Unstructured, fields map[string]any) bool {
	have := map[string]any{}
	for k := range fields {
		if v, ok := cur.Object[k]; ok {
			have[k] = v
		}
	}
	a, err1 := json.Marshal(have)
	b, err2 := json.Marshal(fields)
	return err1 == nil && err2 == nil && string(a) == string(b)
}

// syncBackup is the backup a sync keeps of a target that was there
// before its first write, whichever sync step wrote first.
func syncBackup(target plan.ObjectRef) string { return "sync/" + key(target) }

// undoSync deletes what a sync step's mappings created and puts back
// what they changed; a run-sync or post-sync undone before it left
// nothing for it.
func (r *runner) undoSync(ctx context.Context, s *plan.Sync) ([]string, error) {
	mappings := s.Objects
	if s.Mode == plan.SyncStop {
		if start := r.plan.SyncStart(s.SyncName()); start != nil {
			mappings = start.Objects
		}
	}
	var lines []string
	for _, m := range mappings {
		targets, err := r.synced(ctx, m)
		if meta.IsNoMatchError(errors.Unwrap(err)) || meta.IsNoMatchError(err) {
			continue // the target's kind is gone with its release
		}
		if err != nil {
			return lines, err
		}
		for _, t := range targets {
			line, err := r.unsyncOne(ctx, t)
			if err != nil {
				return lines, err
			}
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		return []string{"nothing synced is left"}, nil
	}
	return lines, nil
}

func (r *runner) unsyncOne(ctx context.Context, t *unstructured.Unstructured) (string, error) {
	ref := refOf(t)
	ri, err := r.objs.resource(ref)
	if err != nil {
		return "", err
	}
	saved, err := r.saved(ctx, syncBackup(ref))
	if err != nil {
		return "", err
	}
	if len(saved) == 0 {
		if err := ri.Delete(ctx, ref.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return "", fmt.Errorf("deleting %s: %w", ref, err)
		}
		return "deleted " + ref.String(), nil
	}
	restored := saved[0].DeepCopy()
	restored.SetResourceVersion(t.GetResourceVersion())
	restored.SetManagedFields(nil)
	if _, err := ri.Update(ctx, restored, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		return "", fmt.Errorf("putting back %s: %w", ref, err)
	}
	return "put back " + ref.String() + " as it was before the sync", nil
}

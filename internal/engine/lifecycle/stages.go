package lifecycle

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/hitless-dev/hitless/internal/component/apply"
)

// applyAPI applies webhooks and APIServices last, once the servers behind
// them run, and reports the APIServices nothing serves instead of
// waiting on them.
func (r *runner) applyAPI(ctx context.Context, objs []*unstructured.Unstructured) ([]string, error) {
	if len(objs) == 0 {
		return nil, nil
	}
	noWait := map[string]bool{}
	for _, o := range objs {
		noWait[apply.Name(o)] = true
	}
	detail, err := r.apply(ctx, objs, noWait)
	if err != nil {
		return detail, err
	}
	unavailable, err := r.unavailableAPIs(ctx, objs, 10*time.Second)
	if err != nil {
		return detail, err
	}
	r.res.Unavailable = unavailable
	for _, u := range unavailable {
		detail = append(detail, "unavailable: "+u)
	}
	return detail, nil
}

// unavailableAPIs waits up to grace for the APIServices among objs to be
// Available and returns the others with the API server's reason.
func (r *runner) unavailableAPIs(ctx context.Context, objs []*unstructured.Unstructured, grace time.Duration) ([]string, error) {
	deadline := time.Now().Add(grace)
	for {
		var out []string
		for _, o := range objs {
			if o.GetKind() != "APIService" {
				continue
			}
			live, err := r.applier.Live(ctx, o)
			if err != nil {
				return nil, err
			}
			if live == nil {
				continue
			}
			if ok, why := available(live); !ok {
				out = append(out, fmt.Sprintf("APIService %s: %s", o.GetName(), why))
			}
		}
		if len(out) == 0 || time.Now().After(deadline) {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func available(apiService *unstructured.Unstructured) (bool, string) {
	conds, _, _ := unstructured.NestedSlice(apiService.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Available" {
			if m["status"] == "True" {
				return true, ""
			}
			return false, fmt.Sprintf("%v (%v)", m["reason"], m["message"])
		}
	}
	return false, "no Available condition yet"
}

// prune deletes what the previous revision had and this one does not, in
// the uninstall order.
func (r *runner) prune(ctx context.Context, objs []*unstructured.Unstructured) ([]string, error) {
	var detail []string
	for i, group := range deleteGroups(objs) {
		if len(group) == 0 {
			continue
		}
		d, err := r.deleteGroup(ctx, deleteOrder[i], group)
		detail = append(detail, d...)
		if err != nil {
			return detail, err
		}
	}
	return detail, nil
}

// deleteGroup deletes objs, waits for them to go and records what is
// left, with its finalizers.
func (r *runner) deleteGroup(ctx context.Context, name string, objs []*unstructured.Unstructured) ([]string, error) {
	entries, err := r.applier.Delete(ctx, objs)
	if err != nil {
		return nil, err
	}
	left, err := r.applier.WaitGone(ctx, objs, r.opts.FinalizerTimeout)
	if err != nil {
		return nil, err
	}
	stuck := map[string]bool{}
	for _, l := range left {
		r.res.Remaining = append(r.res.Remaining, stillThere(l))
		stuck[apply.Name(l)] = true
	}
	n := 0
	for _, e := range entries {
		if e.Action == "deleted" && !stuck[e.Object] {
			r.res.Deleted = append(r.res.Deleted, e.Object)
			n++
		}
	}
	d := []string{fmt.Sprintf("%s: %d deleted", name, n)}
	if len(left) > 0 {
		d = append(d, fmt.Sprintf("%s: %d still there after %s", name, len(left), r.opts.FinalizerTimeout))
	}
	return d, nil
}

// stillThere says which object did not go, and what holds it.
func stillThere(live *unstructured.Unstructured) string {
	why := "still there"
	switch f := live.GetFinalizers(); {
	case len(f) > 0:
		why = "waiting on finalizers " + strings.Join(f, ", ")
	case live.GetDeletionTimestamp() != nil:
		why = "still terminating"
	}
	return apply.Name(live) + ": " + why
}

// diffs dry-runs every object on the API server and returns what applying
// them would change, as unified YAML diffs with Secret values masked, and
// the objects that would be deleted.
func diffs(ctx context.Context, a *apply.Applier, set string, desired, prune []*unstructured.Unstructured, prev map[string]*unstructured.Unstructured) ([]ObjectDiff, error) {
	var out []ObjectDiff
	crds := customKinds(desired)
	for _, o := range desired {
		live, err := a.Live(ctx, o)
		if err != nil {
			return nil, err
		}
		if live == nil {
			after := o.DeepCopy()
			mask(after)
			out = append(out, ObjectDiff{Object: apply.Name(o), Action: "created", Diff: unified(nil, after)})
			continue
		}
		trimmed, err := a.RemoveHusks(ctx, o, prev[apply.Name(o)], true)
		if err != nil {
			return nil, err
		}
		action, before, after, err := a.Diff(ctx, o, set)
		if err != nil && trimmed != nil && !equality.Semantic.DeepEqual(trimmed.Object, live.Object) {
			// The release drops structures the apply removes first (see
			// apply.RemoveHusks); the server would refuse the object with
			// them, so it is laid over the live one without them here.
			action, before, after, err = "configured", live, overlay(trimmed, o), nil
		}
		if err != nil && crds[gk(o)] {
			// The server validates against the CRD it has; this release
			// changes the CRD first, so the object is laid over the live
			// one here.
			action, before, after, err = "configured", live, overlay(live, o), nil
			if equality.Semantic.DeepEqual(before.Object, after.Object) {
				action = "unchanged"
			}
		}
		if err != nil {
			return nil, err
		}
		d := ObjectDiff{Object: apply.Name(o), Action: action}
		if before != nil && after != nil {
			d.Diff = unified(before, after)
		}
		out = append(out, d)
	}
	for _, o := range prune {
		out = append(out, ObjectDiff{Object: apply.Name(o), Action: "deleted"})
	}
	return out, nil
}

// mask hides a Secret's values the way fluxcd/pkg/ssa does in its diffs.
func mask(after *unstructured.Unstructured) {
	if after.GetKind() != "Secret" || after.GetAPIVersion() != "v1" {
		return
	}
	if data, ok, _ := unstructured.NestedMap(after.Object, "data"); ok {
		for k := range data {
			data[k] = "***"
		}
		_ = unstructured.SetNestedMap(after.Object, data, "data")
	}
	unstructured.RemoveNestedField(after.Object, "stringData")
}

// unified renders a diff of two objects' YAML, without the fields the API
// server keeps for itself.
func unified(before, after *unstructured.Unstructured) string {
	text := func(u *unstructured.Unstructured) []string {
		if u == nil {
			return nil
		}
		c := u.DeepCopy()
		for _, f := range [][]string{{"metadata", "managedFields"}, {"metadata", "resourceVersion"}, {"metadata", "generation"}, {"metadata", "uid"}, {"metadata", "creationTimestamp"}, {"status"}} {
			unstructured.RemoveNestedField(c.Object, f...)
		}
		b, _ := yaml.Marshal(c.Object)
		return difflib.SplitLines(string(b))
	}
	s, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{A: text(before), B: text(after), FromFile: "live", ToFile: "after", Context: 3})
	return s
}

// overlay lays the fields of desired over live: maps merged, other values
// replaced, as server-side apply does for a custom resource without list
// merge keys.
func overlay(live, desired *unstructured.Unstructured) *unstructured.Unstructured {
	var merge func(dst, src map[string]any)
	merge = func(dst, src map[string]any) {
		for k, v := range src {
			sm, ok1 := v.(map[string]any)
			dm, ok2 := dst[k].(map[string]any)
			if ok1 && ok2 {
				merge(dm, sm)
				continue
			}
			dst[k] = runtime.DeepCopyJSONValue(v)
		}
	}
	out := live.DeepCopy()
	merge(out.Object, desired.Object)
	return out
}

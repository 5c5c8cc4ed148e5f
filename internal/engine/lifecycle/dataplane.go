package lifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hitless-dev/hitless/internal/component/apply"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// applyWorkloads applies the workloads and waits for them, with each
// data-plane DaemonSet switched to OnDelete first so that no pod of it is
// replaced before its node is drained.
func (r *runner) applyWorkloads(ctx context.Context, objs []*unstructured.Unstructured) ([]string, error) {
	out := make([]*unstructured.Unstructured, 0, len(objs))
	noWait := map[string]bool{}
	for _, o := range objs {
		if r.isDataPlane(o) {
			if err := r.settled(ctx, o.GetNamespace(), o.GetName()); err != nil {
				return nil, err
			}
			o = o.DeepCopy()
			if err := unstructured.SetNestedMap(o.Object, map[string]any{"type": "OnDelete"}, "spec", "updateStrategy"); err != nil {
				return nil, err
			}
			noWait[apply.Name(o)] = true
		}
		out = append(out, o)
	}
	return r.apply(ctx, out, noWait)
}

// settled waits until a rollout of the DaemonSet that its own controller
// drives is over: a pod it is replacing right now would come back with
// the new template on a node nobody drained.
func (r *runner) settled(ctx context.Context, ns, name string) error {
	deadline := time.Now().Add(r.opts.Wait)
	for {
		ds, err := r.c.Client.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading DaemonSet %s/%s: %w", ns, name, err)
		}
		st := ds.Status
		if ds.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType ||
			(st.ObservedGeneration >= ds.Generation && st.UpdatedNumberScheduled == st.DesiredNumberScheduled && st.NumberUnavailable == 0) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("DaemonSet %s/%s is still rolling out on its own (%d of %d pods updated, %d unavailable); nothing of it was changed", ns, name, st.UpdatedNumberScheduled, st.DesiredNumberScheduled, st.NumberUnavailable)
		}
		r.opts.progressf("%-10s waiting for DaemonSet %s/%s's own rollout to finish (%d/%d updated)", StageWorkloads, ns, name, st.UpdatedNumberScheduled, st.DesiredNumberScheduled)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func (r *runner) isDataPlane(o *unstructured.Unstructured) bool {
	return o.GetKind() == "DaemonSet" && slices.Contains(r.rev.DataPlane, o.GetNamespace()+"/"+o.GetName())
}

// dataPlane replaces each data-plane DaemonSet's outdated pods node by
// node through the roll engine (drain, replace, wait Ready, uncordon), in
// the node-selector groups in order and then the other nodes, and then
// restores the vendor's update strategy.
func (r *runner) dataPlane(ctx context.Context, workloads []*unstructured.Unstructured) ([]string, error) {
	var detail []string
	for _, o := range workloads {
		if !r.isDataPlane(o) {
			continue
		}
		ref := o.GetNamespace() + "/" + o.GetName()
		groups := append(slices.Clone(r.opts.NodeSelectors), "")
		for _, g := range groups {
			rec, err := r.rollRecord(ctx, ref, g)
			if err != nil {
				return detail, err
			}
			if rec == nil {
				continue
			}
			if err := r.runRoll(ctx, rec); err != nil {
				return detail, err
			}
			detail = append(detail, fmt.Sprintf("%s: %d node(s) in group %q rolled by %s", ref, len(rec.Spec.Nodes), groupName(g), rec.Operation))
		}
		// The vendor's own strategy back: every pod is current, so
		// nothing restarts.
		if _, err := r.apply(ctx, []*unstructured.Unstructured{o}, nil); err != nil {
			return detail, err
		}
		if err := r.restoreStrategy(ctx, o); err != nil {
			return detail, err
		}
	}
	return detail, nil
}

// restoreStrategy sets the vendor's update strategy back where the apply
// could not: OnDelete set by the patch that removed structures from the
// template (apply.RemoveHusks holds the rollout that way) is owned by that
// update as well, and an apply that leaves the field out does not take it
// back. A vendor that names no strategy gets the API's default.
func (r *runner) restoreStrategy(ctx context.Context, o *unstructured.Unstructured) error {
	want, ok, _ := unstructured.NestedMap(o.Object, "spec", "updateStrategy")
	if !ok {
		want = map[string]any{"type": string(appsv1.RollingUpdateDaemonSetStrategyType)}
	}
	ds, err := r.c.Client.AppsV1().DaemonSets(o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading DaemonSet %s/%s: %w", o.GetNamespace(), o.GetName(), err)
	}
	if string(ds.Spec.UpdateStrategy.Type) == want["type"] {
		return nil
	}
	body, err := json.Marshal(map[string]any{"spec": map[string]any{"updateStrategy": want}})
	if err != nil {
		return err
	}
	if _, err := r.c.Client.AppsV1().DaemonSets(ds.Namespace).Patch(ctx, ds.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: apply.FieldManager}); err != nil {
		return fmt.Errorf("restoring the update strategy of DaemonSet %s/%s: %w", ds.Namespace, ds.Name, err)
	}
	return nil
}

func groupName(sel string) string {
	if sel == "" {
		return "other nodes"
	}
	return sel
}

// rollRecord returns the roll of ref's group sel: the one journaled by an
// earlier run, or a new one over the group's nodes whose pod is outdated
// (journaled before it starts); nil when no node needs it.
func (r *runner) rollRecord(ctx context.Context, ref, sel string) (*rollRecord, error) {
	for i := range r.st.Rolls {
		if r.st.Rolls[i].DaemonSet == ref && r.st.Rolls[i].Group == sel {
			return &r.st.Rolls[i], nil
		}
	}
	outdated, err := r.outdatedNodes(ctx, ref)
	if err != nil {
		return nil, err
	}
	var nodes []string
	for _, n := range outdated {
		if r.claimed(ref, n) {
			continue
		}
		ok, err := r.inGroup(ctx, n, sel)
		if err != nil {
			return nil, err
		}
		if ok {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return nil, nil
	}
	restart, err := roll.NewAction(roll.ActionRestartDaemonSet, roll.RestartParams{DaemonSet: ref})
	if err != nil {
		return nil, err
	}
	rec := rollRecord{DaemonSet: ref, Group: sel, Spec: roll.Spec{Nodes: nodes, Batch: r.opts.Batch, Order: roll.OrderControlPlaneLast, Actions: []roll.ActionSpec{restart}, ActionTimeout: r.opts.Wait}}
	r.st.Rolls = append(r.st.Rolls, rec)
	if err := r.saveState(ctx); err != nil {
		return nil, err
	}
	return &r.st.Rolls[len(r.st.Rolls)-1], nil
}

// claimed reports whether an earlier group's roll of ref has node n.
func (r *runner) claimed(ref, n string) bool {
	for _, rec := range r.st.Rolls {
		if rec.DaemonSet == ref && slices.Contains(rec.Spec.Nodes, n) {
			return true
		}
	}
	return false
}

func (r *runner) inGroup(ctx context.Context, node, sel string) (bool, error) {
	if sel == "" {
		return true, nil
	}
	s, err := labels.Parse(sel)
	if err != nil {
		return false, &InputError{Field: "nodeSelectors", Msg: fmt.Sprintf("%q: %v", sel, err)}
	}
	n, err := r.c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("reading node %s: %w", node, err)
	}
	return s.Matches(labels.Set(n.Labels)), nil
}

func (r *runner) runRoll(ctx context.Context, rec *rollRecord) error {
	if rec.Status == string(journal.Succeeded) { // by an earlier run
		r.res.Rolls = append(r.res.Rolls, RollSummary{DaemonSet: rec.DaemonSet, Group: groupName(rec.Group), Operation: rec.Operation, Nodes: rec.Spec.Nodes, Status: rec.Status})
		return nil
	}
	res, err := roll.Run(ctx, r.c.Client, roll.Options{Spec: rec.Spec, Command: r.opts.Command, Approver: operation.ApproveKinds{operation.AskCanary},
		Lock: r.lock, Progress: r.opts.RollProgress, Guard: r.opts.Guard, Guards: r.opts.Guards})
	if res != nil && res.Operation != nil {
		r.res.RollJournals = append(r.res.RollJournals, res.Operation)
		rec.Operation, rec.Status = res.Operation.ID, string(res.Operation.Status)
		r.res.Rolls = append(r.res.Rolls, RollSummary{DaemonSet: rec.DaemonSet, Group: groupName(rec.Group), Operation: rec.Operation, Nodes: rec.Spec.Nodes, Status: rec.Status})
		if serr := r.saveState(ctx); serr != nil && err == nil {
			err = serr
		}
	}
	if err != nil {
		return fmt.Errorf("rolling DaemonSet %s: %w", rec.DaemonSet, err)
	}
	return nil
}

// outdatedNodes returns the nodes whose pod of DaemonSet ref does not run
// its current template, waiting first for the controller to see the last
// change.
func (r *runner) outdatedNodes(ctx context.Context, ref string) ([]string, error) {
	ns, name, _ := strings.Cut(ref, "/")
	var ds *appsv1.DaemonSet
	deadline := time.Now().Add(r.opts.Wait)
	for {
		var err error
		if ds, err = r.c.Client.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return nil, fmt.Errorf("reading DaemonSet %s: %w", ref, err)
		}
		if ds.Status.ObservedGeneration >= ds.Generation {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("DaemonSet %s: the controller has not observed generation %d", ref, ds.Generation)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	hash, err := r.currentHash(ctx, ds)
	if err != nil {
		return nil, err
	}
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("DaemonSet %s selector: %w", ref, err)
	}
	pods, err := r.c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("listing pods of DaemonSet %s: %w", ref, err)
	}
	var out []string
	for _, p := range pods.Items {
		if c := metav1.GetControllerOf(&p); c == nil || c.UID != ds.UID || p.Spec.NodeName == "" || p.DeletionTimestamp != nil {
			continue
		}
		if p.Labels[appsv1.DefaultDaemonSetUniqueLabelKey] != hash && !slices.Contains(out, p.Spec.NodeName) {
			out = append(out, p.Spec.NodeName)
		}
	}
	slices.Sort(out)
	return out, nil
}

// currentHash is the controller-revision-hash of the DaemonSet's newest
// ControllerRevision: its pods with another hash run an older template.
func (r *runner) currentHash(ctx context.Context, ds *appsv1.DaemonSet) (string, error) {
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(r.opts.Wait)
	for {
		list, err := r.c.Client.AppsV1().ControllerRevisions(ds.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return "", fmt.Errorf("listing the revisions of DaemonSet %s/%s: %w", ds.Namespace, ds.Name, err)
		}
		var newest *appsv1.ControllerRevision
		for i := range list.Items {
			cr := &list.Items[i]
			if c := metav1.GetControllerOf(cr); c == nil || c.UID != ds.UID {
				continue
			}
			if newest == nil || cr.Revision > newest.Revision {
				newest = cr
			}
		}
		// The newest revision must be the template now in the spec.
		if newest != nil && sameTemplate(newest, ds) {
			return newest.Labels[appsv1.DefaultDaemonSetUniqueLabelKey], nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("DaemonSet %s/%s: no ControllerRevision for its current template", ds.Namespace, ds.Name)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// sameTemplate compares a ControllerRevision's recorded template (a patch
// holding spec.template) with the DaemonSet's.
func sameTemplate(cr *appsv1.ControllerRevision, ds *appsv1.DaemonSet) bool {
	var patch struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(cr.Data.Raw, &patch); err != nil {
		return false
	}
	a, _ := json.Marshal(patch.Spec.Template)
	b, _ := json.Marshal(ds.Spec.Template)
	return string(a) == string(b)
}

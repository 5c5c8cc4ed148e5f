package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/kube/condition"
)

// FieldManager is the default field manager of patches.
const FieldManager = "hitless-migrate"

// forward runs a step's action.
func (r *runner) forward(ctx context.Context, s plan.Step) ([]string, error) {
	return r.act(ctx, s.Name, s.Action, !s.SkipGates)
}

// act runs an action; gated waits pause when a gate fails while they
// wait (a pool degrading during a long roll).
func (r *runner) act(ctx context.Context, step string, a plan.Action, gated bool) ([]string, error) {
	switch {
	case a.Backup != nil:
		return r.backup(ctx, step, a.Backup)
	case a.Patch != nil:
		return r.patch(ctx, step, a.Patch)
	case a.Wait != nil:
		return r.wait(ctx, step, a.Wait, gated)
	case a.Check != nil:
		return r.runCheck(ctx, *a.Check)
	case a.Roll != nil:
		return r.roll(ctx, step, a.Roll)
	case a.Component != nil:
		return r.component(ctx, step, a.Component)
	case a.Pause != nil:
		return r.pause(ctx, step, a.Pause)
	case a.Delete != nil:
		return r.delete(ctx, step, a.Delete)
	case a.Label != nil:
		return r.label(ctx, step, a.Label)
	case a.Sync != nil:
		return r.sync(ctx, a.Sync)
	}
	return nil, fmt.Errorf("step %s has no action", step)
}

func (r *runner) backup(ctx context.Context, step string, b *plan.Backup) ([]string, error) {
	var objs []*unstructured.Unstructured
	for _, ref := range b.Objects {
		l, err := r.objs.list(ctx, ref)
		if err != nil {
			return nil, err
		}
		if len(l) == 0 && ref.Name != "" {
			return nil, fmt.Errorf("%s does not exist", ref)
		}
		objs = append(objs, l...)
	}
	kept, err := r.save(ctx, step, objs)
	if err != nil {
		return nil, err
	}
	lines := make([]string, 0, len(kept))
	for _, u := range kept {
		lines = append(lines, "saved "+refOf(u).String())
	}
	return lines, nil
}

func (r *runner) patch(ctx context.Context, step string, p *plan.Patch) ([]string, error) {
	ri, err := r.objs.resource(p.Object)
	if err != nil {
		return nil, err
	}
	cur, err := r.objs.get(ctx, p.Object)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, fmt.Errorf("%s does not exist", p.Object)
	}
	kept, err := r.save(ctx, step, []*unstructured.Unstructured{cur})
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(p.Patch)
	if err != nil {
		return nil, fmt.Errorf("encoding the patch: %w", err)
	}
	if p.Type == plan.PatchJSON && len(kept) == 1 {
		// A JSON patch may not be idempotent (an add to a list): a run
		// that already applied it to the backed-up object is not repeated.
		done, err := jsonPatchApplied(kept[0], cur, body, touched(p))
		if err != nil {
			return nil, err
		}
		if done {
			return []string{"patched " + p.Object.String() + " (before the restart)"}, nil
		}
	}
	if err := send(ctx, ri, p, body); err != nil {
		return nil, err
	}
	return []string{describePatch(p, body)}, nil
}

// describePatch is the journal's line for a patch; a Secret's values never
// appear in it.
func describePatch(p *plan.Patch, body []byte) string {
	shown := compact(body)
	if p.Object.Kind == "Secret" && p.Object.GVK().Group == "" {
		shown = "(a Secret: values not shown)"
	}
	return fmt.Sprintf("patched %s (%s): %s", p.Object, patchType(p.Type), shown)
}

func send(ctx context.Context, ri dynamic.ResourceInterface, p *plan.Patch, body []byte) error {
	manager := p.FieldManager
	if manager == "" {
		manager = FieldManager
	}
	var err error
	switch p.Type {
	case plan.PatchJSON:
		_, err = ri.Patch(ctx, p.Object.Name, types.JSONPatchType, body, metav1.PatchOptions{FieldManager: manager})
	case plan.PatchApply:
		obj := map[string]any{}
		if err := json.Unmarshal(body, &obj); err != nil {
			return err
		}
		obj["apiVersion"], obj["kind"] = p.Object.APIVersion, p.Object.Kind
		md, _ := obj["metadata"].(map[string]any)
		if md == nil {
			md = map[string]any{}
		}
		md["name"] = p.Object.Name
		if p.Object.Namespace != "" {
			md["namespace"] = p.Object.Namespace
		}
		obj["metadata"] = md
		b, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		_, err = ri.Patch(ctx, p.Object.Name, types.ApplyPatchType, b, metav1.PatchOptions{FieldManager: manager, Force: ptr.To(true)})
		if err != nil {
			return fmt.Errorf("applying to %s: %w", p.Object, err)
		}
		return nil
	default:
		_, err = ri.Patch(ctx, p.Object.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: manager})
	}
	if err != nil {
		return fmt.Errorf("patching %s: %w", p.Object, err)
	}
	return nil
}

func patchType(t string) string {
	if t == "" {
		return plan.PatchMerge
	}
	return t
}

func compact(b []byte) string {
	s := string(b)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// wait polls until the condition holds for the object, or for every
// object the ref selects.
func (r *runner) wait(ctx context.Context, step string, w *plan.Wait, gated bool) ([]string, error) {
	cond, msg, err := r.programs(w.For, w.Condition, w.Message)
	if err != nil {
		return nil, err
	}
	timeout := plan.Duration(w.Timeout, 10*time.Minute)
	hold := plan.Duration(w.HoldFor, 0)
	deadline := time.Now().Add(timeout)
	last := ""
	var since time.Time // when the condition last started to hold
	var gates gateWatch
	for {
		if gated {
			if _, err := gates.check(ctx, r, step); err != nil {
				return nil, err
			}
		}
		n, why, err := r.evaluate(ctx, w.For, cond, msg, w.AllowNone)
		if err != nil {
			return nil, err
		}
		if why == "" && since.IsZero() {
			since = time.Now()
		}
		if why == "" && time.Since(since) >= hold {
			line := fmt.Sprintf("%d object(s) of %s hold %s", n, w.For, oneLine(w.Condition))
			if hold > 0 {
				line += fmt.Sprintf(" (for %s)", hold)
			}
			return []string{line}, nil
		}
		if why != "" {
			since = time.Time{}
		} else {
			why = fmt.Sprintf("holding for %s", hold)
		}
		if why != last {
			r.opts.progressf("%-10s waiting: %s", step, why)
			last = why
		}
		if time.Now().After(deadline) {
			reason := fmt.Sprintf("waited %s: %s", timeout, why)
			if w.OnTimeout == plan.OnTimeoutPause {
				return nil, &PausedError{Step: step, Reason: reason}
			}
			return nil, errors.New(reason)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(r.opts.Poll):
		}
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// programs compiles a condition and its message against the kind's schema.
// programs compiles a condition and its message against the kind's
// schema, once per run: gates are evaluated at every poll of every wait.
func (r *runner) programs(ref plan.ObjectRef, cond, msg string) (*condition.Program, *condition.Program, error) {
	key := ref.GVK().String() + "\x00" + cond + "\x00" + msg
	if p, ok := r.compiled[key]; ok {
		return p[0], p[1], nil
	}
	p, err := r.cel.Bool(ref.GVK(), cond)
	if err != nil {
		return nil, nil, err
	}
	var m *condition.Program
	if msg != "" {
		if m, err = r.cel.String(ref.GVK(), msg); err != nil {
			return nil, nil, err
		}
	}
	if r.compiled == nil {
		r.compiled = map[string][2]*condition.Program{}
	}
	r.compiled[key] = [2]*condition.Program{p, m}
	return p, m, nil
}

// evaluate checks every object the ref selects: it returns how many there
// are and, when one fails, why ("" when all hold).
func (r *runner) evaluate(ctx context.Context, ref plan.ObjectRef, cond, msg *condition.Program, allowNone bool) (int, string, error) {
	l, err := r.objs.list(ctx, ref)
	if err != nil {
		return 0, "", err
	}
	if len(l) == 0 && !allowNone {
		return 0, "no " + strings.TrimPrefix(ref.String(), "every ") + " exists yet", nil
	}
	for _, u := range l {
		ok, err := cond.True(ctx, u.Object, r.res.Params)
		if ok {
			continue
		}
		why := refOf(u).String() + " does not hold " + oneLine(cond.Expr)
		if msg != nil {
			if v, merr := msg.Eval(ctx, u.Object, r.res.Params); merr == nil {
				why = fmt.Sprint(v)
			}
		}
		if err != nil {
			why += " (" + err.Error() + ")"
		}
		return len(l), why, nil
	}
	return len(l), "", nil
}

// gates checks the plan's gates before a step; one that fails for longer
// than its `within` pauses the plan, naming the object.
func (r *runner) gates(ctx context.Context, step string) error {
	var g gateWatch
	for {
		done, err := g.check(ctx, r, step)
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.opts.Poll):
		}
	}
}

// gateWatch follows the plan's gates across polls.
type gateWatch struct {
	failing string    // the gate failing now, "" when all hold
	since   time.Time // when it started failing
}

// check evaluates every gate once: done when all hold, a PausedError once
// one has failed for longer than its `within`.
func (g *gateWatch) check(ctx context.Context, r *runner, step string) (bool, error) {
	for _, gate := range r.plan.Gates {
		cond, msg, err := r.programs(gate.For, gate.Condition, gate.Message)
		if err != nil {
			return false, fmt.Errorf("gate %s: %w", gate.Name, err)
		}
		_, why, err := r.evaluate(ctx, gate.For, cond, msg, true)
		if err != nil {
			return false, fmt.Errorf("gate %s: %w", gate.Name, err)
		}
		if why == "" {
			continue
		}
		if g.failing != gate.Name {
			g.failing, g.since = gate.Name, time.Now()
			r.opts.progressf("%-10s gate %s: %s", step, gate.Name, why)
		}
		if time.Since(g.since) > plan.Duration(gate.Within, 30*time.Second) {
			return false, &PausedError{Step: step, Reason: "gate " + gate.Name + ": " + why}
		}
		return false, nil
	}
	g.failing = ""
	return true, nil
}

// pause asks the approver; a refusal pauses the plan before the step.
func (r *runner) pause(ctx context.Context, step string, p *plan.Pause) ([]string, error) {
	if err := operation.Ask(ctx, r.opts.Approver, operation.Question{Kind: AskStep, Step: step, Text: p.Message}); err != nil {
		return nil, &PausedError{Step: step, Reason: err.Error()}
	}
	return []string{"approved: " + p.Message}, nil
}

// AskStep is the kind of question a pause step asks.
const AskStep = "migrate-step"

// delete removes the objects, saved first; a namespace that holds what
// the plan does not own is refused unless forced.
func (r *runner) delete(ctx context.Context, step string, d *plan.Delete) ([]string, error) {
	var objs []*unstructured.Unstructured
	for _, ref := range d.Objects {
		l, err := r.objs.list(ctx, ref)
		if err != nil {
			return nil, err
		}
		objs = append(objs, l...)
	}
	for _, u := range objs {
		if u.GetKind() == "Namespace" && u.GetAPIVersion() == "v1" && !d.Force {
			if err := r.namespaceDeletable(ctx, u.GetName()); err != nil {
				return nil, err
			}
		}
	}
	kept, err := r.save(ctx, step, objs)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, u := range kept {
		ref := refOf(u)
		ri, err := r.objs.resource(ref)
		if err != nil {
			return nil, err
		}
		err = ri.Delete(ctx, ref.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)})
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("deleting %s: %w", ref, err)
		}
		lines = append(lines, "deleted "+ref.String())
	}
	timeout := plan.Duration(d.Timeout, 5*time.Minute)
	deadline := time.Now().Add(timeout)
	for _, u := range kept {
		ref := refOf(u)
		for {
			cur, err := r.objs.get(ctx, ref)
			if err != nil {
				return nil, err
			}
			if cur == nil || cur.GetUID() != u.GetUID() {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s is still there after %s, held by finalizers %s; run the same command again once they are gone", ref, timeout, strings.Join(cur.GetFinalizers(), ", "))
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(r.opts.Poll):
			}
		}
	}
	return lines, nil
}

// namespaceDeletable refuses a namespace that holds data or pods nobody
// manages: deleting it would lose what the plan does not own.
func (r *runner) namespaceDeletable(ctx context.Context, ns string) error {
	pvcs, err := r.c.Client.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	if len(pvcs.Items) > 0 {
		return &RefusedError{Msg: fmt.Sprintf("namespace %s holds PersistentVolumeClaim %s, which the plan does not own (give the delete step force: true to delete it anyway)", ns, pvcs.Items[0].Name)}
	}
	pods, err := r.c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	for _, p := range pods.Items {
		if metav1.GetControllerOf(&p) == nil {
			return &RefusedError{Msg: fmt.Sprintf("namespace %s holds pod %s, which no controller manages (give the delete step force: true to delete it anyway)", ns, p.Name)}
		}
	}
	return nil
}

// RefusedError is a step hitless will not take as given.
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return e.Msg }

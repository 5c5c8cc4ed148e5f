package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// NodeRollFor is the NodeRoll that has the controller run spec: what
// `hitless roll --in-cluster` creates. What a resource cannot carry (a
// command run where the CLI runs, questions for its terminal) is refused
// as a *operation.FieldError naming the engine field. An empty name is
// derived from the spec, so that the same roll asked again is the same
// resource.
func NodeRollFor(name string, s roll.Spec) (*v1alpha1.NodeRoll, error) {
	s.Defaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	switch {
	case s.PreNode != "":
		return nil, &operation.FieldError{Field: "preNode", Msg: "a command run where the CLI runs: the controller cannot run it (use a registered action)"}
	case s.PostNode != "":
		return nil, &operation.FieldError{Field: "postNode", Msg: "a command run where the CLI runs: the controller cannot run it (use a registered action)"}
	case s.Confirm:
		return nil, &operation.FieldError{Field: "confirm", Msg: "questions before each node need a terminal: the controller asks only for the canary (spec.canaryApproved)"}
	}
	if name == "" {
		name = "roll-" + s.Hash()
	}
	nr := &v1alpha1.NodeRoll{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion().String(), Kind: "NodeRoll"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.NodeRollSpec{
			Nodes: s.Nodes, Order: s.Order, Canary: int32(s.Canary), MaxFailures: int32(s.MaxFailures),
			ActionTimeout: &metav1.Duration{Duration: s.ActionTimeout},
			Drain: &v1alpha1.DrainPolicy{
				Timeout: &metav1.Duration{Duration: s.DrainTimeout}, OnTimeout: s.OnDrainTimeout,
				Force: s.Force, DeleteEmptyDirData: s.DeleteEmptyDirData, EvictRetryDelay: &metav1.Duration{Duration: s.EvictRetryDelay},
			},
		},
	}
	if len(s.Nodes) == 0 {
		sel, err := metav1.ParseToLabelSelector(s.Selector)
		if err != nil {
			return nil, &operation.FieldError{Field: "selector", Msg: err.Error()}
		}
		nr.Spec.NodeSelector = sel
	}
	n, pct, err := roll.ParseBatch(s.Batch)
	if err != nil {
		return nil, &operation.FieldError{Field: "batch", Msg: err.Error()}
	}
	nr.Spec.Batch = intstr.FromInt32(int32(n))
	if pct {
		nr.Spec.Batch = intstr.FromString(strconv.Itoa(n) + "%")
	}
	for _, a := range s.Actions {
		nr.Spec.Actions = append(nr.Spec.Actions, resourceAction(a))
	}
	hooks := &v1alpha1.NodeHooks{}
	if len(s.PreNodeActions)+len(s.PostNodeActions) > 0 {
		nr.Spec.Hooks = hooks
	}
	for _, l := range []struct {
		field string
		specs []roll.ActionSpec
		into  *[]v1alpha1.NodeHook
	}{{"preNodeActions", s.PreNodeActions, &hooks.PreNode}, {"postNodeActions", s.PostNodeActions, &hooks.PostNode}} {
		for _, a := range l.specs {
			h, err := nodeHook(l.field, a)
			if err != nil {
				return nil, err
			}
			*l.into = append(*l.into, h)
		}
	}
	return nr, nil
}

func resourceAction(a roll.ActionSpec) v1alpha1.NodeAction {
	na := v1alpha1.NodeAction{Name: a.Name}
	if len(a.Params) > 0 && string(a.Params) != "null" {
		na.Params = &runtime.RawExtension{Raw: a.Params}
	}
	return na
}

// nodeHook is a hook action as a NodeRoll's hook: the job action is a Job
// hook, which runs in the controller's hook namespace.
func nodeHook(field string, a roll.ActionSpec) (v1alpha1.NodeHook, error) {
	if a.Name != roll.ActionJob {
		na := resourceAction(a)
		return v1alpha1.NodeHook{Action: &na}, nil
	}
	p, err := roll.ParseJobParams(a.Params)
	if err != nil {
		return v1alpha1.NodeHook{}, &operation.FieldError{Field: field, Msg: err.Error()}
	}
	if p.Namespace != "" {
		return v1alpha1.NodeHook{}, &operation.FieldError{Field: field, Msg: fmt.Sprintf("job namespace %q: the controller runs Jobs in its hook namespace (hitless-hooks by default); leave namespace out", p.Namespace)}
	}
	tmpl, err := json.Marshal(p.Template)
	if err != nil {
		return v1alpha1.NodeHook{}, &operation.FieldError{Field: field, Msg: err.Error()}
	}
	return v1alpha1.NodeHook{Job: &v1alpha1.JobHook{OnNode: p.OnNode, Template: runtime.RawExtension{Raw: tmpl}}}, nil
}

// Create creates nr, or finds the NodeRoll of that name already there
// (the same roll asked again): it returns the resource as it is.
func Create(ctx context.Context, c client.Client, nr *v1alpha1.NodeRoll) (*v1alpha1.NodeRoll, bool, error) {
	err := c.Create(ctx, nr)
	if err == nil {
		return nr, true, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, false, fmt.Errorf("creating NodeRoll %s: %w", nr.Name, err)
	}
	live := &v1alpha1.NodeRoll{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(nr), live); err != nil {
		return nil, false, fmt.Errorf("reading NodeRoll %s: %w", nr.Name, err)
	}
	return live, false, nil
}

// Waiting says why a NodeRoll waits for a person, or "": the roll is
// over, or paused for a reason that is not an error tried again.
func Waiting(nr *v1alpha1.NodeRoll) (reason, msg string, ok bool) {
	cond := meta.FindStatusCondition(nr.Status.Conditions, v1alpha1.ConditionPaused)
	if nr.Status.Phase != v1alpha1.PhasePaused || cond == nil || cond.Reason == reasonError {
		return "", "", false
	}
	return cond.Reason, cond.Message, true
}

// Follow reads the NodeRoll every interval until its roll is over or it
// waits for a person (Waiting), calling changed whenever its status moved.
func Follow(ctx context.Context, c client.Client, name string, interval time.Duration, changed func(*v1alpha1.NodeRoll)) (*v1alpha1.NodeRoll, error) {
	return follow(ctx, c, name, interval, func() *v1alpha1.NodeRoll { return &v1alpha1.NodeRoll{} }, StatusLine, func(nr *v1alpha1.NodeRoll) bool {
		if nr.Status.ObservedGeneration != nr.Generation {
			return false
		}
		switch nr.Status.Phase {
		case v1alpha1.PhaseSucceeded, v1alpha1.PhaseFailed, v1alpha1.PhaseAborted:
			return true
		}
		_, _, ok := Waiting(nr)
		return ok
	}, changed)
}

// follow reads the resource name every interval until over says its
// status is a verdict, calling changed whenever its line moved.
func follow[T client.Object](ctx context.Context, c client.Client, name string, interval time.Duration, fresh func() T, line func(T) string, over func(T) bool, changed func(T)) (T, error) {
	last := ""
	for {
		obj := fresh()
		if err := c.Get(ctx, client.ObjectKey{Name: name}, obj); err != nil {
			var zero T
			return zero, fmt.Errorf("reading %s %s: %w", kindOf(obj), name, err)
		}
		if l := line(obj); l != last {
			last = l
			changed(obj)
		}
		if over(obj) {
			return obj, nil
		}
		select {
		case <-ctx.Done():
			return obj, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// kindOf names a hitless.dev resource's kind for messages.
func kindOf(obj client.Object) string {
	switch obj.(type) {
	case *v1alpha1.NodeRoll:
		return "NodeRoll"
	case *v1alpha1.Component:
		return "Component"
	case *v1alpha1.Migration:
		return "Migration"
	}
	return fmt.Sprintf("%T", obj)
}

// StatusLine sums a NodeRoll's status up in a line.
func StatusLine(nr *v1alpha1.NodeRoll) string {
	phase := nr.Status.Phase
	if phase == "" {
		phase = v1alpha1.PhasePending
	}
	s := nr.Status.Summary
	parts := []string{fmt.Sprintf("%s %d/%d nodes done", phase, s.Done, s.Total)}
	if s.Failed > 0 || s.Skipped > 0 {
		parts = append(parts, fmt.Sprintf("%d failed, %d skipped", s.Failed, s.Skipped))
	}
	for _, c := range nr.Status.Conditions {
		if c.Status == metav1.ConditionTrue {
			parts = append(parts, c.Reason+": "+c.Message)
		}
	}
	return strings.Join(parts, "; ")
}

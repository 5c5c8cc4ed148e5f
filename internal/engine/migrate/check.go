package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hitless-dev/hitless/internal/engine/cutover"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/kube/condition"
)

// checkPlan checks a rendered plan against the cluster before anything
// changes: every kind is served, every object a step names exists (or an
// earlier step creates it), every CEL expression compiles against its
// kind's schema, every per-node action is registered. What cannot be
// checked (kinds an earlier component step brings) is a warning.
func checkPlan(ctx context.Context, objs *objects, cel *condition.Compiler, p *plan.Plan, opts Options) ([]string, error) {
	var warnings []string
	installs := false // an earlier component step may bring kinds and objects
	ref := func(step, field string, r plan.ObjectRef, mustExist bool) error {
		if _, err := objs.resource(r); err != nil {
			if meta.IsNoMatchError(errors.Unwrap(err)) || meta.IsNoMatchError(err) {
				if installs {
					warnings = append(warnings, fmt.Sprintf("step %s: %s is not served yet; an earlier component step may bring it", step, r.Kind))
					return nil
				}
				return &plan.Error{Step: step, Field: field + ".kind", Msg: fmt.Sprintf("%s %s is not served by the cluster", r.APIVersion, r.Kind)}
			}
			return err
		}
		if !mustExist || r.Name == "" {
			return nil
		}
		u, err := objs.get(ctx, r)
		if err != nil {
			return err
		}
		if u == nil {
			if installs {
				warnings = append(warnings, fmt.Sprintf("step %s: %s does not exist yet", step, r))
				return nil
			}
			return &plan.Error{Step: step, Field: field + ".name", Msg: fmt.Sprintf("%s does not exist", r)}
		}
		return nil
	}
	compile := func(step, field string, r plan.ObjectRef, cond, msg string) error {
		c, err := cel.Bool(r.GVK(), cond)
		if err != nil {
			return &plan.Error{Step: step, Field: field + ".condition", Msg: err.Error()}
		}
		if !c.Checked {
			warnings = append(warnings, fmt.Sprintf("step %s: %s has no published schema; %s.condition is checked for syntax only", nameOr(step), r.Kind, field))
		}
		if msg != "" {
			if _, err := cel.String(r.GVK(), msg); err != nil {
				return &plan.Error{Step: step, Field: field + ".message", Msg: err.Error()}
			}
		}
		return nil
	}
	for i, g := range p.Gates {
		field := fmt.Sprintf("gates[%d]", i)
		if err := ref("", field+".for", g.For, false); err != nil {
			return warnings, err
		}
		if err := compile("", field, g.For, g.Condition, g.Message); err != nil {
			return warnings, err
		}
	}
	deleted := map[string]bool{}
	for _, s := range p.Steps {
		if err := checkAction(s.Name, "", s.Action, ref, compile, deleted, opts); err != nil {
			return warnings, err
		}
		if err := checkTransforms(s, cel); err != nil {
			return warnings, err
		}
		if r := s.Rollback; r != nil && !r.None {
			if r.Type() != "" {
				if err := checkAction(s.Name, "rollback.", r.Action, ref, compile, map[string]bool{}, opts); err != nil {
					return warnings, err
				}
			}
			for i, a := range r.Before {
				if err := checkAction(s.Name, fmt.Sprintf("rollback.before[%d].", i), a, ref, compile, map[string]bool{}, opts); err != nil {
					return warnings, err
				}
			}
			for i, a := range r.Then {
				if err := checkAction(s.Name, fmt.Sprintf("rollback.then[%d].", i), a, ref, compile, map[string]bool{}, opts); err != nil {
					return warnings, err
				}
			}
		}
		if s.Component != nil && s.Component.Action != plan.ComponentUninstall {
			installs = true
		}
	}
	return append(warnings, mixedWarnings(ctx, objs, p, opts)...), nil
}

// mixedWarnings say, for every cutover of the plan, whether pods on the
// two data planes reach each other while the cluster is mixed: the
// source's DaemonSet is read from the cluster, the target's from the
// cluster or from a release a component step deploys.
func mixedWarnings(ctx context.Context, objs *objects, p *plan.Plan, opts Options) []string {
	var out []string
	for _, s := range p.Steps {
		if s.Roll == nil {
			continue
		}
		for _, a := range s.Roll.Actions {
			if a.Name != cutover.ActionName {
				continue
			}
			cp, err := cutover.Decode(a.Params)
			if err != nil {
				continue // refused by the action check above
			}
			from := daemonSetImages(ctx, objs, cp.From.DaemonSet, opts)
			to := daemonSetImages(ctx, objs, cp.To.DaemonSet, opts)
			if len(from) == 0 || len(to) == 0 {
				continue
			}
			ok, why := cutover.Mixed(from, to)
			verdict := "pods on the two data planes do not reach each other while the cluster is mixed"
			if ok {
				verdict = "pods on the two data planes reach each other while the cluster is mixed"
			}
			out = append(out, fmt.Sprintf("step %s: %s: %s", s.Name, verdict, why))
		}
	}
	return out
}

// daemonSetImages are the container images of DaemonSet ref
// (namespace/name), from the cluster or else from a release given.
func daemonSetImages(ctx context.Context, objs *objects, ref string, opts Options) []string {
	ns, name, _ := strings.Cut(ref, "/")
	var u *unstructured.Unstructured
	if got, err := objs.get(ctx, plan.ObjectRef{APIVersion: "apps/v1", Kind: "DaemonSet", Namespace: ns, Name: name}); err == nil && got != nil {
		u = got
	}
	for _, src := range opts.Sources {
		for _, o := range src.Objects {
			if u == nil && o.GetKind() == "DaemonSet" && o.GetNamespace() == ns && o.GetName() == name {
				u = o.Unstructured
			}
		}
	}
	if u == nil {
		return nil
	}
	var out []string
	for _, field := range []string{"initContainers", "containers"} {
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", field)
		for _, c := range cs {
			if m, ok := c.(map[string]any); ok {
				if img, ok := m["image"].(string); ok {
					out = append(out, img)
				}
			}
		}
	}
	return out
}

type refCheck func(step, field string, r plan.ObjectRef, mustExist bool) error
type celCheck func(step, field string, r plan.ObjectRef, cond, msg string) error

func checkAction(step, prefix string, a plan.Action, ref refCheck, compile celCheck, deleted map[string]bool, opts Options) error {
	exists := func(field string, r plan.ObjectRef) error {
		return ref(step, prefix+field, r, !deleted[key(r)])
	}
	switch {
	case a.Backup != nil:
		for i, r := range a.Backup.Objects {
			if err := exists(fmt.Sprintf("backup.objects[%d]", i), r); err != nil {
				return err
			}
		}
	case a.Patch != nil:
		if err := exists("patch.object", a.Patch.Object); err != nil {
			return err
		}
		if deleted[key(a.Patch.Object)] {
			return &plan.Error{Step: step, Field: prefix + "patch.object", Msg: a.Patch.Object.String() + " is deleted by an earlier step"}
		}
	case a.Wait != nil:
		if err := ref(step, prefix+"wait.for", a.Wait.For, false); err != nil {
			return err
		}
		if err := compile(step, prefix+"wait", a.Wait.For, a.Wait.Condition, a.Wait.Message); err != nil {
			return err
		}
	case a.Delete != nil:
		for i, r := range a.Delete.Objects {
			if err := ref(step, prefix+fmt.Sprintf("delete.objects[%d]", i), r, false); err != nil {
				return err
			}
			deleted[key(r)] = true
		}
	case a.Roll != nil:
		actions := opts.Actions
		if actions == nil {
			actions = Actions()
		}
		if err := actions.Validate(a.Roll.Actions); err != nil {
			var fe *operation.FieldError
			if errors.As(err, &fe) {
				return &plan.Error{Step: step, Field: prefix + "roll." + fe.Field, Msg: fe.Msg}
			}
			return &plan.Error{Step: step, Field: prefix + "roll.actions", Msg: err.Error()}
		}
	case a.Sync != nil:
		for i, m := range a.Sync.Objects {
			field := fmt.Sprintf("sync.objects[%d]", i)
			if err := ref(step, prefix+field+".from", m.From, false); err != nil {
				return err
			}
			if err := ref(step, prefix+field+".to", plan.ObjectRef{APIVersion: m.To.APIVersion, Kind: m.To.Kind}, false); err != nil {
				return err
			}
		}
	case a.Component != nil:
		if a.Component.Source != "" {
			if _, ok := opts.Sources[a.Component.Source]; !ok {
				return &plan.Error{Step: step, Field: prefix + "component.source", Msg: fmt.Sprintf("no release %q was given", a.Component.Source)}
			}
		}
	}
	return nil
}

// checkTransforms type-checks a sync's translations against the source
// kinds' schemas (a field the old release does not have is named).
func checkTransforms(s plan.Step, cel *condition.Compiler) error {
	if s.Sync == nil {
		return nil
	}
	for i, m := range s.Sync.Objects {
		if m.Transform == "" {
			continue
		}
		if _, err := cel.Map(m.From.GVK(), m.Transform); err != nil {
			return &plan.Error{Step: s.Name, Field: fmt.Sprintf("sync.objects[%d].transform", i), Msg: err.Error()}
		}
	}
	return nil
}

func nameOr(step string) string {
	if step == "" {
		return "(gates)"
	}
	return step
}

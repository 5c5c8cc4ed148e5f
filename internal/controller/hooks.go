package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// nodeAction is one per-node action of a NodeRoll, with its path in the
// resource: spec.actions[i], spec.hooks.preNode[i].job and the like.
type nodeAction struct {
	field string
	spec  roll.ActionSpec
}

// nodeActions lists the NodeRoll's actions and hooks as the roll engine's
// action specs: a Job hook is the job action.
func nodeActions(in v1alpha1.NodeRollSpec) ([]nodeAction, error) {
	var out []nodeAction
	for i, a := range in.Actions {
		out = append(out, nodeAction{field: fmt.Sprintf("spec.actions[%d]", i), spec: actionSpec(a)})
	}
	if in.Hooks == nil {
		return out, nil
	}
	for _, list := range []struct {
		name  string
		hooks []v1alpha1.NodeHook
	}{{"preNode", in.Hooks.PreNode}, {"postNode", in.Hooks.PostNode}} {
		for i, h := range list.hooks {
			field := fmt.Sprintf("spec.hooks.%s[%d]", list.name, i)
			switch {
			case h.Job != nil:
				params, err := json.Marshal(map[string]any{"onNode": h.Job.OnNode, "template": json.RawMessage(orEmpty(h.Job.Template.Raw))})
				if err != nil {
					return nil, &FieldError{Field: field + ".job.template", Msg: err.Error()}
				}
				out = append(out, nodeAction{field: field + ".job", spec: roll.ActionSpec{Name: roll.ActionJob, Params: params}})
			case h.Action != nil:
				out = append(out, nodeAction{field: field + ".action", spec: actionSpec(*h.Action)})
			default:
				return nil, &FieldError{Field: field, Msg: "give job or action"}
			}
		}
	}
	return out, nil
}

func actionSpec(a v1alpha1.NodeAction) roll.ActionSpec {
	spec := roll.ActionSpec{Name: a.Name}
	if a.Params != nil && len(a.Params.Raw) > 0 {
		spec.Params = json.RawMessage(a.Params.Raw)
	}
	return spec
}

func orEmpty(b []byte) []byte {
	if len(b) == 0 {
		return []byte("{}")
	}
	return b
}

// into puts the actions in the roll spec's lists, by where they run.
func into(s *roll.Spec, acts []nodeAction) {
	for _, a := range acts {
		switch {
		case strings.HasPrefix(a.field, "spec.hooks.preNode"):
			s.PreNodeActions = append(s.PreNodeActions, a.spec)
		case strings.HasPrefix(a.field, "spec.hooks.postNode"):
			s.PostNodeActions = append(s.PostNodeActions, a.spec)
		default:
			s.Actions = append(s.Actions, a.spec)
		}
	}
}

// validateActions checks every action against the registry, naming the
// resource's field of the first that is wrong.
func validateActions(actions *roll.Actions, acts []nodeAction) error {
	for _, a := range acts {
		if err := actions.Validate([]roll.ActionSpec{a.spec}); err != nil {
			return actionField(a, err)
		}
	}
	return nil
}

// checkActions has the API server judge the actions that can be judged
// without a change (a Job hook's template, by a dry run): what it refuses
// is a FieldError naming the resource's field.
func checkActions(ctx context.Context, kube kubernetes.Interface, actions *roll.Actions, acts []nodeAction) error {
	for _, a := range acts {
		if err := actions.Check(ctx, kube, "actions", []roll.ActionSpec{a.spec}); err != nil {
			return actionField(a, err)
		}
	}
	return nil
}

// actionPrefix is how the roll engine names an action of its list.
var actionPrefix = regexp.MustCompile(`^actions\[0\](?: \([^)]*\))?: `)

// actionField renames an engine's error about one action to the
// resource's field: "job.template: ..." of a Job hook becomes
// spec.hooks.preNode[0].job.template.
func actionField(a nodeAction, err error) error {
	var fe *operation.FieldError
	if !errors.As(err, &fe) {
		return fmt.Errorf("%s: %w", a.field, err)
	}
	field, msg := fe.Field, fe.Msg
	if field == "actions" {
		msg = actionPrefix.ReplaceAllString(msg, "")
		if f, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(f, "job") && !strings.Contains(f, " ") {
			field, msg = f, rest
		}
	}
	switch {
	case field == "job.namespace" && strings.HasSuffix(a.field, ".job"):
		return &FieldError{Field: a.field, Msg: msg} // the controller's namespace, not the resource's
	case strings.HasSuffix(a.field, ".job") && strings.HasPrefix(field, "job."):
		return &FieldError{Field: a.field + strings.TrimPrefix(field, "job"), Msg: msg}
	case strings.HasSuffix(a.field, ".job"):
		return &FieldError{Field: a.field, Msg: msg}
	case field == "actions" && strings.Contains(msg, "unknown action"):
		return &FieldError{Field: a.field + ".name", Msg: msg}
	case field == "actions":
		return &FieldError{Field: a.field + ".params", Msg: msg}
	}
	return &FieldError{Field: a.field + ".params", Msg: field + ": " + msg}
}

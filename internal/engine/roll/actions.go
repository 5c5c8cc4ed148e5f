package roll

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/engine/operation"
)

// Names of the built-in per-node actions.
const (
	ActionExec               = "exec"
	ActionRestartDaemonSet   = "restart-daemonset"
	ActionSetNodeLabels      = "set-node-label"
	ActionWaitNodeAnnotation = "wait-node-annotation"
)

// ActionSpec is one per-node action of a roll: a registered name and its
// parameters, journaled with the spec so a resume runs the same action.
type ActionSpec struct {
	Name   string          `json:"name"`
	Params json.RawMessage `json:"params,omitempty"`
}

// NewAction returns the spec of action name with params encoded as JSON.
func NewAction(name string, params any) (ActionSpec, error) {
	b, err := json.Marshal(params)
	if err != nil {
		return ActionSpec{}, fmt.Errorf("encoding the parameters of action %s: %w", name, err)
	}
	return ActionSpec{Name: name, Params: b}, nil
}

// Target is the node an action works on.
type Target struct {
	Client    kubernetes.Interface
	Node      string
	NodeIP    string
	Operation string
	Batch     int
	// Phase is the node's phase the action runs in: pre-node, action or
	// post-node.
	Phase string
	// Record journals a command's outcome on the node.
	Record func(HookRecord) error
	// Progress reports a line about the action.
	Progress func(msg string)
}

// Action is a per-node action, run between a node's drain and the wait
// for it to be Ready. It is run again, from the start, when a crash
// interrupted it: it must be idempotent.
type Action interface {
	Run(ctx context.Context, t Target) error
}

// Checker is an action that can check its parameters against the cluster
// without changing it (a server-side dry run): a roll checks its actions
// before it starts, so that what the API server would refuse stops it
// before any node is touched.
type Checker interface {
	Check(ctx context.Context, cs kubernetes.Interface) error
}

// DaemonSetRestarter is an action that replaces the pods of a DaemonSet
// (namespace/name), whose grace periods the plan's estimate counts.
type DaemonSetRestarter interface {
	RestartsDaemonSet() string
}

// ActionType is a kind of per-node action: its name and how its journaled
// parameters become an action. New validates them; bad ones are a
// *operation.FieldError naming the parameter.
type ActionType struct {
	Name string
	New  func(params json.RawMessage) (Action, error)
	// Inverse, when set, gives the parameters of the same action that
	// undoes it on a node (a cutover back): a node rolled with it can be
	// rolled back alone.
	Inverse func(params json.RawMessage) (json.RawMessage, error)
}

// Actions is a registry of action types. A new per-node action is added
// by registering it; the roll engine never names one.
type Actions struct {
	types map[string]ActionType
}

// DefaultActions returns a registry of the built-in actions: exec,
// restart-daemonset, set-node-label, wait-node-annotation and job.
func DefaultActions() *Actions {
	a := &Actions{types: map[string]ActionType{}}
	for _, t := range []ActionType{
		{Name: ActionExec, New: newExec},
		{Name: ActionRestartDaemonSet, New: newRestart},
		{Name: ActionSetNodeLabels, New: newSetLabels},
		{Name: ActionWaitNodeAnnotation, New: newWaitAnnotation},
		JobActionType(""),
	} {
		a.types[t.Name] = t
	}
	return a
}

// Replace adds an action type, or replaces the one of its name: how a
// front end restricts a built-in action (the controller pins the job
// action's namespace).
func (a *Actions) Replace(t ActionType) *Actions {
	out := a.Without(t.Name)
	out.types[t.Name] = t
	return out
}

// Register adds an action type; a name already taken is refused.
func (a *Actions) Register(t ActionType) error {
	if t.Name == "" || t.New == nil {
		return fmt.Errorf("registering an action: a name and a constructor are required")
	}
	if _, ok := a.types[t.Name]; ok {
		return fmt.Errorf("action %q is already registered", t.Name)
	}
	a.types[t.Name] = t
	return nil
}

// Inverse returns the actions that undo specs on a node, newest first;
// an action without an inverse is refused, naming it.
func (a *Actions) Inverse(specs []ActionSpec) ([]ActionSpec, error) {
	out := make([]ActionSpec, 0, len(specs))
	for i := len(specs) - 1; i >= 0; i-- {
		s := specs[i]
		t, ok := a.types[s.Name]
		if !ok {
			return nil, &operation.FieldError{Field: "actions", Msg: fmt.Sprintf("actions[%d]: unknown action %q", i, s.Name)}
		}
		if t.Inverse == nil {
			return nil, &operation.FieldError{Field: "actions", Msg: fmt.Sprintf("actions[%d]: action %q cannot be undone on a node", i, s.Name)}
		}
		p, err := t.Inverse(s.Params)
		if err != nil {
			return nil, fmt.Errorf("actions[%d] (%s): %w", i, s.Name, err)
		}
		out = append(out, ActionSpec{Name: s.Name, Params: p})
	}
	return out, nil
}

// Without returns a copy of the registry without the named actions: what
// a front end offers to people who may not do everything it can (the
// controller does not run `exec`, a command in its own pod with its own
// credentials, for whoever may create a NodeRoll).
func (a *Actions) Without(names ...string) *Actions {
	out := &Actions{types: map[string]ActionType{}}
	for n, t := range a.types {
		if !slices.Contains(names, n) {
			out.types[n] = t
		}
	}
	return out
}

// Names lists the registered actions, sorted.
func (a *Actions) Names() []string {
	out := make([]string, 0, len(a.types))
	for n := range a.types {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Validate checks that every action is registered and its parameters
// are good, without running anything.
func (a *Actions) Validate(specs []ActionSpec) error {
	_, err := a.resolve("actions", specs)
	return err
}

// Check validates the actions and checks those that can be checked
// against the cluster (Checker) without changing it; field is the spec's
// field of the list (actions, preNodeActions, postNodeActions).
func (a *Actions) Check(ctx context.Context, cs kubernetes.Interface, field string, specs []ActionSpec) error {
	acts, err := a.resolve(field, specs)
	if err != nil {
		return err
	}
	return check(ctx, cs, field, specs, acts)
}

func check(ctx context.Context, cs kubernetes.Interface, field string, specs []ActionSpec, acts []Action) error {
	for i, act := range acts {
		c, ok := act.(Checker)
		if !ok {
			continue
		}
		if err := c.Check(ctx, cs); err != nil {
			var fe *operation.FieldError
			if errors.As(err, &fe) {
				return &operation.FieldError{Field: field, Msg: fmt.Sprintf("%s[%d] (%s): %s: %s", field, i, specs[i].Name, fe.Field, fe.Msg)}
			}
			return fmt.Errorf("checking %s[%d] (%s): %w", field, i, specs[i].Name, err)
		}
	}
	return nil
}

// nodeActions are a roll's actions by phase.
type nodeActions struct{ action, pre, post []Action }

// forSpec resolves the spec's actions of every phase.
func (a *Actions) forSpec(spec Spec) (nodeActions, error) {
	var out nodeActions
	var err error
	if out.action, err = a.resolve("actions", spec.Actions); err != nil {
		return out, err
	}
	if out.pre, err = a.resolve("preNodeActions", spec.PreNodeActions); err != nil {
		return out, err
	}
	out.post, err = a.resolve("postNodeActions", spec.PostNodeActions)
	return out, err
}

// check checks every phase's actions against the cluster (Checker).
func (n nodeActions) check(ctx context.Context, cs kubernetes.Interface, spec Spec) error {
	for _, l := range []struct {
		field string
		specs []ActionSpec
		acts  []Action
	}{{"actions", spec.Actions, n.action}, {"preNodeActions", spec.PreNodeActions, n.pre}, {"postNodeActions", spec.PostNodeActions, n.post}} {
		if err := check(ctx, cs, l.field, l.specs, l.acts); err != nil {
			return err
		}
	}
	return nil
}

// resolve builds the spec's actions; an unknown name or bad parameters
// are a *operation.FieldError naming field[i].
func (a *Actions) resolve(base string, specs []ActionSpec) ([]Action, error) {
	out := make([]Action, 0, len(specs))
	for i, s := range specs {
		field := fmt.Sprintf("%s[%d]", base, i)
		t, ok := a.types[s.Name]
		if !ok {
			return nil, &operation.FieldError{Field: base, Msg: fmt.Sprintf("%s: unknown action %q (registered: %s)", field, s.Name, strings.Join(a.Names(), ", "))}
		}
		act, err := t.New(s.Params)
		var fe *operation.FieldError
		switch {
		case errors.As(err, &fe) && base == "actions":
			return nil, err // names its own field (the CLI's flags)
		case errors.As(err, &fe):
			return nil, &operation.FieldError{Field: base, Msg: fmt.Sprintf("%s (%s): %s: %s", field, s.Name, fe.Field, fe.Msg)}
		case err != nil:
			return nil, &operation.FieldError{Field: base, Msg: fmt.Sprintf("%s (%s): %v", field, s.Name, err)}
		}
		out = append(out, act)
	}
	return out, nil
}

// decode reads params strictly into v: an unknown parameter is an error.
func decode(params json.RawMessage, v any) error {
	if len(params) == 0 {
		params = []byte("{}")
	}
	d := json.NewDecoder(bytes.NewReader(params))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	return nil
}

// ExecParams are the parameters of the exec action.
type ExecParams struct {
	Command string        `json:"command"`
	Timeout time.Duration `json:"timeout,omitempty"`
}

type execAction struct{ p ExecParams }

func newExec(params json.RawMessage) (Action, error) {
	var p ExecParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	if strings.TrimSpace(p.Command) == "" {
		return nil, &operation.FieldError{Field: "exec", Msg: "a command is required"}
	}
	if p.Timeout <= 0 {
		p.Timeout = 10 * time.Minute
	}
	return execAction{p}, nil
}

func (a execAction) Run(ctx context.Context, t Target) error {
	rec, err := runCommand(ctx, "exec", a.p.Command, hookEnv{Node: t.Node, NodeIP: t.NodeIP, Operation: t.Operation, Batch: t.Batch}, a.p.Timeout)
	if uerr := t.Record(rec); uerr != nil {
		return uerr
	}
	return err
}

// RestartParams are the parameters of the restart-daemonset action.
type RestartParams struct {
	DaemonSet string `json:"daemonSet"` // namespace/name
}

type restartAction struct{ p RestartParams }

func newRestart(params json.RawMessage) (Action, error) {
	var p RestartParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	ns, name, ok := strings.Cut(p.DaemonSet, "/")
	if !ok || validation.IsDNS1123Label(ns) != nil || validation.IsDNS1123Subdomain(name) != nil {
		return nil, &operation.FieldError{Field: "restartDaemonSet", Msg: fmt.Sprintf("%q: want NAMESPACE/NAME", p.DaemonSet)}
	}
	return restartAction{p}, nil
}

func (a restartAction) RestartsDaemonSet() string { return a.p.DaemonSet }

func (a restartAction) Run(ctx context.Context, t Target) error {
	n, err := restartDaemonSetPods(ctx, t.Client, t.Node, a.p.DaemonSet)
	if err != nil {
		return err
	}
	t.Progress(fmt.Sprintf("replaced %d pods of DaemonSet %s", n, a.p.DaemonSet))
	return nil
}

// LabelParams are the parameters of set-node-label and
// wait-node-annotation: keys and values.
type LabelParams struct {
	Values map[string]string `json:"values"`
}

type setLabels struct{ p LabelParams }

func newSetLabels(params json.RawMessage) (Action, error) {
	var p LabelParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	for k, v := range p.Values {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			return nil, &operation.FieldError{Field: "setNodeLabels", Msg: fmt.Sprintf("key %q: %s", k, strings.Join(msgs, "; "))}
		}
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
			return nil, &operation.FieldError{Field: "setNodeLabels", Msg: fmt.Sprintf("value %q: %s", v, strings.Join(msgs, "; "))}
		}
	}
	return setLabels{p}, nil
}

func (a setLabels) Run(ctx context.Context, t Target) error {
	return setNodeLabels(ctx, t.Client, t.Node, a.p.Values)
}

type waitAnnotation struct{ p LabelParams }

func newWaitAnnotation(params json.RawMessage) (Action, error) {
	var p LabelParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	for k := range p.Values {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			return nil, &operation.FieldError{Field: "waitNodeAnnotation", Msg: fmt.Sprintf("key %q: %s", k, strings.Join(msgs, "; "))}
		}
	}
	return waitAnnotation{p}, nil
}

func (a waitAnnotation) Run(ctx context.Context, t Target) error {
	if err := waitNodeAnnotations(ctx, t.Client, t.Node, a.p.Values); err != nil {
		return fmt.Errorf("waiting for node %s annotations %v: %w", t.Node, a.p.Values, err)
	}
	return nil
}

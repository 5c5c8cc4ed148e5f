package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/hitless-dev/hitless/internal/check/params"
	"github.com/hitless-dev/hitless/internal/check/profile"
	"github.com/hitless-dev/hitless/internal/kube/condition"
)

var paramName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]*$`)

// validate checks a parsed plan; fields holding a parameter reference are
// checked once the plan is rendered (Validate).
func (p *Plan) validate() error {
	if p.APIVersion != APIVersion {
		return &Error{Field: "apiVersion", Msg: fmt.Sprintf("%q: want %s", p.APIVersion, APIVersion)}
	}
	if p.Kind != Kind {
		return &Error{Field: "kind", Msg: fmt.Sprintf("%q: want %s", p.Kind, Kind)}
	}
	if msgs := validation.IsDNS1123Label(p.Metadata.Name); len(msgs) > 0 {
		return &Error{Field: "metadata.name", Msg: fmt.Sprintf("%q: %s", p.Metadata.Name, strings.Join(msgs, "; "))}
	}
	if p.Profile != "" {
		if _, err := profile.Get(p.Profile); err != nil {
			return &Error{Field: "profile", Msg: err.Error()}
		}
	}
	declared := map[string]bool{}
	cel := condition.NewCompiler(nil)
	for i, par := range p.Parameters {
		field := fmt.Sprintf("parameters[%d]", i)
		if !paramName.MatchString(par.Name) {
			return &Error{Field: field + ".name", Msg: fmt.Sprintf("%q: a letter, then letters, digits or _", par.Name)}
		}
		if declared[par.Name] {
			return &Error{Field: field + ".name", Msg: fmt.Sprintf("%q is declared twice", par.Name)}
		}
		declared[par.Name] = true
		switch par.Type {
		case "", TypeString, TypeInt, TypeBool, TypeList:
		default:
			return &Error{Field: field + ".type", Msg: fmt.Sprintf("%q: want string, int, bool or list", par.Type)}
		}
		if par.Default != nil {
			if _, err := convert(par, par.Default); err != nil {
				return &Error{Field: field + ".default", Msg: err.Error()}
			}
		}
		if par.Validation != "" {
			if _, err := cel.Bool(schema.GroupVersionKind{}, par.Validation); err != nil {
				return &Error{Field: field + ".validation", Msg: err.Error()}
			}
		}
	}
	if err := p.validateNetwork(declared); err != nil {
		return err
	}
	for i, g := range p.Gates {
		field := fmt.Sprintf("gates[%d]", i)
		if err := checkRef(g.For, false, field+".for"); err != nil {
			return err
		}
		if err := checkCEL(cel, field, g.Condition, g.Message); err != nil {
			return err
		}
		if err := checkDuration(g.Within, field+".within"); err != nil {
			return err
		}
	}
	if len(p.Steps) == 0 {
		return &Error{Field: "steps", Msg: "a plan has at least one step"}
	}
	seen := map[string]bool{}
	for i, s := range p.Steps {
		if msgs := validation.IsDNS1123Label(s.Name); len(msgs) > 0 {
			return &Error{Step: fmt.Sprintf("#%d", i+1), Field: "name", Msg: fmt.Sprintf("%q: %s", s.Name, strings.Join(msgs, "; "))}
		}
		if seen[s.Name] {
			return &Error{Step: s.Name, Field: "name", Msg: "two steps have this name"}
		}
		seen[s.Name] = true
		if err := s.validate(cel, declared); err != nil {
			err.Step = s.Name
			return err
		}
	}
	return p.validateSyncPairs()
}

// onceOnly refuses a run-sync in a rollback: a rollback's actions run
// once each, newest step first, and nothing would stop it.
func onceOnly(r *Rollback) *Error {
	actions := append(append([]Action{r.Action}, r.Before...), r.Then...)
	for _, a := range actions {
		if a.Sync != nil && a.Sync.Mode != "" && a.Sync.Mode != SyncOnce {
			return &Error{Field: "rollback.sync.mode", Msg: "a rollback syncs once: give mode once (or none)"}
		}
	}
	return nil
}

// validateSyncPairs checks that every run-sync started is stopped by a
// later step, and every stop ends one started before it.
func (p *Plan) validateSyncPairs() error {
	running := map[string]string{}
	for _, s := range p.Steps {
		if s.Sync == nil {
			continue
		}
		name := s.Sync.SyncName()
		switch s.Sync.Mode {
		case SyncStart:
			if prev, ok := running[name]; ok {
				return &Error{Step: s.Name, Field: "sync.name", Msg: fmt.Sprintf("run-sync %q is already started by step %s", name, prev)}
			}
			running[name] = s.Name
		case SyncStop:
			if _, ok := running[name]; !ok {
				return &Error{Step: s.Name, Field: "sync.name", Msg: fmt.Sprintf("no step before this one starts run-sync %q", name)}
			}
			delete(running, name)
		}
	}
	for name, step := range running {
		return &Error{Step: step, Field: "sync.mode", Msg: fmt.Sprintf("run-sync %q is never stopped: add a later step with sync mode stop", name)}
	}
	return nil
}

func (s *Step) validate(cel *condition.Compiler, declared map[string]bool) *Error {
	for _, ref := range references(s) {
		if !declared[ref] {
			return &Error{Field: "", Msg: fmt.Sprintf("${%s} names no parameter of the plan", ref)}
		}
	}
	if s.When != "" {
		if _, err := cel.Bool(schema.GroupVersionKind{}, s.When); err != nil {
			return &Error{Field: "when", Msg: err.Error()}
		}
	}
	if err := s.Action.validate(cel, ""); err != nil {
		return err
	}
	if r := s.Rollback; r != nil {
		if r.None && (r.Type() != "" || len(r.Then) > 0 || len(r.Before) > 0) {
			return &Error{Field: "rollback", Msg: "give `none` or actions, not both"}
		}
		if !r.None {
			if r.Type() == "" && len(r.Before) == 0 && len(r.Then) == 0 {
				return &Error{Field: "rollback", Msg: "give `none: true`, one action (" + strings.Join(StepTypes(), ", ") + "), or `before`/`then` actions around the derived inverse"}
			}
			if r.Type() != "" {
				if err := r.validate(cel, "rollback."); err != nil {
					return err
				}
			}
			if err := onceOnly(r); err != nil {
				return err
			}
			for i := range r.Before {
				if err := r.Before[i].validate(cel, fmt.Sprintf("rollback.before[%d].", i)); err != nil {
					return err
				}
			}
			for i := range r.Then {
				if err := r.Then[i].validate(cel, fmt.Sprintf("rollback.then[%d].", i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (a *Action) validate(cel *condition.Compiler, prefix string) *Error {
	var set []string
	for _, t := range a.types() {
		if t.set {
			set = append(set, t.name)
		}
	}
	if len(set) != 1 {
		msg := "no action: give one of " + strings.Join(StepTypes(), ", ")
		if len(set) > 1 {
			msg = "one action per step, got " + strings.Join(set, " and ")
		}
		return &Error{Field: strings.TrimSuffix(prefix, "."), Msg: msg}
	}
	var err *Error
	switch {
	case a.Backup != nil:
		err = checkRefs(a.Backup.Objects, "backup.objects")
	case a.Patch != nil:
		err = a.Patch.validate()
	case a.Wait != nil:
		err = a.Wait.validate(cel)
	case a.Check != nil:
		err = a.Check.validate()
	case a.Roll != nil:
		err = a.Roll.validate()
	case a.Component != nil:
		err = a.Component.validate()
	case a.Label != nil:
		err = a.Label.validate()
	case a.Sync != nil:
		err = a.Sync.validate(cel)
	case a.Pause != nil:
		if strings.TrimSpace(a.Pause.Message) == "" {
			err = &Error{Field: "pause.message", Msg: "say what the person is asked to do"}
		}
	case a.Delete != nil:
		if err = checkRefs(a.Delete.Objects, "delete.objects"); err == nil {
			err = checkDuration(a.Delete.Timeout, "delete.timeout")
		}
	}
	if err != nil {
		err.Field = prefix + err.Field
	}
	return err
}

func (p *Patch) validate() *Error {
	if err := checkRef(p.Object, true, "patch.object"); err != nil {
		return err
	}
	switch p.Type {
	case "", PatchMerge, PatchApply:
		if _, ok := p.Patch.(map[string]any); !ok {
			return &Error{Field: "patch.patch", Msg: "a merge or apply patch is an object"}
		}
	case PatchJSON:
		ops, ok := p.Patch.([]any)
		if !ok || len(ops) == 0 {
			return &Error{Field: "patch.patch", Msg: "a json patch is a list of operations"}
		}
		for i, op := range ops {
			m, ok := op.(map[string]any)
			path, _ := m["path"].(string)
			if !ok || !strings.HasPrefix(path, "/") {
				return &Error{Field: fmt.Sprintf("patch.patch[%d].path", i), Msg: "each operation has a path starting with /"}
			}
			switch m["op"] {
			case "add", "remove", "replace", "test", "move", "copy":
			default:
				return &Error{Field: fmt.Sprintf("patch.patch[%d].op", i), Msg: fmt.Sprintf("%v: want add, remove, replace, test, move or copy", m["op"])}
			}
		}
	default:
		return &Error{Field: "patch.type", Msg: fmt.Sprintf("%q: want merge, json or apply", p.Type)}
	}
	return nil
}

func (w *Wait) validate(cel *condition.Compiler) *Error {
	if err := checkRef(w.For, false, "wait.for"); err != nil {
		return err
	}
	if err := checkCEL(cel, "wait", w.Condition, w.Message); err != nil {
		return err
	}
	if err := checkDuration(w.Timeout, "wait.timeout"); err != nil {
		return err
	}
	if err := checkDuration(w.HoldFor, "wait.holdFor"); err != nil {
		return err
	}
	switch w.OnTimeout {
	case "", OnTimeoutFail, OnTimeoutPause:
	default:
		return &Error{Field: "wait.onTimeout", Msg: fmt.Sprintf("%q: want fail or pause", w.OnTimeout)}
	}
	return nil
}

func (c *Check) validate() *Error {
	if _, err := profile.Get(c.Profile); err != nil {
		return &Error{Field: "check.profile", Msg: err.Error()}
	}
	if c.Kind != profile.Preflight && c.Kind != profile.Postflight {
		return &Error{Field: "check.kind", Msg: fmt.Sprintf("%q: want %s or %s", c.Kind, profile.Preflight, profile.Postflight)}
	}
	return nil
}

func (r *Roll) validate() *Error {
	if len(r.Groups) == 0 {
		return &Error{Field: "roll.groups", Msg: "give at least one group of nodes (a selector and a batch)"}
	}
	for i, g := range r.Groups {
		if hasRef(g.Selector) {
			continue
		}
		if _, err := labels.Parse(g.Selector); err != nil {
			return &Error{Field: fmt.Sprintf("roll.groups[%d].selector", i), Msg: err.Error()}
		}
	}
	for i, a := range r.Actions {
		if a.Name == "" {
			return &Error{Field: fmt.Sprintf("roll.actions[%d].name", i), Msg: "name a registered per-node action"}
		}
	}
	if r.MaxFailures < 0 {
		return &Error{Field: "roll.maxFailures", Msg: "must not be negative"}
	}
	if err := checkDuration(r.DrainTimeout, "roll.drainTimeout"); err != nil {
		return err
	}
	return checkDuration(r.ActionTimeout, "roll.actionTimeout")
}

func (c *Component) validate() *Error {
	if msgs := validation.IsDNS1123Label(c.Name); len(msgs) > 0 && !hasRef(c.Name) {
		return &Error{Field: "component.name", Msg: fmt.Sprintf("%q: %s", c.Name, strings.Join(msgs, "; "))}
	}
	switch c.Action {
	case ComponentInstall, ComponentUpgrade:
		if c.Source == "" {
			return &Error{Field: "component.source", Msg: "an install or upgrade names the release it deploys"}
		}
	case ComponentUninstall:
		if len(c.NodeSelector) > 0 {
			return &Error{Field: "component.nodeSelector", Msg: "an uninstall places no pods"}
		}
	default:
		return &Error{Field: "component.action", Msg: fmt.Sprintf("%q: want install, upgrade or uninstall", c.Action)}
	}
	for k, v := range c.NodeSelector {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 && !hasRef(k) {
			return &Error{Field: "component.nodeSelector", Msg: fmt.Sprintf("key %q: %s", k, strings.Join(msgs, "; "))}
		}
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 && !hasRef(v) {
			return &Error{Field: "component.nodeSelector", Msg: fmt.Sprintf("%s=%q: %s", k, v, strings.Join(msgs, "; "))}
		}
	}
	return nil
}

func checkRefs(refs []ObjectRef, field string) *Error {
	if len(refs) == 0 {
		return &Error{Field: field, Msg: "name at least one object"}
	}
	for i, r := range refs {
		if err := checkRef(r, false, fmt.Sprintf("%s[%d]", field, i)); err != nil {
			return err
		}
	}
	return nil
}

func checkRef(r ObjectRef, needName bool, field string) *Error {
	if r.Kind == "" {
		return &Error{Field: field + ".kind", Msg: "name the kind"}
	}
	if r.APIVersion == "" {
		return &Error{Field: field + ".apiVersion", Msg: "name the apiVersion (v1, apps/v1, config.openshift.io/v1...)"}
	}
	if _, err := schema.ParseGroupVersion(r.APIVersion); err != nil {
		return &Error{Field: field + ".apiVersion", Msg: err.Error()}
	}
	if needName && r.Name == "" {
		return &Error{Field: field + ".name", Msg: "name the object"}
	}
	if r.Name != "" && r.Selector != "" {
		return &Error{Field: field + ".selector", Msg: "give a name or a selector, not both"}
	}
	if r.Selector != "" && !hasRef(r.Selector) {
		if _, err := labels.Parse(r.Selector); err != nil {
			return &Error{Field: field + ".selector", Msg: err.Error()}
		}
	}
	return nil
}

func checkCEL(cel *condition.Compiler, field, cond, msg string) *Error {
	if _, err := cel.Bool(schema.GroupVersionKind{}, cond); err != nil {
		return &Error{Field: field + ".condition", Msg: err.Error()}
	}
	if msg != "" {
		if _, err := cel.String(schema.GroupVersionKind{}, msg); err != nil {
			return &Error{Field: field + ".message", Msg: err.Error()}
		}
	}
	return nil
}

func checkDuration(s, field string) *Error {
	if s == "" || hasRef(s) {
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return &Error{Field: field, Msg: fmt.Sprintf("%q: want a positive duration such as 90s or 20m", s)}
	}
	return nil
}

// Duration parses a step's duration field, validated before; "" is def.
func Duration(s string, def time.Duration) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return def
	}
	return d
}

// Validate checks a rendered plan: every field that held a parameter now
// holds its value.
func (p *Plan) Validate() error {
	var left []string
	walk(p.Network, func(s string) {
		if hasRef(s) {
			left = append(left, s)
		}
	})
	if len(left) > 0 {
		return &Error{Field: "network", Msg: "unrendered parameters " + strings.Join(left, ", ")}
	}
	for _, s := range p.Steps {
		if refs := references(&s); len(refs) > 0 {
			return &Error{Step: s.Name, Msg: "unrendered parameters " + strings.Join(refs, ", ")}
		}
	}
	return p.validate()
}

// validateNetwork checks the network parameters: every reference names
// a parameter, and what is not a reference is a valid field and value (a
// rendered plan's are checked whole).
func (p *Plan) validateNetwork(declared map[string]bool) *Error {
	if p.Network == nil {
		return nil
	}
	var undeclared []string
	walk(p.Network, func(s string) {
		for _, m := range reference.FindAllStringSubmatch(s, -1) {
			if !declared[m[1]] && !slices.Contains(undeclared, m[1]) {
				undeclared = append(undeclared, m[1])
			}
		}
	})
	if len(undeclared) > 0 {
		return &Error{Field: "network", Msg: fmt.Sprintf("${%s} names no parameter of the plan", strings.Join(undeclared, "}, ${"))}
	}
	_, err := networkOf(withoutRefs(p.Network))
	return err
}

// withoutRefs leaves out every value that holds a parameter reference.
func withoutRefs(v any) any {
	switch t := v.(type) {
	case string:
		if hasRef(t) {
			return omitted{}
		}
	case map[string]any:
		out := map[string]any{}
		for k, x := range t {
			if r := withoutRefs(x); !dropped(x, r) {
				out[k] = r
			}
		}
		return out
	case []any:
		out := []any{}
		for _, x := range t {
			if r := withoutRefs(x); !dropped(x, r) {
				out = append(out, r)
			}
		}
		return out
	}
	return v
}

// networkOf decodes network parameters as the checks read them.
func networkOf(tree any) (*params.Network, *Error) {
	b, err := json.Marshal(tree)
	if err != nil {
		return nil, &Error{Field: "network", Msg: err.Error()}
	}
	n, err := params.ParseNetwork("", b)
	if err != nil {
		var pe *params.Error
		if errors.As(err, &pe) && pe.Field != "" {
			return nil, &Error{Field: "network." + pe.Field, Msg: pe.Msg}
		}
		return nil, &Error{Field: "network", Msg: strings.TrimPrefix(err.Error(), ": ")}
	}
	return n, nil
}

// NetworkParams returns a rendered plan's network parameters, nil when
// it gives none.
func (p *Plan) NetworkParams() (*params.Network, error) {
	if p.Network == nil {
		return nil, nil
	}
	n, err := networkOf(p.Network)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// ParamNames lists the declared parameters.
func (p *Plan) ParamNames() []string {
	var out []string
	for _, par := range p.Parameters {
		out = append(out, par.Name)
	}
	slices.Sort(out)
	return out
}

func (l *Label) validate() *Error {
	if _, err := labels.Parse(l.Nodes); err != nil && !hasRef(l.Nodes) {
		return &Error{Field: "label.nodes", Msg: err.Error()}
	}
	if len(l.Labels) == 0 {
		return &Error{Field: "label.labels", Msg: "name at least one label"}
	}
	for k, v := range l.Labels {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 && !hasRef(k) {
			return &Error{Field: "label.labels", Msg: fmt.Sprintf("key %q: %s", k, strings.Join(msgs, "; "))}
		}
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 && !hasRef(v) {
			return &Error{Field: "label.labels", Msg: fmt.Sprintf("%s=%q: %s", k, v, strings.Join(msgs, "; "))}
		}
	}
	return nil
}

func (s *Sync) validate(cel *condition.Compiler) *Error {
	switch s.Mode {
	case "", SyncOnce, SyncStart:
		if len(s.Objects) == 0 {
			return &Error{Field: "sync.objects", Msg: "map at least one kind of object"}
		}
	case SyncStop:
		if len(s.Objects) > 0 {
			return &Error{Field: "sync.objects", Msg: "a stop runs its start's mappings: give none"}
		}
	default:
		return &Error{Field: "sync.mode", Msg: fmt.Sprintf("%q: want once, start or stop", s.Mode)}
	}
	if s.Interval != "" && s.Mode != SyncStart {
		return &Error{Field: "sync.interval", Msg: "only a start runs again"}
	}
	if err := checkDuration(s.Interval, "sync.interval"); err != nil {
		return err
	}
	for i, m := range s.Objects {
		field := fmt.Sprintf("sync.objects[%d]", i)
		if err := checkRef(m.From, false, field+".from"); err != nil {
			return err
		}
		if err := checkRef(m.To, false, field+".to"); err != nil {
			return err
		}
		if m.To.Selector != "" {
			return &Error{Field: field + ".to.selector", Msg: "a target is named, not selected"}
		}
		if m.To.Name != "" && m.From.Name == "" && !hasRef(m.To.Name) {
			return &Error{Field: field + ".to.name", Msg: "only a single source (from.name) maps to a named target"}
		}
		if m.Transform != "" {
			if _, err := cel.Map(schema.GroupVersionKind{}, m.Transform); err != nil {
				return &Error{Field: field + ".transform", Msg: err.Error()}
			}
		}
	}
	return nil
}

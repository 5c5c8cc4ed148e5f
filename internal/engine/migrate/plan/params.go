package plan

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/hitless-dev/hitless/internal/kube/condition"
)

var reference = regexp.MustCompile(`\$\{([^}]*)\}`)

func hasRef(s string) bool { return reference.MatchString(s) }

// references lists the parameters a step names, sorted.
func references(s *Step) []string {
	var out []string
	walk(toTree(s), func(str string) {
		for _, m := range reference.FindAllStringSubmatch(str, -1) {
			if !slices.Contains(out, m[1]) {
				out = append(out, m[1])
			}
		}
	})
	slices.Sort(out)
	return out
}

func toTree(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var t any
	if err := json.Unmarshal(b, &t); err != nil {
		return nil
	}
	return t
}

func walk(v any, fn func(string)) {
	switch t := v.(type) {
	case string:
		fn(t)
	case map[string]any:
		for k, x := range t {
			fn(k)
			walk(x, fn)
		}
	case []any:
		for _, x := range t {
			walk(x, fn)
		}
	}
}

// convert reads a parameter's value (a --set string or a YAML default)
// as its type.
func convert(par Parameter, v any) (any, error) {
	s, isString := v.(string)
	switch par.Type {
	case TypeInt:
		switch n := v.(type) {
		case float64:
			if n != float64(int64(n)) {
				return nil, fmt.Errorf("%v: want an integer", v)
			}
			return int64(n), nil
		case int64:
			return n, nil
		case int:
			return int64(n), nil
		}
		if isString {
			n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%q: want an integer", s)
			}
			return n, nil
		}
	case TypeBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		if isString {
			b, err := strconv.ParseBool(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("%q: want true or false", s)
			}
			return b, nil
		}
	case TypeList:
		// A --set value is comma-separated; a YAML default is a list of
		// strings. Empty items are dropped.
		var items []any
		switch l := v.(type) {
		case []any:
			for _, x := range l {
				xs, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("%v: want a list of strings", v)
				}
				items = append(items, xs)
			}
			return items, nil
		case string:
			for _, x := range strings.Split(l, ",") {
				if x = strings.TrimSpace(x); x != "" {
					items = append(items, x)
				}
			}
			if items == nil {
				items = []any{}
			}
			return items, nil
		}
	default:
		if isString {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%v: want a %s", v, typeName(par.Type))
}

func typeName(t string) string {
	if t == "" {
		return TypeString
	}
	return t
}

// Params resolves the plan's parameters from the user's values: each is
// converted to its type, defaults fill the rest, required ones must be
// given, and every validation holds. Unset optional parameters are
// absent from the result.
func (p *Plan) Params(ctx context.Context, set map[string]string) (map[string]any, error) {
	out := map[string]any{}
	byName := map[string]Parameter{}
	for _, par := range p.Parameters {
		byName[par.Name] = par
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		par, ok := byName[n]
		if !ok {
			return nil, &Error{Field: "set", Msg: fmt.Sprintf("%q is no parameter of plan %s (it has: %s)", n, p.Metadata.Name, strings.Join(p.ParamNames(), ", "))}
		}
		v, err := convert(par, set[n])
		if err != nil {
			return nil, &Error{Field: "set", Msg: fmt.Sprintf("%s: %v", n, err)}
		}
		out[n] = v
	}
	for i, par := range p.Parameters {
		if _, ok := out[par.Name]; ok {
			continue
		}
		switch {
		case par.Default != nil:
			v, err := convert(par, par.Default)
			if err != nil {
				return nil, &Error{Field: fmt.Sprintf("parameters[%d].default", i), Msg: err.Error()}
			}
			out[par.Name] = v
		case par.Required:
			return nil, &Error{Field: "set", Msg: fmt.Sprintf("parameter %s is required: %s", par.Name, par.Description)}
		}
	}
	cel := condition.NewCompiler(nil)
	for _, par := range p.Parameters {
		if par.Validation == "" {
			continue
		}
		prg, err := cel.Bool(schema.GroupVersionKind{}, par.Validation)
		if err != nil {
			return nil, &Error{Field: "parameters." + par.Name + ".validation", Msg: err.Error()}
		}
		ok, err := prg.True(ctx, nil, out)
		if err != nil || !ok {
			msg := par.Message
			if msg == "" {
				msg = "must satisfy " + par.Validation
			}
			if err != nil {
				msg += " (" + err.Error() + ")"
			}
			return nil, &Error{Field: "set", Msg: fmt.Sprintf("%s: %s", par.Name, msg)}
		}
	}
	return out, nil
}

// omitted marks a value that was exactly an unset parameter: its key is
// left out of the rendered document.
type omitted struct{}

// Render returns the plan for these parameters: the steps whose `when`
// is false are left out (and listed in skipped), and every ${name} is
// replaced: a string that is exactly one reference becomes the
// parameter's typed value (or, unset, disappears with its key), a
// reference inside text is formatted into it (and must be set).
func (p *Plan) Render(ctx context.Context, params map[string]any) (rendered *Plan, skipped []string, err error) {
	out := &Plan{APIVersion: p.APIVersion, Kind: p.Kind, Metadata: p.Metadata, Profile: p.Profile, NetworkType: p.NetworkType, Parameters: p.Parameters, Gates: p.Gates}
	if p.Network != nil {
		tree, err := substitute(toTree(p.Network), params)
		if err != nil {
			return nil, nil, &Error{Field: "network", Msg: err.Error()}
		}
		if m, ok := tree.(map[string]any); ok && len(m) > 0 {
			out.Network = m
		}
	}
	cel := condition.NewCompiler(nil)
	for _, s := range p.Steps {
		if s.When != "" {
			prg, err := cel.Bool(schema.GroupVersionKind{}, s.When)
			if err != nil {
				return nil, nil, &Error{Step: s.Name, Field: "when", Msg: err.Error()}
			}
			run, err := prg.True(ctx, nil, params)
			if err != nil {
				return nil, nil, &Error{Step: s.Name, Field: "when", Msg: err.Error()}
			}
			if !run {
				skipped = append(skipped, s.Name)
				continue
			}
		}
		tree, err := substitute(toTree(s), params)
		if err != nil {
			return nil, nil, &Error{Step: s.Name, Msg: err.Error()}
		}
		b, err := json.Marshal(tree)
		if err != nil {
			return nil, nil, &Error{Step: s.Name, Msg: err.Error()}
		}
		var r Step
		if err := strict(b, &r); err != nil {
			f, msg := fieldOf(err, true)
			return nil, nil, &Error{Step: s.Name, Field: f, Msg: "after its parameters were filled in: " + msg}
		}
		out.Steps = append(out.Steps, r)
	}
	if len(out.Steps) == 0 {
		return nil, nil, &Error{Field: "steps", Msg: "no step runs with these parameters"}
	}
	if err := out.Validate(); err != nil {
		return nil, nil, err
	}
	return out, skipped, nil
}

func substitute(v any, params map[string]any) (any, error) {
	switch t := v.(type) {
	case string:
		if m := reference.FindStringSubmatch(t); m != nil && m[0] == t {
			val, ok := params[m[1]]
			if !ok {
				return omitted{}, nil
			}
			return val, nil
		}
		var missing []string
		s := reference.ReplaceAllStringFunc(t, func(ref string) string {
			name := reference.FindStringSubmatch(ref)[1]
			val, ok := params[name]
			if !ok {
				missing = append(missing, name)
				return ref
			}
			return fmt.Sprint(val)
		})
		if len(missing) > 0 {
			return nil, fmt.Errorf("%q needs parameter %s, which is not set", t, strings.Join(missing, ", "))
		}
		return s, nil
	case map[string]any:
		out := map[string]any{}
		for k, x := range t {
			r, err := substitute(x, params)
			if err != nil {
				return nil, err
			}
			if dropped(x, r) {
				continue
			}
			if hasRef(k) {
				// A key is text (the NUL keeps it from being a whole
				// reference): its references must be set, as in a node
				// selector's label key.
				rk, err := substitute(k+"\x00", params)
				if err != nil {
					return nil, err
				}
				k = strings.TrimSuffix(rk.(string), "\x00")
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(t))
		for _, x := range t {
			r, err := substitute(x, params)
			if err != nil {
				return nil, err
			}
			if dropped(x, r) {
				continue
			}
			out = append(out, r)
		}
		if len(out) == 0 && len(t) > 0 {
			return omitted{}, nil // every element was an unset parameter
		}
		return out, nil
	}
	return v, nil
}

// dropped tells whether x, substituted as r, leaves the document: it was
// an unset parameter, or an object all of whose fields were.
func dropped(x, r any) bool {
	if _, gone := r.(omitted); gone {
		return true
	}
	m, ok := r.(map[string]any)
	return ok && len(m) == 0 && !isEmptyMap(x)
}

func isEmptyMap(v any) bool {
	m, ok := v.(map[string]any)
	return ok && len(m) == 0
}

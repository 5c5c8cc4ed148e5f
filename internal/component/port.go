package component

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/kyaml/yaml"
	"sigs.k8s.io/kustomize/kyaml/yaml/merge3"
	"sigs.k8s.io/kustomize/kyaml/yaml/walk"
)

// Prefer says who wins a field both the user and the vendor changed.
type Prefer string

// The answers to a conflict; PreferNone stops the upgrade.
const (
	PreferNone   Prefer = ""
	PreferVendor Prefer = "vendor"
	PreferUser   Prefer = "user"
)

// Change is one field the user changed against the vendor's manifests,
// carried into the next revision. Values are JSON; a Secret's data values
// are redacted.
type Change struct {
	Object string `json:"object"`
	Path   string `json:"path"`
	Value  string `json:"value,omitempty"`
	// Removed is true when the user removed the field.
	Removed bool `json:"removed,omitempty"`
}

func (c Change) String() string {
	if c.Removed {
		return fmt.Sprintf("%s %s removed", c.Object, c.Path)
	}
	return fmt.Sprintf("%s %s = %s", c.Object, c.Path, c.Value)
}

// Conflict is a field both the user and the vendor changed to different
// values.
type Conflict struct {
	Object   string `json:"object"`
	Path     string `json:"path"`
	Original string `json:"original"`
	User     string `json:"user"`
	Vendor   string `json:"vendor"`
	// Winner is who won under --prefer; empty when unresolved.
	Winner Prefer `json:"winner,omitempty"`
}

func (c Conflict) String() string {
	s := fmt.Sprintf("%s %s: user %s, vendor %s (was %s)", c.Object, c.Path, orAbsent(c.User), orAbsent(c.Vendor), orAbsent(c.Original))
	if c.Winner != PreferNone {
		s += "; " + string(c.Winner) + " wins"
	}
	return s
}

func orAbsent(v string) string {
	if v == "" {
		return "(absent)"
	}
	return v
}

// ConflictError stops an upgrade: the user and the vendor changed the same
// fields and nobody said who wins.
type ConflictError struct{ Conflicts []Conflict }

func (e *ConflictError) Error() string {
	msg := fmt.Sprintf("%d field(s) changed by both you and the vendor; nothing was changed (rerun with `prefer` vendor or `prefer` user to choose):", len(e.Conflicts))
	for _, c := range e.Conflicts {
		msg += "\n  " + c.String()
	}
	return msg
}

// Ported is the next revision's objects: the new vendor manifests with the
// user's customizations carried over.
type Ported struct {
	Objects   []*unstructured.Unstructured `json:"-"`
	Carried   []Change                     `json:"carried,omitempty"`
	Conflicts []Conflict                   `json:"conflicts,omitempty"`
	// Notes say what could not be carried, or what the user added or
	// removed as a whole object.
	Notes []string `json:"notes,omitempty"`
}

// Port merges three versions of a component: original (the vendor
// manifests the cluster was installed from), user (original with the
// user's changes, read from the cluster or given with --from) and vendor
// (the new release). Every field the user changed and the vendor did not
// is carried into the vendor's version; a field both changed to different
// values is a conflict, resolved by prefer or, when prefer is empty,
// returned in a *ConflictError with the Ported result for the report.
func Port(original, user, vendor []*unstructured.Unstructured, prefer Prefer) (*Ported, error) {
	orig, usr := index(original), index(user)
	out := &Ported{}
	seen := map[string]bool{}
	for _, n := range vendor {
		k := key(n)
		seen[k] = true
		o, u := orig[k], usr[k]
		switch {
		case o == nil && u == nil: // new in this release
			out.Objects = append(out.Objects, n.DeepCopy())
			continue
		case o != nil && u == nil: // the user deleted it (--from)
			if !sameJSON(o.Object, n.Object) {
				out.Conflicts = append(out.Conflicts, Conflict{Object: ref(n), Path: "(object)", Original: "present", User: "", Vendor: "changed", Winner: prefer})
				if prefer == PreferVendor {
					out.Objects = append(out.Objects, n.DeepCopy())
				}
				continue
			}
			out.Notes = append(out.Notes, ref(n)+": removed by you, left out")
			continue
		case o == nil:
			o = &unstructured.Unstructured{Object: map[string]any{}}
		}
		merged, carried, conflicts, err := port3(o, u, n, prefer)
		if err != nil {
			return nil, fmt.Errorf("porting %s: %w", ref(n), err)
		}
		out.Objects = append(out.Objects, merged)
		out.Carried = append(out.Carried, carried...)
		out.Conflicts = append(out.Conflicts, conflicts...)
	}
	for _, u := range user {
		k := key(u)
		if seen[k] {
			continue
		}
		if o := orig[k]; o == nil {
			out.Objects = append(out.Objects, u.DeepCopy())
			out.Notes = append(out.Notes, ref(u)+": added by you, kept")
		} else if !sameJSON(o.Object, u.Object) {
			out.Notes = append(out.Notes, ref(u)+": customized by you, but this release removes it; your changes are dropped")
		}
	}
	if prefer == PreferNone && len(out.Conflicts) > 0 {
		return out, &ConflictError{Conflicts: out.Conflicts}
	}
	return out, nil
}

// port3 merges one object with kyaml's merge3, the winner of conflicts
// being the "update" side, and reports what the user changed and where
// both sides collided.
func port3(o, u, n *unstructured.Unstructured, prefer Prefer) (*unstructured.Unstructured, []Change, []Conflict, error) {
	lo, lu, ln := leaves(o.Object), leaves(u.Object), leaves(n.Object)
	secret := n.GetKind() == "Secret" && n.GetAPIVersion() == "v1"
	var (
		carried   []Change
		conflicts []Conflict
	)
	for _, p := range unionKeys(lo, lu) {
		if lu[p] == lo[p] {
			continue
		}
		if ln[p] != lo[p] && ln[p] != lu[p] {
			conflicts = append(conflicts, Conflict{Object: ref(n), Path: p, Original: redact(secret, p, lo[p]), User: redact(secret, p, lu[p]), Vendor: redact(secret, p, ln[p]), Winner: prefer})
			if prefer != PreferUser {
				continue
			}
		}
		if _, ok := lu[p]; !ok {
			carried = append(carried, Change{Object: ref(n), Path: p, Removed: true})
		} else {
			carried = append(carried, Change{Object: ref(n), Path: p, Value: redact(secret, p, lu[p])})
		}
	}
	// merge3 keeps dest and lets update win where it changed the field.
	dest, update := u, n
	if prefer == PreferUser {
		dest, update = n, u
	}
	merged, err := merge(dest, o, update)
	if err != nil {
		return nil, nil, nil, err
	}
	dropEmptied(merged.Object, dest.Object, update.Object)
	dropDeleted(merged.Object, o.Object, u.Object, n.Object, prefer)
	keepOrder(merged.Object, u.Object, n.Object)
	return merged, carried, conflicts, nil
}

func merge(dest, original, update *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	var nodes [3]*yaml.RNode
	for i, u := range []*unstructured.Unstructured{dest, original, update} {
		b, err := json.Marshal(u.Object)
		if err != nil {
			return nil, err
		}
		if nodes[i], err = yaml.ConvertJSONToYamlNode(string(b)); err != nil {
			return nil, err
		}
	}
	res, err := walk.Walker{
		Visitor:               merge3.Visitor{},
		VisitKeysAsScalars:    true,
		InferAssociativeLists: true,
		Sources:               []*yaml.RNode{nodes[0], nodes[1], nodes[2]},
	}.Walk()
	if err != nil {
		return nil, err
	}
	b, err := res.MarshalJSON()
	if err != nil {
		return nil, err
	}
	out := &unstructured.Unstructured{}
	if err := out.UnmarshalJSON(b); err != nil {
		return nil, err
	}
	return out, nil
}

// dropEmptied removes the maps merge3 leaves empty once every field in
// them was removed, unless one side has that empty map itself; inside
// keyed list elements too (a container's probe a release drops).
func dropEmptied(merged, dest, update map[string]any) {
	for k, v := range merged {
		if l, ok := v.([]any); ok {
			key := listKey(l)
			if key == "" {
				continue
			}
			dl, _ := dest[k].([]any)
			ul, _ := update[k].([]any)
			for _, e := range l {
				em := e.(map[string]any)
				dropEmptied(em, element(dl, key, em[key]), element(ul, key, em[key]))
			}
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		d, _ := dest[k].(map[string]any)
		u, _ := update[k].(map[string]any)
		dropEmptied(m, d, u)
		emptyInDest := d != nil && len(d) == 0
		emptyInUpdate := u != nil && len(u) == 0
		if len(m) == 0 && !emptyInDest && !emptyInUpdate {
			delete(merged, k)
		}
	}
}

// element is the element of l whose key field is id, nil for none.
func element(l []any, key string, id any) map[string]any {
	for _, e := range l {
		if m, ok := e.(map[string]any); ok && fmt.Sprint(m[key]) == fmt.Sprint(id) {
			return m
		}
	}
	return nil
}

// dropDeleted removes the keyed list elements one side deleted, which
// merge3 leaves behind as husks of their keys: an element goes when a
// side deleted it and the other side did not change it, or did and lost.
func dropDeleted(merged, o, u, n any, prefer Prefer) {
	m, ok := merged.(map[string]any)
	if !ok {
		return
	}
	om, _ := o.(map[string]any)
	um, _ := u.(map[string]any)
	nm, _ := n.(map[string]any)
	for k, v := range m {
		if l, ok := v.([]any); ok {
			m[k] = dropElements(l, om[k], um[k], nm[k], prefer)
			continue
		}
		dropDeleted(v, om[k], um[k], nm[k], prefer)
	}
}

func dropElements(m []any, o, u, n any, prefer Prefer) []any {
	k := listKey(m)
	if k == "" {
		return m
	}
	byKey := func(l any) map[string]any {
		out := map[string]any{}
		ll, _ := l.([]any)
		if listKey(ll) != k {
			return out
		}
		for _, e := range ll {
			out[fmt.Sprint(e.(map[string]any)[k])] = e
		}
		return out
	}
	oi, ui, ni := byKey(o), byKey(u), byKey(n)
	out := m[:0]
	for _, e := range m {
		id := fmt.Sprint(e.(map[string]any)[k])
		oe, inO := oi[id]
		ue, inU := ui[id]
		ne, inN := ni[id]
		if inO && (!inU || !inN) {
			keep := false
			switch {
			case !inU && !inN:
			case !inN: // the vendor deleted it
				keep = prefer == PreferUser && jsonString(ue) != jsonString(oe)
			default: // the user deleted it
				keep = prefer == PreferVendor && jsonString(ne) != jsonString(oe)
			}
			if !keep {
				continue
			}
		}
		dropDeleted(e, oe, ue, ne, prefer)
		out = append(out, e)
	}
	return out
}

// keepOrder orders the elements of keyed lists as the vendor's version
// has them, with the elements only the user has right after the element
// they follow in the user's version: an order change in a pod template
// would restart its pods for nothing, and a release not customized ports
// to exactly itself.
func keepOrder(merged, user, vendor any) {
	switch m := merged.(type) {
	case map[string]any:
		u, _ := user.(map[string]any)
		n, _ := vendor.(map[string]any)
		for k, v := range m {
			keepOrder(v, u[k], n[k])
		}
	case []any:
		k := listKey(m)
		if k == "" {
			return
		}
		u, _ := user.([]any)
		n, _ := vendor.([]any)
		id := func(e any) string { return fmt.Sprint(e.(map[string]any)[k]) }
		find := func(l []any, key string) any {
			if listKey(l) != k {
				return nil
			}
			for _, e := range l {
				if id(e) == key {
					return e
				}
			}
			return nil
		}
		byID := map[string]any{}
		for _, e := range m {
			byID[id(e)] = e
			keepOrder(e, find(u, id(e)), find(n, id(e)))
		}
		out := make([]any, 0, len(m))
		placed := map[string]bool{}
		if listKey(n) == k {
			for _, e := range n {
				if x, ok := byID[id(e)]; ok && !placed[id(e)] {
					out = append(out, x)
					placed[id(e)] = true
				}
			}
		}
		after := "" // the user's element the next one follows
		if listKey(u) == k {
			for _, e := range u {
				key := id(e)
				x, ok := byID[key]
				if ok && !placed[key] {
					at := 0
					if after != "" {
						at = slices.IndexFunc(out, func(y any) bool { return id(y) == after }) + 1
					}
					out = slices.Insert(out, at, x)
					placed[key] = true
				}
				if placed[key] {
					after = key
				}
			}
		}
		for _, e := range m {
			if !placed[id(e)] {
				out = append(out, e)
			}
		}
		copy(m, out)
	}
}

// listKeys are the fields that identify list elements: the first that
// every element has, with a different value in each, as kyaml infers
// "name", plus the merge keys of core types (volume mounts by mountPath
// when one volume is mounted twice).
var listKeys = []string{"name", "mountPath", "containerPort", "devicePath", "ip"}

// leaves flattens an object to path -> JSON value. Lists whose elements all
// carry one of listKeys are keyed by it ([name=agent]); other lists are
// one value.
func leaves(obj map[string]any) map[string]string {
	out := map[string]string{}
	flatten("", obj, out)
	return out
}

func flatten(prefix string, v any, out map[string]string) {
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 && prefix != "" {
			out[prefix] = "{}"
			return
		}
		for k, child := range t {
			flatten(joinPath(prefix, k), child, out)
		}
	case []any:
		if k := listKey(t); k != "" {
			for _, e := range t {
				m := e.(map[string]any)
				flatten(fmt.Sprintf("%s[%s=%v]", prefix, k, m[k]), m, out)
			}
			return
		}
		out[prefix] = jsonString(t)
	default:
		out[prefix] = jsonString(t)
	}
}

func listKey(l []any) string {
	if len(l) == 0 {
		return ""
	}
	for _, k := range listKeys {
		seen := map[string]bool{}
		for _, e := range l {
			m, ok := e.(map[string]any)
			if !ok {
				return ""
			}
			v, ok := m[k]
			if !ok || seen[fmt.Sprint(v)] {
				seen = nil
				break
			}
			seen[fmt.Sprint(v)] = true
		}
		if seen != nil {
			return k
		}
	}
	return ""
}

func joinPath(prefix, k string) string {
	if strings.ContainsAny(k, "./[]=") {
		return fmt.Sprintf("%s[%q]", prefix, k)
	}
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func unionKeys(a, b map[string]string) []string {
	ks := make([]string, 0, len(a)+len(b))
	for k := range a {
		ks = append(ks, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return ks
}

// redact hides a Secret's data values.
func redact(secret bool, path, v string) string {
	if secret && v != "" && (strings.HasPrefix(path, "data") || strings.HasPrefix(path, "stringData")) {
		return "(redacted)"
	}
	return v
}

func sameJSON(a, b map[string]any) bool { return jsonString(a) == jsonString(b) }

func index(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	m := make(map[string]*unstructured.Unstructured, len(objs))
	for _, o := range objs {
		m[key(o)] = o
	}
	return m
}

func ref(u *unstructured.Unstructured) string {
	s := u.GetKind() + "/"
	if ns := u.GetNamespace(); ns != "" {
		s += ns + "/"
	}
	return s + u.GetName()
}

// Normalize puts manifests in the shape the API server stores, so that
// versions compare field by field: a Secret's stringData becomes data
// (base64), as the API server does on write.
func Normalize(objs []*unstructured.Unstructured) {
	for _, o := range objs {
		if o.GetKind() != "Secret" || o.GetAPIVersion() != "v1" {
			continue
		}
		sd, ok, _ := unstructured.NestedStringMap(o.Object, "stringData")
		if !ok {
			continue
		}
		data, _, _ := unstructured.NestedMap(o.Object, "data")
		if data == nil {
			data = map[string]any{}
		}
		keys := make([]string, 0, len(sd))
		for k := range sd {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			data[k] = base64.StdEncoding.EncodeToString([]byte(sd[k]))
		}
		_ = unstructured.SetNestedMap(o.Object, data, "data")
		unstructured.RemoveNestedField(o.Object, "stringData")
	}
}

package component

import (
	"fmt"
	"reflect"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

// ignoredManagers write fields no user chose: the control plane's
// controllers and hitless itself.
var ignoredManagers = map[string]bool{
	"kube-controller-manager": true,
	"kube-scheduler":          true,
	"kubelet":                 true,
	"kube-apiserver":          true,
	"before-first-apply":      true,
}

// ignoredFields are written by tools, not chosen by the user.
var ignoredFields = [][]string{
	{"metadata", "annotations", "kubectl.kubernetes.io/last-applied-configuration"},
	{"metadata", "annotations", "deployment.kubernetes.io/revision"},
}

// UserVersion returns applied (what hitless last applied) with every field
// that another field manager owns in live laid over it: the user's edits
// (kubectl edit, patch, label, set), read from the object's managedFields.
// Fields of the control plane's controllers, of status subresources and
// of manager self (hitless) are ignored. A field the user removed is not
// visible this way; --from gives removals.
func UserVersion(applied, live *unstructured.Unstructured, self string) (*unstructured.Unstructured, error) {
	owned := &fieldpath.Set{}
	for _, mf := range live.GetManagedFields() {
		if mf.Manager == self || ignoredManagers[mf.Manager] || mf.Subresource != "" || mf.FieldsV1 == nil {
			continue
		}
		s := &fieldpath.Set{}
		if err := s.FromJSON(mf.FieldsV1.GetRawReader()); err != nil {
			return nil, fmt.Errorf("reading the fields %s owns in %s: %w", mf.Manager, ref(live), err)
		}
		owned = owned.Union(s)
	}
	out := applied.DeepCopy()
	var err error
	owned.Leaves().Iterate(func(p fieldpath.Path) {
		if err != nil || len(p) == 0 || ignored(p) {
			return
		}
		v, ok := lookup(live.Object, p)
		if !ok {
			return
		}
		out.Object, err = assign(out.Object, p, v)
	})
	if err != nil {
		return nil, fmt.Errorf("reading the user's fields of %s: %w", ref(live), err)
	}
	keepOrder(out.Object, live.Object, live.Object)
	return out, nil
}

func ignored(p fieldpath.Path) bool {
	for _, f := range ignoredFields {
		if len(p) != len(f) {
			continue
		}
		match := true
		for i := range f {
			if p[i].FieldName == nil || *p[i].FieldName != f[i] {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// lookup returns the value at p in obj.
func lookup(obj any, p fieldpath.Path) (any, bool) {
	cur := obj
	for _, pe := range p {
		switch {
		case pe.FieldName != nil:
			m, ok := cur.(map[string]any)
			if !ok {
				return nil, false
			}
			if cur, ok = m[*pe.FieldName]; !ok {
				return nil, false
			}
		default:
			l, ok := cur.([]any)
			if !ok {
				return nil, false
			}
			i := find(l, pe)
			if i < 0 {
				return nil, false
			}
			cur = l[i]
		}
	}
	return runtime.DeepCopyJSONValue(cur), true
}

// assign sets the value at p in obj, creating maps and list elements on
// the way (a keyed element gets its key fields), and returns obj.
func assign(obj any, p fieldpath.Path, v any) (map[string]any, error) {
	root, ok := obj.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not an object")
	}
	var set func(cur any, i int) (any, error)
	set = func(cur any, i int) (any, error) {
		if i == len(p) {
			return v, nil
		}
		pe := p[i]
		if pe.FieldName != nil {
			m, ok := cur.(map[string]any)
			if !ok || m == nil {
				m = map[string]any{}
			}
			child, err := set(m[*pe.FieldName], i+1)
			if err != nil {
				return nil, err
			}
			m[*pe.FieldName] = child
			return m, nil
		}
		l, _ := cur.([]any)
		idx := find(l, pe)
		if idx < 0 {
			switch {
			case pe.Key != nil:
				e := map[string]any{}
				for _, f := range *pe.Key {
					e[f.Name] = f.Value.Unstructured()
				}
				l = append(l, e)
			case pe.Value != nil:
				l = append(l, (*pe.Value).Unstructured())
			default:
				return nil, fmt.Errorf("list index %s beyond the list", pe.String())
			}
			idx = len(l) - 1
		}
		child, err := set(l[idx], i+1)
		if err != nil {
			return nil, err
		}
		l[idx] = child
		return l, nil
	}
	out, err := set(root, 0)
	if err != nil {
		return nil, err
	}
	return out.(map[string]any), nil
}

// find returns the index of the list element pe selects, or -1.
func find(l []any, pe fieldpath.PathElement) int {
	for i, e := range l {
		switch {
		case pe.Key != nil:
			m, ok := e.(map[string]any)
			if !ok {
				continue
			}
			match := true
			for _, f := range *pe.Key {
				if !reflect.DeepEqual(normalizeNumber(m[f.Name]), normalizeNumber(f.Value.Unstructured())) {
					match = false
					break
				}
			}
			if match {
				return i
			}
		case pe.Value != nil:
			if reflect.DeepEqual(normalizeNumber(e), normalizeNumber((*pe.Value).Unstructured())) {
				return i
			}
		case pe.Index != nil:
			if *pe.Index == i {
				return i
			}
		}
	}
	return -1
}

// normalizeNumber makes int64 and the structured-merge-diff values' int
// types compare equal.
func normalizeNumber(v any) any {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int32:
		return int64(n)
	case float64:
		if n == float64(int64(n)) {
			return int64(n)
		}
	}
	return v
}

package component

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v6/typed"
)

// Husks finds the structures a release drops that server-side apply would
// leave behind as husks: a map or list that previous (the object as self
// last applied it) held and desired no longer does, which the live object
// still has and under which no field manager but self owns anything.
// Server-side apply removes the fields self owned in it, but keeps the
// fields the API server defaulted there (a probe's scheme and timeouts)
// and the emptied maps: a probe with no handler and port 0, which the
// server refuses. Such a structure is no user's: it goes whole. One that
// holds a field a person or a controller set is left to server-side
// apply. A kind the converter does not know comes back with none.
func Husks(tc managedfields.TypeConverter, desired, live, previous *unstructured.Unstructured, self string) ([]fieldpath.Path, error) {
	if live == nil || previous == nil {
		return nil, nil
	}
	tv, err := tc.ObjectToTyped(previous, typed.AllowDuplicates)
	if err != nil {
		return nil, nil //nolint:nilerr // not a kind the schema knows
	}
	fields, err := tv.ToFieldSet()
	if err != nil {
		return nil, fmt.Errorf("reading the fields of %s: %w", ref(previous), err)
	}
	foreign := &fieldpath.Set{}
	for _, mf := range live.GetManagedFields() {
		if mf.FieldsV1 == nil || mf.Manager == self || mf.Subresource != "" {
			continue
		}
		s := &fieldpath.Set{}
		if err := s.FromJSON(mf.FieldsV1.GetRawReader()); err != nil {
			return nil, fmt.Errorf("reading the fields %s owns in %s: %w", mf.Manager, ref(live), err)
		}
		foreign = foreign.Union(s)
	}
	var out []fieldpath.Path
	fields.Leaves().Iterate(func(leaf fieldpath.Path) {
		if len(leaf) < 2 || leaf[0].FieldName == nil || *leaf[0].FieldName == "metadata" || *leaf[0].FieldName == "status" {
			return
		}
		for n := 2; n <= len(leaf); n++ {
			q := leaf[:n].Copy()
			if _, kept := lookup(desired.Object, q); kept {
				continue
			}
			if _, parent := lookup(desired.Object, q[:n-1]); !parent {
				return
			}
			v, _ := lookup(previous.Object, q)
			_, isMap := v.(map[string]any)
			_, isList := v.([]any)
			if _, there := lookup(live.Object, q); there && (isMap || isList) && !ownsUnder(foreign, q) &&
				!slices.ContainsFunc(out, func(p fieldpath.Path) bool { return p.Equals(q) }) {
				out = append(out, q)
			}
			return
		}
	})
	return out, nil
}

func ownsUnder(s *fieldpath.Set, prefix fieldpath.Path) bool {
	found := false
	s.Iterate(func(p fieldpath.Path) {
		if !found && len(p) >= len(prefix) && p[:len(prefix)].Equals(prefix) {
			found = true
		}
	})
	return found
}

// RemovePatch is a JSON patch that removes paths from live, guarded by
// live's resourceVersion so that it never removes from an object changed
// since it was read.
func RemovePatch(live *unstructured.Unstructured, paths []fieldpath.Path) ([]byte, error) {
	ops := []map[string]any{{"op": "test", "path": "/metadata/resourceVersion", "value": live.GetResourceVersion()}}
	// Deepest and last list elements first, so earlier indexes hold.
	pointers := make([]string, 0, len(paths))
	for _, p := range paths {
		ptr, err := pointer(live.Object, p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref(live), err)
		}
		pointers = append(pointers, ptr)
	}
	slices.SortFunc(pointers, func(a, b string) int { return -comparePointers(a, b) })
	for _, ptr := range pointers {
		ops = append(ops, map[string]any{"op": "remove", "path": ptr})
	}
	return json.Marshal(ops)
}

// pointer is the JSON pointer of p in obj, list elements by their index.
func pointer(obj any, p fieldpath.Path) (string, error) {
	var b strings.Builder
	cur := obj
	for _, pe := range p {
		if pe.FieldName != nil {
			m, ok := cur.(map[string]any)
			if !ok {
				return "", fmt.Errorf("%s: not an object", p)
			}
			b.WriteString("/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(*pe.FieldName))
			cur = m[*pe.FieldName]
			continue
		}
		l, ok := cur.([]any)
		if !ok {
			return "", fmt.Errorf("%s: not a list", p)
		}
		i := find(l, pe)
		if i < 0 {
			return "", fmt.Errorf("%s: no such element", p)
		}
		b.WriteString("/" + strconv.Itoa(i))
		cur = l[i]
	}
	return b.String(), nil
}

// comparePointers orders JSON pointers segment by segment, list indexes
// as numbers.
func comparePointers(a, b string) int {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] == bs[i] {
			continue
		}
		ai, aerr := strconv.Atoi(as[i])
		bi, berr := strconv.Atoi(bs[i])
		if aerr == nil && berr == nil {
			return ai - bi
		}
		return strings.Compare(as[i], bs[i])
	}
	return len(as) - len(bs)
}

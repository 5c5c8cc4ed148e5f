package migrate

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
)

// touched lists the field paths a patch sets or removes: every leaf of a
// merge or apply patch (a list counts as one leaf), every operation's
// path (and a move's source) of a JSON patch, cut at the first list index.
func touched(p *plan.Patch) [][]string {
	var out [][]string
	if p.Type == plan.PatchJSON {
		ops, _ := p.Patch.([]any)
		for _, op := range ops {
			m, _ := op.(map[string]any)
			if m["op"] == "test" {
				continue
			}
			for _, k := range []string{"path", "from"} {
				if s, ok := m[k].(string); ok {
					out = append(out, pointer(s))
				}
			}
		}
		return out
	}
	var walk func(prefix []string, v any)
	walk = func(prefix []string, v any) {
		m, ok := v.(map[string]any)
		if !ok || len(m) == 0 {
			out = append(out, append([]string(nil), prefix...))
			return
		}
		for k, x := range m {
			walk(append(prefix, k), x)
		}
	}
	m, _ := p.Patch.(map[string]any)
	for k, x := range m {
		walk([]string{k}, x)
	}
	return out
}

// pointer splits a JSON pointer into fields, stopping before the first
// list index ("-" or a number).
func pointer(s string) []string {
	var out []string
	for _, part := range strings.Split(strings.TrimPrefix(s, "/"), "/") {
		if _, err := strconv.Atoi(part); err == nil || part == "-" {
			break
		}
		out = append(out, strings.NewReplacer("~1", "/", "~0", "~").Replace(part))
	}
	return out
}

// inversePatch is the merge patch that puts back, on every path the patch
// touched, what the backup held there. Where the backup held nothing, the
// outermost field the patch brought is removed whole: the API server may
// have defaulted fields inside it (a husk would stay otherwise).
func inversePatch(p *plan.Patch, backup *unstructured.Unstructured) map[string]any {
	inv := map[string]any{}
	for _, path := range touched(p) {
		if len(path) == 0 {
			continue
		}
		restore := path
		var old any
		for k := 1; k <= len(path); k++ {
			v, found, _ := unstructured.NestedFieldCopy(backup.Object, path[:k]...)
			if !found {
				restore, old = path[:k], nil
				break
			}
			old = v
		}
		if !removedAbove(inv, restore) {
			setPath(inv, restore, old)
		}
	}
	return inv
}

// removedAbove tells whether inv already removes path or a field above it.
func removedAbove(inv map[string]any, path []string) bool {
	m := inv
	for _, k := range path {
		v, ok := m[k]
		if !ok {
			return false
		}
		if v == nil {
			return true
		}
		next, isMap := v.(map[string]any)
		if !isMap {
			return false
		}
		m = next
	}
	return false
}

func setPath(m map[string]any, path []string, v any) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// jsonPatchApplied tells whether cur already holds, on the paths the
// patch touches, what the patch makes of the backup.
func jsonPatchApplied(backup, cur *unstructured.Unstructured, patch []byte, paths [][]string) (bool, error) {
	dec, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return false, fmt.Errorf("reading the JSON patch: %w", err)
	}
	b, err := backup.MarshalJSON()
	if err != nil {
		return false, err
	}
	want, err := dec.Apply(b)
	if err != nil {
		return false, nil // it does not apply to the backup: not applied yet
	}
	w := &unstructured.Unstructured{}
	if err := w.UnmarshalJSON(want); err != nil {
		return false, err
	}
	for _, path := range paths {
		a, fa, _ := unstructured.NestedFieldNoCopy(w.Object, path...)
		c, fc, _ := unstructured.NestedFieldNoCopy(cur.Object, path...)
		ja, _ := json.Marshal(a)
		jc, _ := json.Marshal(c)
		if fa != fc || !bytes.Equal(ja, jc) {
			return false, nil
		}
	}
	return true, nil
}

// DescribeRollback says how a step is undone.
func DescribeRollback(s plan.Step) string {
	rb := s.Rollback
	switch {
	case rb == nil:
		return describeDerived(s)
	case rb.None:
		return "none"
	}
	var parts []string
	for _, a := range rb.Before {
		parts = append(parts, describeAction(a))
	}
	if rb.Derived() {
		parts = append(parts, describeDerived(s))
	} else {
		parts = append(parts, describeAction(rb.Action))
	}
	for _, a := range rb.Then {
		parts = append(parts, describeAction(a))
	}
	return "explicit: " + strings.Join(parts, ", then ")
}

// describeDerived says what the derived inverse of a step does.
func describeDerived(s plan.Step) string {
	switch {
	case s.Patch != nil:
		var paths []string
		for _, p := range touched(s.Patch) {
			paths = append(paths, strings.Join(p, "."))
		}
		slices.Sort(paths)
		return fmt.Sprintf("restore %s of %s from the backup taken before the patch", strings.Join(paths, ", "), s.Patch.Object)
	case s.Delete != nil:
		return "re-create what it deleted from the backup taken before (a namespace's contents are not in it)"
	case s.Component != nil:
		switch s.Component.Action {
		case plan.ComponentInstall:
			return "uninstall " + s.Component.Name
		case plan.ComponentUpgrade:
			return "roll " + s.Component.Name + " back to the revision it replaced"
		}
		return "none: an uninstall is undone by installing again"
	case s.Roll != nil:
		if invertible(s.Roll) {
			return "roll every node whose action ran back with the inverse actions (" + actionNames(s.Roll) + " back)"
		}
		return "none: nodes rolled stay rolled (a plan's rollback rolls them again)"
	case s.Label != nil:
		return "put back what each node had under " + strings.Join(slices.Sorted(maps.Keys(s.Label.Labels)), ", ")
	case s.Sync != nil:
		return "delete what the sync created, put back what it changed (from the backup taken before its first write)"
	}
	return "none"
}

func describeAction(a plan.Action) string {
	switch {
	case a.Patch != nil:
		return fmt.Sprintf("patch %s (%s)", a.Patch.Object, patchType(a.Patch.Type))
	case a.Delete != nil:
		return fmt.Sprintf("delete %d object(s)", len(a.Delete.Objects))
	case a.Wait != nil:
		return "wait for " + a.Wait.For.String()
	case a.Label != nil:
		return fmt.Sprintf("label %s %s", orEvery(a.Label.Nodes), joinLabels(a.Label.Labels))
	case a.Sync != nil:
		return "sync " + a.Sync.SyncName() + " (" + cmp.Or(a.Sync.Mode, plan.SyncOnce) + ")"
	case a.Roll != nil:
		var groups, actions []string
		for i, g := range a.Roll.Groups {
			groups = append(groups, groupName(g, i))
		}
		for _, x := range a.Roll.Actions {
			actions = append(actions, x.Name)
		}
		return fmt.Sprintf("roll %s (%s)", strings.Join(groups, ", "), strings.Join(actions, ", "))
	}
	return a.Type()
}

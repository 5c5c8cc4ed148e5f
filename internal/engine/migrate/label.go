package migrate

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
)

// label sets the step's labels on its nodes. Before the first node
// changes, what each node had under those keys (and nothing else of it)
// is saved as the step's backup: the first run's backup is kept, so a
// resumed step labels the same nodes and its undo restores what was
// there before.
func (r *runner) label(ctx context.Context, step string, l *plan.Label) ([]string, error) {
	nodes, err := r.c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: l.Nodes})
	if err != nil {
		return nil, fmt.Errorf("listing the nodes matching %q: %w", l.Nodes, err)
	}
	slim := make([]*unstructured.Unstructured, 0, len(nodes.Items))
	for _, n := range nodes.Items {
		had := map[string]any{}
		for k := range l.Labels {
			if v, ok := n.Labels[k]; ok {
				had[k] = v
			}
		}
		slim = append(slim, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Node", "metadata": map[string]any{"name": n.Name, "labels": had}}})
	}
	kept, err := r.save(ctx, step, slim)
	if err != nil {
		return nil, err
	}
	if len(kept) == 0 {
		return []string{"no node matches " + orEvery(l.Nodes)}, nil
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": l.Labels}})
	if err != nil {
		return nil, err
	}
	for _, u := range kept {
		if _, err := r.c.Client.CoreV1().Nodes().Patch(ctx, u.GetName(), types.MergePatchType, body, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
			return nil, fmt.Errorf("labelling node %s: %w", u.GetName(), err)
		}
	}
	return []string{fmt.Sprintf("labelled %d node(s) %s", len(kept), joinLabels(l.Labels))}, nil
}

// unlabel puts back, on every node the step labelled, what the node had
// under the step's keys (a key it did not have is removed).
func (r *runner) unlabel(ctx context.Context, step string, l *plan.Label) ([]string, error) {
	saved, err := r.saved(ctx, step)
	if err != nil {
		return nil, err
	}
	if len(saved) == 0 {
		return []string{"not labelled: nothing to undo"}, nil
	}
	for _, u := range saved {
		had, _, _ := unstructured.NestedStringMap(u.Object, "metadata", "labels")
		back := map[string]any{}
		for k := range l.Labels {
			if v, ok := had[k]; ok {
				back[k] = v
			} else {
				back[k] = nil
			}
		}
		body, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": back}})
		if err != nil {
			return nil, err
		}
		_, err = r.c.Client.CoreV1().Nodes().Patch(ctx, u.GetName(), types.MergePatchType, body, metav1.PatchOptions{FieldManager: FieldManager})
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("restoring the labels of node %s: %w", u.GetName(), err)
		}
	}
	return []string{fmt.Sprintf("restored %s on %d node(s)", strings.Join(slices.Sorted(maps.Keys(l.Labels)), ", "), len(saved))}, nil
}

func orEvery(sel string) string {
	if sel == "" {
		return "(every node)"
	}
	return sel
}

func joinLabels(m map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return strings.Join(out, ",")
}

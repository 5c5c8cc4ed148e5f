package roll

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/kube/eviction"
)

// BlockNoRoom is a pod the drain could never evict: its PDB allows fewer
// disruptions than the batch evicts of its pods, and no node outside the
// batch could start them again, so the PDB would stay short for ever.
const BlockNoRoom = "no-room"

// noRoom finds, batch by batch, the pods guarded by a PDB whose drains
// could never finish: the PDB allows disruptions, but fewer than the batch
// evicts of its pods, and none of them fits an uncordoned node outside
// the batch (by its nodeSelector; taints and affinities are not weighed,
// so a pod is never said to have no room when it has). Nodes are listed
// only when an evicted pod has a PDB.
func noRoom(ctx context.Context, cs kubernetes.Interface, plan *Plan, byNode map[string][]corev1.Pod, budgets eviction.Budgets) ([]predicted, error) {
	type guardedPod struct {
		pod *corev1.Pod
		pdb *policyv1.PodDisruptionBudget
	}
	index := make(map[string]int, len(plan.Nodes))
	guarded := map[string][]guardedPod{} // by node: the evicted pods a PDB covers
	for i, n := range plan.Nodes {
		index[n.Name] = i
		for _, p := range evicted(n, byNode) {
			if bs := budgets.Of(p); len(bs) > 0 {
				guarded[n.Name] = append(guarded[n.Name], guardedPod{pod: p, pdb: bs[0]})
			}
		}
	}
	if len(guarded) == 0 {
		return nil, nil
	}
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	var out []predicted
	for _, batch := range plan.Batches {
		if len(batch) > plan.BatchSize {
			continue // rounds of the batch size: nodes are freed between them
		}
		type stuck struct {
			pdb  *policyv1.PodDisruptionBudget
			pods []predicted
		}
		var byPDB []*stuck
		inBatch := make(map[string]bool, len(batch))
		for _, name := range batch {
			inBatch[name] = true
		}
		room := map[string]bool{} // by nodeSelector
		for _, name := range batch {
			for _, g := range guarded[name] {
				p, pdb := g.pod, g.pdb
				sel := labels.SelectorFromSet(p.Spec.NodeSelector)
				fits, seen := room[sel.String()]
				if !seen {
					fits = hasRoom(sel, list.Items, inBatch)
					room[sel.String()] = fits
				}
				if fits {
					continue
				}
				i := slices.IndexFunc(byPDB, func(s *stuck) bool { return s.pdb == pdb })
				if i < 0 {
					byPDB = append(byPDB, &stuck{pdb: pdb})
					i = len(byPDB) - 1
				}
				byPDB[i].pods = append(byPDB[i].pods, predicted{node: index[name], blocker: Blocker{Pod: p.Namespace + "/" + p.Name, Kind: BlockNoRoom, PDB: pdb.Namespace + "/" + pdb.Name}})
			}
		}
		for _, s := range byPDB {
			allowed := int(max(s.pdb.Status.DisruptionsAllowed, 0))
			if allowed == 0 || len(s.pods) <= allowed {
				continue // a PDB at zero is the dry run's blocker, left to --on-drain-timeout
			}
			var names []string
			for _, p := range s.pods {
				names = append(names, p.blocker.Pod)
			}
			for _, p := range s.pods[allowed:] {
				p.blocker.Detail = fmt.Sprintf("PodDisruptionBudget %s/%s allows %d disruption(s), and its pods on this batch's nodes (%s) fit no uncordoned node outside the batch: once evicted they start nowhere, so the drain would wait for ever (use a smaller batch, or free a node they fit)",
					s.pdb.Namespace, s.pdb.Name, allowed, strings.Join(names, ", "))
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// evicted are the pods the node's drain evicts.
func evicted(n NodePlan, byNode map[string][]corev1.Pod) []*corev1.Pod {
	var out []*corev1.Pod
	pods := byNode[n.Name]
	for _, e := range n.Evict {
		for i := range pods {
			if pods[i].Namespace == e.Namespace && pods[i].Name == e.Name {
				out = append(out, &pods[i])
			}
		}
	}
	return out
}

// hasRoom says whether an uncordoned node outside the batch matches a
// pod's nodeSelector.
func hasRoom(sel labels.Selector, nodes []corev1.Node, inBatch map[string]bool) bool {
	for _, n := range nodes {
		if !n.Spec.Unschedulable && !inBatch[n.Name] && sel.Matches(labels.Set(n.Labels)) {
			return true
		}
	}
	return false
}

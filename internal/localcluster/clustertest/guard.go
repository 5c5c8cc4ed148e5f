package clustertest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	knode "github.com/hitless-dev/hitless/internal/kube/node"
)

// Guard watches an operation from the outside and fails the test if a
// protected workload's healthy pods drop below its PodDisruptionBudget's
// minimum (any PDB of the namespace, whatever its selector; the expected
// pod count is the disruption controller's, live), if more of the rolled
// nodes are unschedulable at once than the batch allows, or, with a data
// plane, if a data-plane pod is deleted on a node that is not cordoned and
// drained. Its view of pods, nodes and PDBs is built from the events
// themselves, in order, not read from the informers' caches when an event
// is handled (which may already hold later events): every state the
// cluster passes through is checked, so no dip is missed.
type Guard struct {
	t     testing.TB
	cs    kubernetes.Interface
	ns    string
	pool  map[string]bool // the nodes the roll may touch
	batch int

	mu         sync.Mutex
	synced     bool // the informers' initial adds are not transitions
	violations []string
	maxUnsched int
	pods       map[string]*corev1.Pod // of ns, as of the event handled
	nodes      map[string]*corev1.Node
	pdbs       map[string]*policyv1.PodDisruptionBudget
	// replaced counts the data-plane pods deleted on drained nodes.
	replaced int
	dpNS     string
	dpName   string
}

// StartGuard watches the PDBs and pods of ns and the nodes of pool until
// the test ends.
func StartGuard(t testing.TB, cs kubernetes.Interface, ns string, pool []string, batch int) *Guard {
	return StartDataPlaneGuard(t, cs, ns, pool, batch, "", "")
}

// StartDataPlaneGuard is StartGuard that also checks every deletion of a
// pod of DaemonSet dpNS/dpName: its node must be cordoned and hold no pod
// of ns but DaemonSet pods.
func StartDataPlaneGuard(t testing.TB, cs kubernetes.Interface, ns string, pool []string, batch int, dpNS, dpName string) *Guard {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g := &Guard{dpNS: dpNS, dpName: dpName, t: t, cs: cs, ns: ns, pool: map[string]bool{}, batch: batch,
		pods: map[string]*corev1.Pod{}, nodes: map[string]*corev1.Node{}, pdbs: map[string]*policyv1.PodDisruptionBudget{}}
	for _, n := range pool {
		g.pool[n] = true
	}
	nsFactory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	podInf := nsFactory.Core().V1().Pods().Informer()
	pdbInf := nsFactory.Policy().V1().PodDisruptionBudgets().Informer()
	nodeFactory := informers.NewSharedInformerFactory(cs, 0)
	nodeInf := nodeFactory.Core().V1().Nodes().Informer()
	_, _ = podInf.AddEventHandler(follow(g, g.pods))
	_, _ = pdbInf.AddEventHandler(follow(g, g.pdbs))
	_, _ = nodeInf.AddEventHandler(follow(g, g.nodes))
	synced := []cache.InformerSynced{podInf.HasSynced, pdbInf.HasSynced, nodeInf.HasSynced}
	var dpFactory informers.SharedInformerFactory
	if dpNS != "" {
		dpFactory = informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(dpNS))
		dpInf := dpFactory.Core().V1().Pods().Informer()
		_, _ = dpInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(old, cur any) { g.checkReplace(old.(*corev1.Pod), cur.(*corev1.Pod)) },
		})
		dpFactory.Start(ctx.Done())
		synced = append(synced, dpInf.HasSynced)
	}
	nsFactory.Start(ctx.Done())
	nodeFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		t.Fatal("guard: caches did not sync")
	}
	g.mu.Lock()
	g.synced = true
	g.check()
	g.mu.Unlock()
	t.Cleanup(func() {
		cancel()
		nsFactory.Shutdown()
		nodeFactory.Shutdown()
		if dpFactory != nil {
			dpFactory.Shutdown()
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, v := range g.violations {
			t.Errorf("guard: %s", v)
		}
	})
	return g
}

// follow keeps state (by name) as each event leaves it, then checks.
func follow[T metav1.Object](g *Guard, state map[string]T) cache.ResourceEventHandlerFuncs {
	set := func(obj any) {
		if o, ok := obj.(T); ok {
			state[o.GetName()] = o
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { g.mu.Lock(); set(obj); g.check(); g.mu.Unlock() },
		UpdateFunc: func(_, obj any) { g.mu.Lock(); set(obj); g.check(); g.mu.Unlock() },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			g.mu.Lock()
			defer g.mu.Unlock()
			if o, ok := obj.(T); ok {
				delete(state, o.GetName())
			}
			g.check()
		},
	}
}

// violate records a violation (the first 20); the caller holds g.mu.
func (g *Guard) violate(format string, args ...any) {
	if len(g.violations) < 20 {
		g.violations = append(g.violations, time.Now().Format("15:04:05.000")+": "+fmt.Sprintf(format, args...))
	}
}

// check judges the state as of the event just handled; the caller holds
// g.mu.
func (g *Guard) check() {
	if !g.synced {
		return
	}
	for _, pdb := range g.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil {
			g.violate("PDB %s: selector: %v", pdb.Name, err)
			continue
		}
		healthy := 0
		for _, p := range g.pods {
			if sel.Matches(labels.Set(p.Labels)) && p.DeletionTimestamp == nil && podReady(p) {
				healthy++
			}
		}
		minHealthy, known := minAvailable(pdb)
		if known && healthy < minHealthy {
			g.violate("PDB %s wants %d healthy pods, %d were", pdb.Name, minHealthy, healthy)
		}
	}
	unsched := 0
	for _, n := range g.nodes {
		if g.pool[n.Name] && (n.Spec.Unschedulable || !knode.Ready(n)) {
			unsched++
		}
	}
	g.maxUnsched = max(g.maxUnsched, unsched)
	if unsched > g.batch {
		g.violate("%d nodes unavailable at once, the batch allows %d", unsched, g.batch)
	}
}

// minAvailable is the fewest healthy pods the PDB allows, from the pod
// count the disruption controller expects (live: it follows scaling);
// known is false until the controller has counted them, for a budget that
// needs the count.
func minAvailable(pdb *policyv1.PodDisruptionBudget) (n int, known bool) {
	expected := int(pdb.Status.ExpectedPods)
	if pdb.Spec.MinAvailable != nil {
		if pdb.Spec.MinAvailable.Type == intstr.Int {
			return pdb.Spec.MinAvailable.IntValue(), true
		}
		v, _ := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, expected, true)
		return v, pdb.Status.ObservedGeneration > 0
	}
	v, _ := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, expected, true)
	return expected - v, pdb.Status.ObservedGeneration > 0
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// checkReplace checks a data-plane pod the moment its deletion starts.
func (g *Guard) checkReplace(old, cur *corev1.Pod) {
	if old.DeletionTimestamp != nil || cur.DeletionTimestamp == nil {
		return
	}
	if c := metav1.GetControllerOf(cur); c == nil || c.Kind != "DaemonSet" || c.Name != g.dpName {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.synced {
		return
	}
	node := cur.Spec.NodeName
	if n, ok := g.nodes[node]; !ok || !n.Spec.Unschedulable {
		g.violate("data-plane pod %s (revision %s, created %s) deleted on node %s, which was not cordoned", cur.Name,
			cur.Labels["controller-revision-hash"], cur.CreationTimestamp.Format("15:04:05.000"), node)
		return
	}
	for _, p := range g.pods {
		if p.Spec.NodeName == node && p.DeletionTimestamp == nil {
			if c := metav1.GetControllerOf(p); c == nil || c.Kind != "DaemonSet" {
				g.violate("data-plane pod %s deleted on node %s while pod %s still ran there", cur.Name, node, p.Name)
				return
			}
		}
	}
	g.replaced++
}

// Replaced returns how many data-plane pods were deleted on drained nodes.
func (g *Guard) Replaced() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.replaced
}

// MaxUnavailable returns the most pool nodes seen unavailable at once.
func (g *Guard) MaxUnavailable() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.maxUnsched
}

// Take returns and clears the violations seen so far; disarm also stops
// checking.
func (g *Guard) Take(disarm bool) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	v := g.violations
	g.violations = nil
	if disarm {
		g.synced = false
	}
	return v
}

package roll_test

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
)

// guard watches a roll from the outside and fails the test if a protected
// workload's healthy pods drop below its PodDisruptionBudget's minimum, or
// if more of the rolled nodes are unschedulable at once than the batch
// allows. It checks after every pod and node event, so no dip is missed.
type guard struct {
	t     *testing.T
	cs    kubernetes.Interface
	ns    string
	pool  map[string]bool // the nodes the roll may touch
	batch int

	mu         sync.Mutex
	synced     bool // the informers' initial adds are not transitions
	violations []string
	maxUnsched int
	pods       cache.Indexer
	nodes      cache.Indexer
	pdbs       []policyv1.PodDisruptionBudget
	replicas   map[string]int32
}

func startGuard(t *testing.T, cs kubernetes.Interface, ns string, pool []string, batch int) *guard {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g := &guard{t: t, cs: cs, ns: ns, pool: map[string]bool{}, batch: batch, replicas: map[string]int32{}}
	for _, n := range pool {
		g.pool[n] = true
	}
	pdbs, err := cs.PolicyV1().PodDisruptionBudgets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.pdbs = pdbs.Items
	for _, p := range g.pdbs {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("guard: PDB %s must be named after its Deployment: %v", p.Name, err)
		}
		g.replicas[p.Name] = *d.Spec.Replicas
	}
	nsFactory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	podInf := nsFactory.Core().V1().Pods().Informer()
	nodeFactory := informers.NewSharedInformerFactory(cs, 0)
	nodeInf := nodeFactory.Core().V1().Nodes().Informer()
	g.pods, g.nodes = podInf.GetIndexer(), nodeInf.GetIndexer()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { g.check() },
		UpdateFunc: func(any, any) { g.check() },
		DeleteFunc: func(any) { g.check() },
	}
	_, _ = podInf.AddEventHandler(handler)
	_, _ = nodeInf.AddEventHandler(handler)
	nsFactory.Start(ctx.Done())
	nodeFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInf.HasSynced, nodeInf.HasSynced) {
		t.Fatal("guard: caches did not sync")
	}
	g.mu.Lock()
	g.synced = true
	g.mu.Unlock()
	g.check()
	t.Cleanup(func() {
		cancel()
		nsFactory.Shutdown()
		nodeFactory.Shutdown()
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, v := range g.violations {
			t.Errorf("guard: %s", v)
		}
	})
	return g
}

func (g *guard) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.synced {
		return
	}
	for _, pdb := range g.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil {
			continue
		}
		healthy := 0
		for _, obj := range g.pods.List() {
			p := obj.(*corev1.Pod)
			if sel.Matches(labels.Set(p.Labels)) && p.DeletionTimestamp == nil && podReady(p) {
				healthy++
			}
		}
		minHealthy := minAvailable(&pdb, g.replicas[pdb.Name])
		if healthy < minHealthy && len(g.violations) < 20 {
			g.violations = append(g.violations, fmt.Sprintf("%s: PDB %s wants %d healthy pods, %d were", time.Now().Format("15:04:05.000"), pdb.Name, minHealthy, healthy))
		}
	}
	unsched := 0
	for _, obj := range g.nodes.List() {
		n := obj.(*corev1.Node)
		if g.pool[n.Name] && (n.Spec.Unschedulable || !nodeReady(n)) {
			unsched++
		}
	}
	g.maxUnsched = max(g.maxUnsched, unsched)
	if unsched > g.batch && len(g.violations) < 20 {
		g.violations = append(g.violations, fmt.Sprintf("%s: %d nodes unavailable at once, the batch allows %d", time.Now().Format("15:04:05.000"), unsched, g.batch))
	}
}

func minAvailable(pdb *policyv1.PodDisruptionBudget, replicas int32) int {
	if pdb.Spec.MinAvailable != nil {
		v, _ := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, int(replicas), true)
		return v
	}
	v, _ := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, int(replicas), true)
	return int(replicas) - v
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// take returns and clears the violations seen so far; disarm also stops
// checking.
func (g *guard) take(disarm bool) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	v := g.violations
	g.violations = nil
	if disarm {
		g.synced = false
	}
	return v
}

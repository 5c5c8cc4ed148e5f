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

// Guard watches a roll from the outside and fails the test if a protected
// workload's healthy pods drop below its PodDisruptionBudget's minimum, if
// more of the rolled nodes are unschedulable at once than the batch
// allows, or, with WatchDataPlane, if a data-plane pod is deleted on a
// node that is not cordoned and drained. It checks after every pod and
// node event, so no dip is missed.
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
	pods       cache.Indexer
	nodes      cache.Indexer
	pdbs       []policyv1.PodDisruptionBudget
	replicas   map[string]int32
	// replaced counts the data-plane pods deleted on drained nodes.
	replaced int
	dpNS     string
	dpName   string
}

// StartGuard watches the protected workloads of ns (each PDB named after
// its Deployment) and the nodes of pool until the test ends.
func StartGuard(t testing.TB, cs kubernetes.Interface, ns string, pool []string, batch int) *Guard {
	return StartDataPlaneGuard(t, cs, ns, pool, batch, "", "")
}

// StartDataPlaneGuard is StartGuard that also checks every deletion of a
// pod of DaemonSet dpNS/dpName: its node must be cordoned and hold no pod
// of ns but DaemonSet pods.
func StartDataPlaneGuard(t testing.TB, cs kubernetes.Interface, ns string, pool []string, batch int, dpNS, dpName string) *Guard {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g := &Guard{dpNS: dpNS, dpName: dpName, t: t, cs: cs, ns: ns, pool: map[string]bool{}, batch: batch, replicas: map[string]int32{}}
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
	synced := []cache.InformerSynced{podInf.HasSynced, nodeInf.HasSynced}
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
	g.mu.Unlock()
	g.check()
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

func (g *Guard) check() {
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
		if g.pool[n.Name] && (n.Spec.Unschedulable || !knode.Ready(n)) {
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
	obj, ok, _ := g.nodes.GetByKey(node)
	if !ok || !obj.(*corev1.Node).Spec.Unschedulable {
		g.violations = append(g.violations, fmt.Sprintf("data-plane pod %s deleted on node %s, which was not cordoned", cur.Name, node))
		return
	}
	for _, o := range g.pods.List() {
		p := o.(*corev1.Pod)
		if p.Spec.NodeName == node && p.DeletionTimestamp == nil {
			if c := metav1.GetControllerOf(p); c == nil || c.Kind != "DaemonSet" {
				g.violations = append(g.violations, fmt.Sprintf("data-plane pod %s deleted on node %s while pod %s still ran there", cur.Name, node, p.Name))
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

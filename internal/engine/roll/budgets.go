package roll

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	policylisters "k8s.io/client-go/listers/policy/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/hitless-dev/hitless/internal/kube/eviction"
)

// budgets follows the PodDisruptionBudgets through the run's informer, so
// that a drain asks the API server for an eviction only when the budget
// covering the pod may allow it: at first, and after that budget changed
// and allows a disruption again (or the retry delay passed), never at
// every change of every budget.
type budgets struct {
	lister policylisters.PodDisruptionBudgetLister

	mu      sync.Mutex
	wake    map[string]chan struct{}       // by namespace/name; closed at its next change
	evicted map[string]map[string]*awaited // by namespace/name of the budget, then by pod name
}

// awaited is an eviction whose write to its budget's status (the pod
// listed in disruptedPods) and the disruption controller's answer to it
// (the pod gone from the list: it saw the pod terminating) are awaited.
type awaited struct {
	listed   bool
	answered chan struct{}
}

func newBudgets(lister policylisters.PodDisruptionBudgetLister) *budgets {
	return &budgets{lister: lister, wake: map[string]chan struct{}{}, evicted: map[string]map[string]*awaited{}}
}

// handler is the informer's event handler: it wakes the waiters of the
// budget that changed.
func (b *budgets) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    b.changedObject,
		UpdateFunc: func(_, obj any) { b.changedObject(obj) },
		DeleteFunc: b.changedObject,
	}
}

func (b *budgets) changedObject(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ch, ok := b.wake[key]; ok {
		close(ch)
		delete(b.wake, key)
	}
	pdb, ok := obj.(*policyv1.PodDisruptionBudget)
	if !ok {
		return
	}
	for pod, a := range b.evicted[key] {
		if _, listed := pdb.Status.DisruptedPods[pod]; listed {
			a.listed = true
		} else if a.listed {
			close(a.answered)
			b.forget(key, pod)
		}
	}
}

// Expect registers the eviction of pod under budget key, before it is
// asked for, and returns a channel closed once the budget's status listed
// the pod among its disrupted pods (the eviction's own write) and then no
// longer did (the disruption controller saw the pod terminating and wrote
// the budget again). Forget ends the wait.
//
// The next eviction under the same budget waits for it: asked before the
// disruption controller's write, it would race it, and the API server
// answers the lost race by sleeping half a second before it tries again.
func (b *budgets) Expect(key, pod string) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	a := &awaited{answered: make(chan struct{})}
	if b.evicted[key] == nil {
		b.evicted[key] = map[string]*awaited{}
	}
	b.evicted[key][pod] = a
	return a.answered
}

// Forget drops what Expect registered.
func (b *budgets) Forget(key, pod string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.forget(key, pod)
}

// forget is Forget with mu held.
func (b *budgets) forget(key, pod string) {
	delete(b.evicted[key], pod)
	if len(b.evicted[key]) == 0 {
		delete(b.evicted, key)
	}
}

// Changed returns a channel closed at the next change of budget key.
func (b *budgets) Changed(key string) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch, ok := b.wake[key]
	if !ok {
		ch = make(chan struct{})
		b.wake[key] = ch
	}
	return ch
}

// Allows says whether budget key, as last seen, may allow an eviction:
// it allows a disruption, its status is older than its spec, or it is not
// (or no longer) known. Only the API server decides; this saves asking it
// when the answer is known to be no.
func (b *budgets) Allows(key string) bool {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil || b.lister == nil {
		return true
	}
	pdb, err := b.lister.PodDisruptionBudgets(ns).Get(name)
	if err != nil {
		return true
	}
	return allows(pdb)
}

func allows(pdb *policyv1.PodDisruptionBudget) bool {
	return pdb.Status.DisruptionsAllowed > 0 || pdb.Status.ObservedGeneration < pdb.Generation
}

// Of names the first PodDisruptionBudget whose selector matches the pod,
// or "".
func (b *budgets) Of(p *corev1.Pod) string {
	if b.lister == nil {
		return ""
	}
	list, err := b.lister.PodDisruptionBudgets(p.Namespace).List(everything())
	if err != nil {
		return ""
	}
	if pdb := eviction.Covering(p, list); pdb != nil {
		return pdb.Namespace + "/" + pdb.Name
	}
	return ""
}

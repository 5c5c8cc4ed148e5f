package roll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	appsv1client "k8s.io/client-go/kubernetes/typed/apps/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/kubectl/pkg/drain"
	"k8s.io/kubectl/pkg/util/podutils"

	"github.com/hitless-dev/hitless/internal/kube/eviction"
	"github.com/hitless-dev/hitless/internal/kube/transient"
)

// DrainRefusedError is a drain that kubectl's filters refuse to start:
// unmanaged pods without --force, emptyDir data without
// --delete-emptydir-data.
type DrainRefusedError struct {
	Node    string
	Reasons []string
}

func (e *DrainRefusedError) Error() string {
	return fmt.Sprintf("drain of node %s refused: %s", e.Node, strings.Join(e.Reasons, "; "))
}

// DrainTimeoutError is a drain that did not finish in time.
type DrainTimeoutError struct {
	Node     string
	Timeout  time.Duration
	Pods     []string // still on the node
	Blocking []string // PDBs that refused evictions, with their messages
}

func (e *DrainTimeoutError) Error() string {
	msg := fmt.Sprintf("drain of node %s did not finish in %s: %d pods remain (%s)", e.Node, e.Timeout, len(e.Pods), strings.Join(e.Pods, ", "))
	if len(e.Blocking) > 0 {
		msg += "; blocked by " + strings.Join(e.Blocking, "; ")
	}
	return msg
}

// drainResult is what a drain did.
type drainResult struct {
	Evicted []string
	Deleted []string // unmanaged pods removed under --force
	// onNode is every pod the drain found on the node, DaemonSet pods
	// included, as listed before it evicted any.
	onNode []corev1.Pod
}

// drainNode evicts the node's pods through the Eviction API, as kubectl
// drain does (its filters pick the pods: DaemonSet pods stay), retrying
// refusals after retryDelay, and waits for the pods to be gone with one
// watch instead of polling each pod.
//
// An eviction is asked for when the budget covering the pod may allow
// it, as the budgets last seen say; a refused one is asked again as soon
// as its budget changed and allows a disruption, or after the retry delay
// at the latest.
func drainNode(ctx context.Context, cs kubernetes.Interface, node string, spec Spec, pdbs budgetView) (drainResult, error) {
	var res drainResult
	helper := &drain.Helper{
		Ctx:                 ctx,
		Client:              cs,
		Force:               spec.Force,
		GracePeriodSeconds:  -1,
		IgnoreAllDaemonSets: true,
		DeleteEmptyDirData:  spec.DeleteEmptyDirData,
		AdditionalFilters:   []drain.PodFilter{eviction.Filter(spec.evictionOptions())},
		Out:                 io.Discard,
		ErrOut:              io.Discard,
	}
	pods, onNode, err := podsToDrain(ctx, helper, node)
	res.onNode = onNode
	if err != nil || len(pods) == 0 {
		return res, err
	}
	dctx, cancel := context.WithDeadline(ctx, time.Now().Add(spec.DrainTimeout))
	defer cancel()
	remaining := map[types.UID]string{}
	for _, p := range pods {
		remaining[p.UID] = p.Namespace + "/" + p.Name
		if !eviction.Managed(&p) {
			res.Deleted = append(res.Deleted, p.Namespace+"/"+p.Name)
		} else {
			res.Evicted = append(res.Evicted, p.Namespace+"/"+p.Name)
		}
	}
	e := &evictor{helper: helper, ctx: dctx, retryDelay: spec.EvictRetryDelay, budgets: pdbs, blocking: map[string]string{}}
	var wg sync.WaitGroup
	// Pods under one PDB are evicted one after the other (concurrent
	// evictions against one budget conflict in the API server, which backs
	// off half a second per conflict); groups run side by side.
	for _, group := range byBudget(pods, pdbs.Of) {
		wg.Go(func() {
			for i, p := range group.pods {
				if !e.evictInTurn(p, group.budget, i == len(group.pods)-1) {
					return
				}
			}
		})
	}
	waitErr := waitGone(dctx, cs, node, remaining, newestVersion(pods))
	cancel()
	wg.Wait()
	if e.err != nil {
		return res, e.err
	}
	if waitErr != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, e.timeout(node, spec.DrainTimeout, remaining)
	}
	return res, nil
}

// podsToDrain lists the pods kubectl's filters (and hitless's) let a
// drain of node evict, and every pod it listed on the node; a pod the
// filters refuse makes a *DrainRefusedError.
//
// kubectl's DaemonSet filter reads each DaemonSet pod's owner and reports
// a failed read only as text ("cannot delete Get ...: connection
// refused"): the reads go through a client that keeps their transient
// errors, so an API server restart is retried, not taken for a refusal.
func podsToDrain(ctx context.Context, helper *drain.Helper, node string) (evict, onNode []corev1.Pod, err error) {
	var (
		list *drain.PodDeleteList
		errs []error
	)
	reads := &daemonSetReads{}
	filtering := *helper
	filtering.Client = readsKept{Interface: helper.Client, reads: reads}
	err = transient.Retry(ctx, func() error {
		reads.err, reads.listed = nil, nil
		list, errs = filtering.GetPodsForDeletion(node)
		if len(errs) == 1 && transient.Is(errs[0]) {
			return errs[0]
		}
		if len(errs) > 0 {
			return reads.err
		}
		return nil
	})
	if err != nil { // the API server kept failing, or ctx ended
		return nil, nil, fmt.Errorf("listing the pods to drain from node %s: %w", node, err)
	}
	if len(errs) > 0 {
		reasons := make([]string, 0, len(errs))
		for _, e := range errs {
			reasons = append(reasons, e.Error())
		}
		return nil, nil, &DrainRefusedError{Node: node, Reasons: reasons}
	}
	if reads.listed != nil {
		onNode = reads.listed.Items
	}
	return list.Pods(), onNode, nil
}

// daemonSetReads keeps the first transient error of the DaemonSet reads of
// one GetPodsForDeletion (its filters run one pod after the other), and
// the pods it listed.
type daemonSetReads struct {
	err    error
	listed *corev1.PodList
}

func (d *daemonSetReads) keep(err error) {
	if d.err == nil && transient.Is(err) {
		d.err = err
	}
}

// readsKept is a client whose DaemonSet reads keep their transient errors.
type readsKept struct {
	kubernetes.Interface
	reads *daemonSetReads
}

func (c readsKept) CoreV1() corev1client.CoreV1Interface {
	return coreKept{CoreV1Interface: c.Interface.CoreV1(), reads: c.reads}
}

type coreKept struct {
	corev1client.CoreV1Interface
	reads *daemonSetReads
}

func (c coreKept) Pods(namespace string) corev1client.PodInterface {
	return podsKept{PodInterface: c.CoreV1Interface.Pods(namespace), reads: c.reads}
}

type podsKept struct {
	corev1client.PodInterface
	reads *daemonSetReads
}

func (p podsKept) List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	list, err := p.PodInterface.List(ctx, opts)
	if err == nil {
		p.reads.listed = list
	}
	return list, err
}

func (c readsKept) AppsV1() appsv1client.AppsV1Interface {
	return appsKept{AppsV1Interface: c.Interface.AppsV1(), reads: c.reads}
}

type appsKept struct {
	appsv1client.AppsV1Interface
	reads *daemonSetReads
}

func (a appsKept) DaemonSets(namespace string) appsv1client.DaemonSetInterface {
	return daemonSetsKept{DaemonSetInterface: a.AppsV1Interface.DaemonSets(namespace), reads: a.reads}
}

type daemonSetsKept struct {
	appsv1client.DaemonSetInterface
	reads *daemonSetReads
}

func (d daemonSetsKept) Get(ctx context.Context, name string, opts metav1.GetOptions) (*appsv1.DaemonSet, error) {
	ds, err := d.DaemonSetInterface.Get(ctx, name, opts)
	if err != nil {
		d.reads.keep(err)
	}
	return ds, err
}

// budgetView is what a drain needs to know of the PodDisruptionBudgets.
type budgetView interface {
	// Of names the budget covering a pod (namespace/name), or "".
	Of(p *corev1.Pod) string
	// Changed returns a channel closed at the next change of a budget.
	Changed(key string) <-chan struct{}
	// Allows says whether a budget, as last seen, may allow an eviction.
	Allows(key string) bool
	// Expect registers a pod's eviction under a budget before it is asked
	// for; the channel closes once the disruption controller answered it.
	Expect(key, pod string) <-chan struct{}
	// Forget drops what Expect registered.
	Forget(key, pod string)
}

// podGroup is pods evicted one after the other: those one budget covers
// (namespace/name), or a single pod no budget covers (budget "").
type podGroup struct {
	budget string
	pods   []corev1.Pod
}

// byBudget groups pods by the PodDisruptionBudget covering them; a pod
// without one is a group of its own.
func byBudget(pods []corev1.Pod, budgetOf func(*corev1.Pod) string) []podGroup {
	var groups []podGroup
	index := map[string]int{} // budget -> its group
	for _, p := range pods {
		key := budgetOf(&p)
		if i, ok := index[key]; ok {
			groups[i].pods = append(groups[i].pods, p)
			continue
		}
		if key != "" {
			index[key] = len(groups)
		}
		groups = append(groups, podGroup{budget: key, pods: []corev1.Pod{p}})
	}
	return groups
}

// evictor evicts the pods of one drain, keeping what refused them.
type evictor struct {
	helper     *drain.Helper
	ctx        context.Context // the drain's deadline
	retryDelay time.Duration
	budgets    budgetView

	mu       sync.Mutex
	blocking map[string]string // pod -> the budget's refusal
	err      error             // an eviction refused for good
}

// evict retries one pod's eviction until it is accepted, refused for
// good, or the drain ends; it reports whether the pod goes. key names
// the budget covering the pod, or is "".
func (e *evictor) evict(p corev1.Pod, key string) bool {
	force := false
	for {
		changed := e.budgets.Changed(key)
		if force || key == "" || e.budgets.Allows(key) {
			if done, goes := e.try(p); done {
				return goes
			}
		}
		var alive bool
		if force, alive = e.wait(key, changed); !alive {
			return false
		}
	}
}

// evictInTurn evicts p, the next pod under budget key (or none, ""), and
// unless it is the last one there waits for the disruption controller to
// answer the eviction before the next one is asked for, at most
// settleLimit: the eviction after it would otherwise race that answer
// for the budget's status and, losing, wait half a second in the API
// server. A pod that is not ready is evicted without a write to the
// budget, so nothing answers it and nothing is awaited.
func (e *evictor) evictInTurn(p corev1.Pod, key string, last bool) bool {
	if key == "" || last || !podutils.IsPodReady(&p) {
		return e.evict(p, key)
	}
	answered := e.budgets.Expect(key, p.Name)
	defer e.budgets.Forget(key, p.Name)
	if !e.evict(p, key) {
		return false
	}
	limit := time.NewTimer(settleLimit)
	defer limit.Stop()
	select {
	case <-answered:
	case <-limit.C:
	case <-e.ctx.Done():
		return false
	}
	return true
}

// settleLimit bounds the wait for the disruption controller's answer to
// an eviction: the half second the API server sleeps after a lost race.
const settleLimit = 500 * time.Millisecond

// try asks for one eviction: done when the pod goes or is refused for
// good (goes says which), not done when a budget or the API server said
// to ask again.
func (e *evictor) try(p corev1.Pod) (done, goes bool) {
	err := e.helper.EvictPod(p, policyv1.SchemeGroupVersion)
	switch {
	case err == nil || apierrors.IsNotFound(err):
		return true, true
	case apierrors.IsForbidden(err) && apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		// Its namespace is being deleted: no eviction is accepted there,
		// and the namespace controller deletes the pod; the drain waits
		// for it to go, as kubectl drain does.
		return true, true
	case apierrors.IsTooManyRequests(err):
		e.mu.Lock()
		e.blocking[p.Namespace+"/"+p.Name] = pdbMessage(err)
		e.mu.Unlock()
		return false, false
	case transient.Is(err):
		// The API server is restarting or overloaded: ask again.
		return false, false
	default:
		e.mu.Lock()
		e.err = fmt.Errorf("evicting pod %s/%s: %w", p.Namespace, p.Name, err)
		e.mu.Unlock()
		return true, false
	}
}

// wait waits until budget key changed and allows a disruption, or the
// retry delay passed (timedOut: ask the API server whatever the budget
// last said). alive is false when the drain ended.
func (e *evictor) wait(key string, changed <-chan struct{}) (timedOut, alive bool) {
	retry := time.NewTimer(e.retryDelay)
	defer retry.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return false, false
		case <-retry.C:
			return true, true
		case <-changed:
			changed = e.budgets.Changed(key)
			if key == "" || e.budgets.Allows(key) {
				return false, true
			}
		}
	}
}

// timeout describes a drain that ran out of time: the pods left and the
// budgets that refused them.
func (e *evictor) timeout(node string, after time.Duration, remaining map[types.UID]string) error {
	left := make([]string, 0, len(remaining))
	for _, name := range remaining {
		left = append(left, name)
	}
	slices.Sort(left)
	var blocks []string
	seen := map[string]bool{}
	for _, pod := range left {
		if m, ok := e.blocking[pod]; ok && !seen[m] {
			seen[m] = true
			blocks = append(blocks, m+" (pod "+pod+")")
		}
	}
	return &DrainTimeoutError{Node: node, Timeout: after, Pods: left, Blocking: blocks}
}

// waitGone waits until every UID in remaining is gone from node, deleting
// entries as they go: one list, then one watch from the list's version,
// listing and watching again if the watch breaks (an API server restart).
//
// from, when set, is a resource version no newer than any deletion to wait
// for (the newest of the pods'): the first watch starts there without a
// list. If it is too old, the API says so and waitGone lists.
func waitGone(ctx context.Context, cs kubernetes.Interface, node string, remaining map[types.UID]string, from string) error {
	for {
		sel := metav1.ListOptions{FieldSelector: "spec.nodeName=" + node}
		if from != "" {
			sel.ResourceVersion, from = from, ""
			if err := watchGone(ctx, cs, sel, remaining); err == nil || ctx.Err() != nil {
				return err
			}
			continue
		}
		var current *corev1.PodList
		err := transient.Retry(ctx, func() (err error) {
			current, err = cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, sel)
			return err
		})
		if err != nil {
			return fmt.Errorf("listing pods on node %s: %w", node, err)
		}
		present := map[types.UID]bool{}
		for _, p := range current.Items {
			present[p.UID] = true
		}
		for uid := range remaining {
			if !present[uid] {
				delete(remaining, uid)
			}
		}
		if len(remaining) == 0 {
			return nil
		}
		sel.ResourceVersion = current.ResourceVersion
		err = watchGone(ctx, cs, sel, remaining)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if !errors.Is(err, errWatchClosed) && !transient.Is(err) && !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
			return fmt.Errorf("watching pods on node %s: %w", node, err)
		}
		// The watch broke: list and watch again.
	}
}

func watchGone(ctx context.Context, cs kubernetes.Interface, sel metav1.ListOptions, remaining map[types.UID]string) error {
	w, err := cs.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, sel)
	if err != nil {
		return err
	}
	defer w.Stop()
	return consume(ctx, w, remaining)
}

// newestVersion returns the highest resourceVersion among pods, or "" when
// one is not a number (resource versions are opaque; etcd's are numbers).
func newestVersion(pods []corev1.Pod) string {
	var newest uint64
	for _, p := range pods {
		v, err := strconv.ParseUint(p.ResourceVersion, 10, 64)
		if err != nil {
			return ""
		}
		newest = max(newest, v)
	}
	if newest == 0 {
		return ""
	}
	return strconv.FormatUint(newest, 10)
}

var errWatchClosed = errors.New("pod watch closed")

func consume(ctx context.Context, w watch.Interface, remaining map[types.UID]string) error {
	for len(remaining) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type == watch.Error {
				return errWatchClosed
			}
			if p, isPod := ev.Object.(*corev1.Pod); isPod && ev.Type == watch.Deleted {
				delete(remaining, p.UID)
			}
		}
	}
	return nil
}

// pdbMessage extracts which PodDisruptionBudget refused an eviction.
func pdbMessage(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		if d := status.Status().Details; d != nil {
			for _, c := range d.Causes {
				if c.Type == policyv1.DisruptionBudgetCause {
					return c.Message
				}
			}
		}
	}
	return err.Error()
}

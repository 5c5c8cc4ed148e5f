package roll

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/pager"
)

// Kinds of drain blockers.
const (
	BlockUnmanaged = "unmanaged" // no controller: eviction would lose it
	BlockEmptyDir  = "emptydir"  // local data lost on eviction
	BlockPDB       = "pdb"       // a PDB allows no disruption now
	BlockPDBNever  = "pdb-never" // a PDB can never allow one
	BlockDryRun    = "eviction"  // the dry-run eviction failed otherwise
	overheadOnNode = 2 * time.Second
)

// Plan is what a roll will do, computed before anything changes.
type Plan struct {
	BatchSize int           `json:"batchSize"`
	Batches   [][]string    `json:"batches"`
	Nodes     []NodePlan    `json:"nodes"`
	Estimate  time.Duration `json:"estimateNs"`
	// Blocked is true when a blocker stops the roll before it starts
	// (unmanaged pods without --force, emptyDir data without
	// --delete-emptydir-data).
	Blocked bool `json:"blocked"`
}

// NodePlan is one node's part of the plan.
type NodePlan struct {
	Name          string        `json:"name"`
	InternalIP    string        `json:"internalIP,omitempty"`
	Zone          string        `json:"zone,omitempty"`
	ControlPlane  bool          `json:"controlPlane,omitempty"`
	Ready         bool          `json:"ready"`
	Cordoned      bool          `json:"cordoned"` // already unschedulable before the roll
	Batch         int           `json:"batch"`
	Canary        bool          `json:"canary,omitempty"`
	Evict         []PodRef      `json:"evict"`
	DaemonSetPods []string      `json:"daemonSetPods,omitempty"`
	Blockers      []Blocker     `json:"blockers,omitempty"`
	Estimate      time.Duration `json:"estimateNs"`
}

// PodRef names a pod the drain will evict.
type PodRef struct {
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	Owner       string `json:"owner,omitempty"` // Kind/name of the controller
	GracePeriod int64  `json:"gracePeriodSeconds"`
}

func (p PodRef) String() string { return p.Namespace + "/" + p.Name }

// Blocker is why a pod's eviction is predicted to block or lose data.
type Blocker struct {
	Pod    string `json:"pod"`
	Kind   string `json:"kind"`
	PDB    string `json:"pdb,omitempty"`
	Detail string `json:"detail"`
}

// MakePlan selects and orders the nodes, lists what each drain evicts and
// predicts blockers with server-side dry-run evictions. It changes nothing.
func MakePlan(ctx context.Context, cs kubernetes.Interface, spec Spec) (*Plan, error) {
	nodes, err := selectNodes(ctx, cs, spec)
	if err != nil {
		return nil, err
	}
	pods, err := listPods(ctx, cs)
	if err != nil {
		return nil, err
	}
	pdbs, err := cs.PolicyV1().PodDisruptionBudgets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing PodDisruptionBudgets: %w", err)
	}
	budgets := make([]*policyv1.PodDisruptionBudget, len(pdbs.Items))
	for i := range pdbs.Items {
		budgets[i] = &pdbs.Items[i]
	}
	byNode := map[string][]corev1.Pod{}
	for _, p := range pods {
		if p.Spec.NodeName != "" {
			byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
		}
	}
	orderNodes(nodes, spec.Order)

	plan := &Plan{BatchSize: spec.BatchSize(len(nodes))}
	var dryRuns []dryRun
	for _, n := range nodes {
		np := NodePlan{
			Name:         n.Name,
			InternalIP:   internalIP(&n),
			Zone:         n.Labels[corev1.LabelTopologyZone],
			ControlPlane: isControlPlane(&n),
			Ready:        nodeReady(&n),
			Cordoned:     n.Spec.Unschedulable,
		}
		var restart time.Duration // the data-plane pod's replacement
		for _, p := range byNode[n.Name] {
			evict, ds, blocker := classify(p, spec)
			switch {
			case ds:
				np.DaemonSetPods = append(np.DaemonSetPods, p.Namespace+"/"+p.Name)
				if c := metav1.GetControllerOf(&p); c != nil && spec.RestartDaemonSet == p.Namespace+"/"+c.Name {
					restart = max(restart, time.Duration(grace(&p))*time.Second)
				}
			case blocker != nil && !evict:
				np.Blockers = append(np.Blockers, *blocker)
				plan.Blocked = true
			case evict:
				ref := PodRef{Namespace: p.Namespace, Name: p.Name, Owner: owner(&p), GracePeriod: grace(&p)}
				np.Evict = append(np.Evict, ref)
				// A pod whose PDB allows disruptions now is evictable; the
				// server-side dry run checks the others.
				if pdb := matchingPDB(&p, budgets); pdb != nil && pdb.Status.DisruptionsAllowed < 1 {
					dryRuns = append(dryRuns, dryRun{node: len(plan.Nodes), pod: ref, pdb: pdb})
				}
			}
		}
		var longest int64
		for _, e := range np.Evict {
			longest = max(longest, e.GracePeriod)
		}
		np.Estimate = time.Duration(longest)*time.Second + restart + overheadOnNode
		plan.Nodes = append(plan.Nodes, np)
	}
	for _, b := range predictPDBBlockers(ctx, cs, dryRuns) {
		plan.Nodes[b.node].Blockers = append(plan.Nodes[b.node].Blockers, b.blocker)
	}
	plan.Batches = batches(plan.Nodes, spec, plan.BatchSize)
	for bi, names := range plan.Batches {
		var longest time.Duration
		for _, name := range names {
			for i := range plan.Nodes {
				if plan.Nodes[i].Name == name {
					plan.Nodes[i].Batch = bi
					plan.Nodes[i].Canary = spec.Canary > 0 && bi == 0
					longest = max(longest, plan.Nodes[i].Estimate)
				}
			}
		}
		// A batch's nodes run side by side: the batch takes as long as its
		// slowest node, times the rounds its concurrency needs.
		rounds := (len(names) + plan.BatchSize - 1) / plan.BatchSize
		plan.Estimate += longest * time.Duration(rounds)
	}
	return plan, nil
}

func selectNodes(ctx context.Context, cs kubernetes.Interface, spec Spec) ([]corev1.Node, error) {
	if len(spec.Nodes) > 0 {
		var out []corev1.Node
		for _, name := range spec.Nodes {
			n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil, &SpecError{"--nodes", fmt.Sprintf("node %q not found", name)}
			}
			if err != nil {
				return nil, fmt.Errorf("reading node %s: %w", name, err)
			}
			out = append(out, *n)
		}
		return out, nil
	}
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: spec.Selector})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	if len(list.Items) == 0 {
		return nil, &SpecError{"--selector", fmt.Sprintf("no node matches %q", spec.Selector)}
	}
	return list.Items, nil
}

func listPods(ctx context.Context, cs kubernetes.Interface) ([]corev1.Pod, error) {
	var pods []corev1.Pod
	p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
	})
	p.PageSize = 500
	err := p.EachListItem(ctx, metav1.ListOptions{}, func(obj runtime.Object) error {
		pods = append(pods, *obj.(*corev1.Pod))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	return pods, nil
}

func orderNodes(nodes []corev1.Node, order string) {
	slices.SortStableFunc(nodes, func(a, b corev1.Node) int {
		switch order {
		case OrderZone:
			if c := strings.Compare(a.Labels[corev1.LabelTopologyZone], b.Labels[corev1.LabelTopologyZone]); c != 0 {
				return c
			}
		case OrderControlPlaneLast:
			if ca, cb := isControlPlane(&a), isControlPlane(&b); ca != cb {
				if ca {
					return 1
				}
				return -1
			}
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// batches groups ordered nodes: the canary nodes alone first, then chunks
// of the batch size; with --order zone a batch never spans two zones.
func batches(nodes []NodePlan, spec Spec, size int) [][]string {
	var out [][]string
	rest := nodes
	if spec.Canary > 0 {
		n := min(spec.Canary, len(rest))
		var canary []string
		for _, np := range rest[:n] {
			canary = append(canary, np.Name)
		}
		out = append(out, canary)
		rest = rest[n:]
	}
	var cur []string
	curZone := ""
	for _, np := range rest {
		if len(cur) == size || (spec.Order == OrderZone && len(cur) > 0 && np.Zone != curZone) {
			out = append(out, cur)
			cur = nil
		}
		cur = append(cur, np.Name)
		curZone = np.Zone
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// classify mirrors kubectl drain's filters: DaemonSet and mirror pods stay,
// finished pods go, unmanaged pods and emptyDir data block unless allowed.
func classify(p corev1.Pod, spec Spec) (evict, daemonSet bool, blocker *Blocker) {
	ref := p.Namespace + "/" + p.Name
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false, false, nil
	}
	if p.DeletionTimestamp != nil {
		return false, false, nil
	}
	ctrl := metav1.GetControllerOf(&p)
	if ctrl != nil && ctrl.Kind == "DaemonSet" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
		return false, true, nil
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return true, false, nil
	}
	if ctrl == nil {
		b := &Blocker{Pod: ref, Kind: BlockUnmanaged, Detail: "Non managed pod exists: no ReplicationController, ReplicaSet, Job, DaemonSet or StatefulSet owns it; an eviction would delete it for good (--force deletes it)"}
		return spec.Force, false, b
	}
	for _, v := range p.Spec.Volumes {
		if v.EmptyDir != nil {
			b := &Blocker{Pod: ref, Kind: BlockEmptyDir, Detail: fmt.Sprintf("emptyDir volume %q: its data is lost on eviction (--delete-emptydir-data allows it)", v.Name)}
			return spec.DeleteEmptyDirData, false, b
		}
	}
	return true, false, nil
}

type dryRun struct {
	node int
	pod  PodRef
	pdb  *policyv1.PodDisruptionBudget
}

type predicted struct {
	node    int
	blocker Blocker
}

// predictPDBBlockers dry-runs the eviction of the pods whose PDB allows no
// disruption now and reports the refusals.
func predictPDBBlockers(ctx context.Context, cs kubernetes.Interface, runs []dryRun) []predicted {
	var (
		mu  sync.Mutex
		out []predicted
		wg  sync.WaitGroup
		sem = make(chan struct{}, 16)
	)
	for _, r := range runs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			err := cs.PolicyV1().Evictions(r.pod.Namespace).Evict(ctx, &policyv1.Eviction{
				ObjectMeta:    metav1.ObjectMeta{Name: r.pod.Name, Namespace: r.pod.Namespace},
				DeleteOptions: &metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}},
			})
			if err == nil || apierrors.IsNotFound(err) {
				return
			}
			pdbRef := r.pdb.Namespace + "/" + r.pdb.Name
			b := Blocker{Pod: r.pod.String(), Kind: BlockDryRun, PDB: pdbRef, Detail: err.Error()}
			if apierrors.IsTooManyRequests(err) {
				b.Kind = BlockPDB
				b.Detail = fmt.Sprintf("PodDisruptionBudget %s allows %d disruptions now (%d healthy, %d desired)",
					pdbRef, r.pdb.Status.DisruptionsAllowed, r.pdb.Status.CurrentHealthy, r.pdb.Status.DesiredHealthy)
				if r.pdb.Status.ExpectedPods > 0 && r.pdb.Status.DesiredHealthy >= r.pdb.Status.ExpectedPods {
					b.Kind = BlockPDBNever
					b.Detail = fmt.Sprintf("PodDisruptionBudget %s can never allow a disruption: it wants %d healthy of %d pods",
						pdbRef, r.pdb.Status.DesiredHealthy, r.pdb.Status.ExpectedPods)
				}
			}
			mu.Lock()
			out = append(out, predicted{node: r.node, blocker: b})
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b predicted) int { return strings.Compare(a.blocker.Pod, b.blocker.Pod) })
	return out
}

func matchingPDB(p *corev1.Pod, pdbs []*policyv1.PodDisruptionBudget) *policyv1.PodDisruptionBudget {
	for _, pdb := range pdbs {
		if pdb.Namespace != p.Namespace || pdb.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() {
			continue
		}
		if sel.Matches(labels.Set(p.Labels)) {
			return pdb
		}
	}
	return nil
}

func owner(p *corev1.Pod) string {
	if c := metav1.GetControllerOf(p); c != nil {
		return c.Kind + "/" + c.Name
	}
	return ""
}

func grace(p *corev1.Pod) int64 {
	if p.Spec.TerminationGracePeriodSeconds != nil {
		return *p.Spec.TerminationGracePeriodSeconds
	}
	return corev1.DefaultTerminationGracePeriodSeconds
}

func internalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

func isControlPlane(n *corev1.Node) bool {
	_, cp := n.Labels["node-role.kubernetes.io/control-plane"]
	_, master := n.Labels["node-role.kubernetes.io/master"]
	return cp || master
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

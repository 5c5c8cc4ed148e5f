package roll

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/pager"

	"github.com/hitless-dev/hitless/internal/kube/eviction"
	knode "github.com/hitless-dev/hitless/internal/kube/node"
)

// Kinds of drain blockers.
const (
	BlockUnmanaged = eviction.BlockUnmanaged
	BlockEmptyDir  = eviction.BlockEmptyDir
	BlockPDB       = eviction.BlockPDB
	BlockPDBNever  = eviction.BlockPDBNever
	BlockDryRun    = eviction.BlockDryRun
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
type Blocker = eviction.Blocker

// MakePlan selects and orders the nodes, lists what each drain evicts and
// predicts blockers with server-side dry-run evictions; its estimate counts
// the grace period of the DaemonSet pods the actions replace. It changes
// nothing.
func MakePlan(ctx context.Context, cs kubernetes.Interface, spec Spec, actions []Action) (*Plan, error) {
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
	pl := planner{spec: spec, budgets: eviction.IndexBudgets(budgets), restarts: map[string]bool{}}
	for _, a := range actions {
		if r, ok := a.(DaemonSetRestarter); ok {
			pl.restarts[r.RestartsDaemonSet()] = true
		}
	}
	plan := &Plan{BatchSize: spec.BatchSize(len(nodes))}
	for i := range nodes {
		np, blocked := pl.node(&nodes[i], byNode[nodes[i].Name], len(plan.Nodes))
		plan.Blocked = plan.Blocked || blocked
		plan.Nodes = append(plan.Nodes, np)
	}
	for _, b := range predictPDBBlockers(ctx, cs, pl.dryRuns) {
		plan.Nodes[b.node].Blockers = append(plan.Nodes[b.node].Blockers, b.blocker)
	}
	plan.Batches = batches(plan.Nodes, spec, plan.BatchSize)
	assignBatches(plan, spec)
	stuck, err := noRoom(ctx, cs, plan, byNode, pl.budgets)
	if err != nil {
		return nil, err
	}
	for _, b := range stuck {
		plan.Nodes[b.node].Blockers = append(plan.Nodes[b.node].Blockers, b.blocker)
		plan.Blocked = true
	}
	return plan, nil
}

// planner plans one node after the other.
type planner struct {
	spec     Spec
	budgets  eviction.Budgets
	restarts map[string]bool // DaemonSets (namespace/name) the actions replace
	dryRuns  []dryRun
}

// node plans the drain of n, the index-th node of the plan, holding pods;
// blocked is true when a pod blocks it.
func (pl *planner) node(n *corev1.Node, pods []corev1.Pod, index int) (np NodePlan, blocked bool) {
	np = NodePlan{
		Name:         n.Name,
		InternalIP:   knode.InternalIP(n),
		Zone:         n.Labels[corev1.LabelTopologyZone],
		ControlPlane: knode.ControlPlane(n),
		Ready:        knode.Ready(n),
		Cordoned:     n.Spec.Unschedulable,
	}
	var restart time.Duration // the data-plane pod's replacement
	for _, p := range pods {
		d := eviction.Classify(&p, pl.spec.evictionOptions())
		switch {
		case d.DaemonSet:
			np.DaemonSetPods = append(np.DaemonSetPods, p.Namespace+"/"+p.Name)
			if c := metav1.GetControllerOf(&p); c != nil && pl.restarts[p.Namespace+"/"+c.Name] {
				restart = max(restart, time.Duration(grace(&p))*time.Second)
			}
		case d.Blocker != nil && !d.Evict:
			np.Blockers = append(np.Blockers, *d.Blocker)
			blocked = true
		case d.Evict:
			ref := PodRef{Namespace: p.Namespace, Name: p.Name, Owner: owner(&p), GracePeriod: grace(&p)}
			np.Evict = append(np.Evict, ref)
			// A pod whose PDB allows disruptions now is evictable; the
			// server-side dry run checks the others.
			if bs := pl.budgets.Of(&p); len(bs) > 0 && bs[0].Status.DisruptionsAllowed < 1 {
				pl.dryRuns = append(pl.dryRuns, dryRun{node: index, pod: ref, pdb: bs[0]})
			}
		}
	}
	var longest int64
	for _, e := range np.Evict {
		longest = max(longest, e.GracePeriod)
	}
	np.Estimate = time.Duration(longest)*time.Second + restart + overheadOnNode
	return np, blocked
}

// assignBatches numbers each node's batch and estimates the whole roll: a
// batch's nodes run side by side, so a batch takes as long as its slowest
// node, times the rounds its concurrency needs.
func assignBatches(plan *Plan, spec Spec) {
	index := make(map[string]int, len(plan.Nodes))
	for i, n := range plan.Nodes {
		index[n.Name] = i
	}
	for bi, names := range plan.Batches {
		var longest time.Duration
		for _, name := range names {
			n := &plan.Nodes[index[name]]
			n.Batch = bi
			n.Canary = spec.Canary > 0 && bi == 0
			longest = max(longest, n.Estimate)
		}
		rounds := (len(names) + plan.BatchSize - 1) / plan.BatchSize
		plan.Estimate += longest * time.Duration(rounds)
	}
}

func selectNodes(ctx context.Context, cs kubernetes.Interface, spec Spec) ([]corev1.Node, error) {
	if len(spec.Nodes) > 0 {
		var out []corev1.Node
		for _, name := range spec.Nodes {
			n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil, &SpecError{Field: "nodes", Msg: fmt.Sprintf("node %q not found", name)}
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
		return nil, &SpecError{Field: "selector", Msg: fmt.Sprintf("no node matches %q", spec.Selector)}
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
			if ca, cb := knode.ControlPlane(&a), knode.ControlPlane(&b); ca != cb {
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
	pods := make([]*corev1.Pod, len(runs))
	for i, r := range runs {
		pods[i] = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: r.pod.Namespace, Name: r.pod.Name}}
	}
	var out []predicted
	for i, err := range eviction.DryRun(ctx, cs, pods, 16) {
		if err == nil || apierrors.IsNotFound(err) {
			continue
		}
		r := runs[i]
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
		out = append(out, predicted{node: r.node, blocker: b})
	}
	slices.SortFunc(out, func(a, b predicted) int { return strings.Compare(a.blocker.Pod, b.blocker.Pod) })
	return out
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

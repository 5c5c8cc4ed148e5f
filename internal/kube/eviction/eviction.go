package eviction

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/kubectl/pkg/drain"
)

// Kinds of drain blockers.
const (
	BlockUnmanaged = "unmanaged" // no controller that recreates it: eviction would lose it
	BlockEmptyDir  = "emptydir"  // local data lost on eviction
	BlockPDB       = "pdb"       // a PDB allows no disruption now
	BlockPDBNever  = "pdb-never" // a PDB can never allow one
	BlockDryRun    = "eviction"  // the dry-run eviction failed otherwise
)

// UnmanagedDetail is what a blocked unmanaged pod is told, in seed 003's words.
const UnmanagedDetail = "Non managed pod exists: no ReplicationController, ReplicaSet, Job, DaemonSet or StatefulSet owns it; an eviction would delete it for good (`force` deletes it)"

// controllerKinds recreate a pod elsewhere when it is evicted (or, for a
// DaemonSet, the drain leaves it alone).
var controllerKinds = map[string]bool{"ReplicationController": true, "ReplicaSet": true, "Job": true, "DaemonSet": true, "StatefulSet": true}

// Blocker is why a pod's eviction is predicted to block or lose data.
type Blocker struct {
	Pod    string `json:"pod"`
	Kind   string `json:"kind"`
	PDB    string `json:"pdb,omitempty"`
	Detail string `json:"detail"`
}

// Managed reports whether a controller that recreates the pod controls it.
func Managed(p *corev1.Pod) bool {
	c := metav1.GetControllerOf(p)
	return c != nil && controllerKinds[c.Kind]
}

// DaemonSetPod reports whether a DaemonSet controls the pod.
func DaemonSetPod(p *corev1.Pod) bool {
	c := metav1.GetControllerOf(p)
	return c != nil && c.Kind == "DaemonSet"
}

// Mirror reports whether the pod is a static pod's mirror.
func Mirror(p *corev1.Pod) bool {
	_, ok := p.Annotations[corev1.MirrorPodAnnotationKey]
	return ok
}

// Finished reports whether the pod has ended for good.
func Finished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// Options are what a drain is allowed to lose.
type Options struct {
	// Force evicts unmanaged pods, which nothing recreates.
	Force bool
	// DeleteEmptyDirData evicts pods with emptyDir volumes.
	DeleteEmptyDirData bool
}

// Decision is what a drain does with one pod.
type Decision struct {
	// Evict is true when the drain evicts the pod.
	Evict bool
	// DaemonSet is true for a DaemonSet's pod, which the drain leaves.
	DaemonSet bool
	// Blocker is set when the pod blocks the drain or loses something by
	// it; with Evict it is allowed by Options.
	Blocker *Blocker
}

// Classify decides what a drain does with p, as kubectl drain's filters
// do but with Managed's rule: DaemonSet and mirror pods stay, finished
// pods go, unmanaged pods and emptyDir data block unless allowed.
func Classify(p *corev1.Pod, opts Options) Decision {
	ref := p.Namespace + "/" + p.Name
	switch {
	case Mirror(p), p.DeletionTimestamp != nil:
		return Decision{}
	case DaemonSetPod(p) && !Finished(p):
		return Decision{DaemonSet: true}
	case Finished(p):
		return Decision{Evict: true}
	case !Managed(p):
		return Decision{Evict: opts.Force, Blocker: &Blocker{Pod: ref, Kind: BlockUnmanaged, Detail: UnmanagedDetail}}
	}
	for _, v := range p.Spec.Volumes {
		if v.EmptyDir != nil {
			b := &Blocker{Pod: ref, Kind: BlockEmptyDir, Detail: fmt.Sprintf("emptyDir volume %q: its data is lost on eviction (`deleteEmptyDirData` allows it)", v.Name)}
			return Decision{Evict: opts.DeleteEmptyDirData, Blocker: b}
		}
	}
	return Decision{Evict: true}
}

// Filter is a kubectl drain filter applying Managed's rule: a pod that
// some other controller owns is refused as unmanaged unless forced
// (kubectl's own filter accepts any controller).
func Filter(opts Options) drain.PodFilter {
	return func(p corev1.Pod) drain.PodDeleteStatus {
		if opts.Force || Mirror(&p) || Finished(&p) || p.DeletionTimestamp != nil || Managed(&p) || metav1.GetControllerOf(&p) == nil {
			// Pods without any controller are kubectl's own unmanaged
			// filter's to refuse, with its message.
			return drain.MakePodDeleteStatusOkay()
		}
		return drain.MakePodDeleteStatusWithError(fmt.Sprintf("pod %s/%s: %s", p.Namespace, p.Name, UnmanagedDetail))
	}
}

// Pinned says why p can run on one node only, or "": bound by nodeName
// without a controller, a hostname nodeSelector, a required node affinity
// only one node satisfies, or a claim on a volume of one node (localPV,
// from LocalVolumes). DaemonSet pods are pinned by design: callers leave
// them out.
func Pinned(p *corev1.Pod, nodes []corev1.Node, localPV map[string]string) string {
	if !Managed(p) {
		return "is bound to node " + p.Spec.NodeName + " by nodeName, without a controller"
	}
	if h := p.Spec.NodeSelector[corev1.LabelHostname]; h != "" {
		return "has nodeSelector " + corev1.LabelHostname + "=" + h
	}
	if a := p.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		if match := matchingNodes(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution, nodes); len(match) == 1 {
			return "has a required node affinity only node " + match[0] + " satisfies"
		}
	}
	for _, v := range p.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		if node, ok := localPV[p.Namespace+"/"+v.PersistentVolumeClaim.ClaimName]; ok {
			return "uses claim " + v.PersistentVolumeClaim.ClaimName + " bound to a local volume on node " + node
		}
	}
	return ""
}

// LocalVolumes maps namespace/claim to the one node its bound
// PersistentVolume is reachable from, for the volumes of one node.
func LocalVolumes(pvs []corev1.PersistentVolume, nodes []corev1.Node) map[string]string {
	out := map[string]string{}
	for i := range pvs {
		pv := &pvs[i]
		if pv.Spec.ClaimRef == nil || pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
			continue
		}
		match := matchingNodes(pv.Spec.NodeAffinity.Required, nodes)
		if len(match) == 1 && (pv.Spec.Local != nil || pv.Spec.HostPath != nil || len(nodes) > 1) {
			out[pv.Spec.ClaimRef.Namespace+"/"+pv.Spec.ClaimRef.Name] = match[0]
		}
	}
	return out
}

func matchingNodes(term *corev1.NodeSelector, nodes []corev1.Node) []string {
	sel, err := nodeaffinity.NewNodeSelector(term)
	if err != nil {
		return nil
	}
	var match []string
	for i := range nodes {
		if sel.Match(&nodes[i]) {
			match = append(match, nodes[i].Name)
		}
	}
	return match
}

// Budgets indexes PodDisruptionBudgets by namespace, selectors parsed once.
type Budgets struct {
	byNS map[string][]budget
}

type budget struct {
	pdb *policyv1.PodDisruptionBudget
	sel labels.Selector
}

// IndexBudgets indexes pdbs; a budget without a usable selector covers
// no pod.
func IndexBudgets(pdbs []*policyv1.PodDisruptionBudget) Budgets {
	b := Budgets{byNS: map[string][]budget{}}
	for _, p := range pdbs {
		if p.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			continue
		}
		b.byNS[p.Namespace] = append(b.byNS[p.Namespace], budget{pdb: p, sel: sel})
	}
	return b
}

// Of returns the budgets covering p.
func (b Budgets) Of(p *corev1.Pod) []*policyv1.PodDisruptionBudget {
	var out []*policyv1.PodDisruptionBudget
	set := labels.Set(p.Labels)
	for _, bd := range b.byNS[p.Namespace] {
		if bd.sel.Matches(set) {
			out = append(out, bd.pdb)
		}
	}
	return out
}

// Covering returns the first of pdbs covering p, or nil.
func Covering(p *corev1.Pod, pdbs []*policyv1.PodDisruptionBudget) *policyv1.PodDisruptionBudget {
	if bs := IndexBudgets(pdbs).Of(p); len(bs) > 0 {
		return bs[0]
	}
	return nil
}

// DryRun asks the API server to evict each pod without doing it, parallel
// at a time, and returns each answer in order: nil when it would be
// evicted (or is gone), else the refusal (429 from a budget).
func DryRun(ctx context.Context, cs kubernetes.Interface, pods []*corev1.Pod, parallel int) []error {
	out := make([]error, len(pods))
	sem := make(chan struct{}, max(1, parallel))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = cs.PolicyV1().Evictions(p.Namespace).Evict(ctx, &policyv1.Eviction{
				ObjectMeta:    metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
				DeleteOptions: &metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}},
			})
		})
	}
	wg.Wait()
	return out
}

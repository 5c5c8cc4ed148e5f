package catalog

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/version"
	nodeutil "k8s.io/component-helpers/node/util"
	resourcehelper "k8s.io/component-helpers/resource"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/kube/eviction"
	knode "github.com/hitless-dev/hitless/internal/kube/node"
)

func nodeChecks() []check.Check[*Input] {
	return []check.Check[*Input]{
		check.Func[*Input]{Name: "nodes.min-workers", Heading: "Enough schedulable workers to move workloads between", Fn: minWorkers},
		check.Func[*Input]{Name: "nodes.ready", Heading: "Every node is Ready", Fn: nodesReady},
		check.Func[*Input]{Name: "nodes.cordoned", Heading: "No node is cordoned by someone else", Fn: cordoned},
		check.Func[*Input]{Name: "nodes.version-skew", Heading: "Kubelet versions within the supported skew of the API server", Fn: versionSkew},
		check.Func[*Input]{Name: "capacity.pod-slots", Heading: "Every node has a free pod slot", Fn: podSlots},
		check.Func[*Input]{Name: "capacity.drain-fit", Heading: "The busiest node's pods fit on the other nodes", Fn: drainFit},
	}
}

func nodeRef(n string) string { return "Node/" + n }

func podRef(p *corev1.Pod) string { return "Pod/" + p.Namespace + "/" + p.Name }

func readyCondition(n *corev1.Node) *corev1.NodeCondition {
	_, c := nodeutil.GetNodeCondition(&n.Status, corev1.NodeReady)
	return c
}

// schedulable reports whether new pods can land on n: Ready, not
// cordoned, and without a NoSchedule or NoExecute taint.
func schedulable(n *corev1.Node) bool {
	if n.Spec.Unschedulable || !knode.Ready(n) {
		return false
	}
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			return false
		}
	}
	return true
}

func minWorkers(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("nodes"); err != nil {
		return check.Errored(err)
	}
	var workers []string
	for i := range in.Snap.Nodes {
		n := &in.Snap.Nodes[i]
		if !knode.ControlPlane(n) && schedulable(n) {
			workers = append(workers, n.Name)
		}
	}
	want := in.Profile.MinWorkers
	if len(workers) < want {
		return check.Outcome{Status: check.Fail,
			Message:     fmt.Sprintf("%d schedulable worker node(s), at least %d needed to drain one while the others carry its pods", len(workers), want),
			Objects:     refs(workers, nodeRef),
			Remediation: "add worker nodes, or uncordon and repair the ones that are not Ready"}
	}
	return check.Passed("%d schedulable worker nodes (at least %d needed)", len(workers), want)
}

func nodesReady(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("nodes"); err != nil {
		return check.Errored(err)
	}
	var bad, why []string
	for i := range in.Snap.Nodes {
		n := &in.Snap.Nodes[i]
		if knode.Ready(n) {
			continue
		}
		bad = append(bad, nodeRef(n.Name))
		reason := "no Ready condition"
		if c := readyCondition(n); c != nil {
			reason = fmt.Sprintf("Ready=%s (%s)", c.Status, c.Reason)
		}
		why = append(why, n.Name+": "+reason)
	}
	if len(bad) > 0 {
		return check.Outcome{Status: check.Fail, Message: fmt.Sprintf("%d of %d nodes not Ready: %s", len(bad), len(in.Snap.Nodes), summarize(why)),
			Objects: bad, Remediation: "repair the nodes (kubelet, container runtime, network) or remove them before the operation"}
	}
	return check.Passed("all %d nodes Ready", len(in.Snap.Nodes))
}

func cordoned(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("nodes"); err != nil {
		return check.Errored(err)
	}
	var bad []string
	for i := range in.Snap.Nodes {
		n := &in.Snap.Nodes[i]
		if n.Spec.Unschedulable && n.Annotations[roll.AnnotationOperation] == "" {
			bad = append(bad, nodeRef(n.Name))
		}
	}
	if len(bad) > 0 {
		return check.Outcome{Status: check.Warn,
			Message:     fmt.Sprintf("%d node(s) cordoned by someone else; hitless will leave them cordoned and they add no capacity", len(bad)),
			Objects:     bad,
			Remediation: "find out who cordoned them and why (kubectl describe node); uncordon them if the maintenance is over"}
	}
	return check.Passed("no node cordoned outside hitless")
}

// versionSkew applies Kubernetes' skew policy: a kubelet may be up to
// three minor versions older than the API server, never newer.
func versionSkew(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("nodes", "version"); err != nil {
		return check.Errored(err)
	}
	api, err := version.ParseGeneric(in.Snap.ServerVersion.GitVersion)
	if err != nil {
		return check.Errored(fmt.Errorf("parsing API server version %q: %w", in.Snap.ServerVersion.GitVersion, err))
	}
	var bad, why []string
	seen := map[string]bool{}
	for i := range in.Snap.Nodes {
		n := &in.Snap.Nodes[i]
		kv := n.Status.NodeInfo.KubeletVersion
		seen[kv] = true
		v, err := version.ParseGeneric(kv)
		if err != nil {
			bad = append(bad, nodeRef(n.Name))
			why = append(why, fmt.Sprintf("%s: unparsable kubelet version %q", n.Name, kv))
			continue
		}
		switch {
		case v.Major() != api.Major() || v.Minor() > api.Minor():
			bad = append(bad, nodeRef(n.Name))
			why = append(why, fmt.Sprintf("%s: kubelet %s is newer than the API server %s", n.Name, kv, api))
		case api.Minor()-v.Minor() > 3:
			bad = append(bad, nodeRef(n.Name))
			why = append(why, fmt.Sprintf("%s: kubelet %s is more than 3 minor versions older than the API server %s", n.Name, kv, api))
		}
	}
	if len(bad) > 0 {
		return check.Outcome{Status: check.Fail, Message: summarize(why), Objects: bad,
			Remediation: "upgrade the kubelets (or the API server) until every kubelet is at most three minor versions older than the API server"}
	}
	return check.Passed("API server %s, kubelets %s", api, strings.Join(slices.Sorted(maps.Keys(seen)), ", "))
}

// active reports whether p holds a pod slot and its requests on its node.
func active(p *corev1.Pod) bool {
	return p.Spec.NodeName != "" && !eviction.Finished(p)
}

// Slots is a node's active pods against its allocatable pods.
type Slots struct {
	Node        *corev1.Node
	Pods, Limit int64
}

// FullNodes returns the nodes without a free pod slot: as many active pods
// as the node's allocatable pods.
func FullNodes(nodes []corev1.Node, pods []corev1.Pod) []Slots {
	count := map[string]int64{}
	for i := range pods {
		if p := &pods[i]; active(p) {
			count[p.Spec.NodeName]++
		}
	}
	var out []Slots
	for i := range nodes {
		n := &nodes[i]
		if limit := n.Status.Allocatable.Pods().Value(); count[n.Name] >= limit {
			out = append(out, Slots{Node: n, Pods: count[n.Name], Limit: limit})
		}
	}
	return out
}

func podSlots(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("nodes", "pods"); err != nil {
		return check.Errored(err)
	}
	var bad, why []string
	for _, f := range FullNodes(in.Snap.Nodes, in.Snap.Pods) {
		bad = append(bad, nodeRef(f.Node.Name))
		why = append(why, fmt.Sprintf("%s: %d/%d pods", f.Node.Name, f.Pods, f.Limit))
	}
	if len(bad) > 0 {
		return check.Outcome{Status: check.Fail,
			Message:     "no free pod slot (an upgrade starts the new pod before the old one goes): " + summarize(why),
			Objects:     bad,
			Remediation: "move or scale down workloads on these nodes, or raise the kubelet's maxPods, so each has at least one free slot"}
	}
	return check.Passed("every node has at least one free pod slot")
}

type load struct {
	cpu, mem resource.Quantity
	pods     int64
}

// drainFit drains the busiest schedulable worker on paper: do its
// evictable pods' requests fit, first-fit decreasing, in what the other
// schedulable nodes have left? Node selectors and affinities are not
// modelled; drain.pinned-pods covers pods that can run on one node only.
func drainFit(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("nodes", "pods"); err != nil {
		return check.Errored(err)
	}
	used := map[string]*load{}
	evictable := map[string][]*corev1.Pod{}
	reqs := map[*corev1.Pod]corev1.ResourceList{} // evictable pods' requests, computed once
	evictCPU := map[string]int64{}                // by node, in millicores
	for i := range in.Snap.Pods {
		p := &in.Snap.Pods[i]
		if !active(p) {
			continue
		}
		l := used[p.Spec.NodeName]
		if l == nil {
			l = &load{}
			used[p.Spec.NodeName] = l
		}
		req := resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{})
		l.cpu.Add(req[corev1.ResourceCPU])
		l.mem.Add(req[corev1.ResourceMemory])
		l.pods++
		if !eviction.DaemonSetPod(p) && !eviction.Mirror(p) {
			evictable[p.Spec.NodeName] = append(evictable[p.Spec.NodeName], p)
			reqs[p] = req
			evictCPU[p.Spec.NodeName] += quantity(req, corev1.ResourceCPU, true)
		}
	}
	var nodes []*corev1.Node
	for i := range in.Snap.Nodes {
		if n := &in.Snap.Nodes[i]; schedulable(n) {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) < 2 {
		return check.Skipped("fewer than two schedulable nodes; nodes.min-workers reports it")
	}
	busiest := nodes[0]
	weight := func(n *corev1.Node) int64 { return evictCPU[n.Name]*1000 + int64(len(evictable[n.Name])) }
	for _, n := range nodes[1:] {
		if weight(n) > weight(busiest) {
			busiest = n
		}
	}
	type room struct {
		name          string
		cpu, mem, pod int64
	}
	var rooms []*room
	for _, n := range nodes {
		if n == busiest {
			continue
		}
		l := used[n.Name]
		if l == nil {
			l = &load{}
		}
		rooms = append(rooms, &room{name: n.Name,
			cpu: n.Status.Allocatable.Cpu().MilliValue() - l.cpu.MilliValue(),
			mem: n.Status.Allocatable.Memory().Value() - l.mem.Value(),
			pod: n.Status.Allocatable.Pods().Value() - l.pods})
	}
	pods := slices.Clone(evictable[busiest.Name])
	sort.SliceStable(pods, func(a, b int) bool {
		return quantity(reqs[pods[a]], corev1.ResourceCPU, true) > quantity(reqs[pods[b]], corev1.ResourceCPU, true)
	})
	var homeless []string
	for _, p := range pods {
		cpu, mem := quantity(reqs[p], corev1.ResourceCPU, true), quantity(reqs[p], corev1.ResourceMemory, false)
		placed := false
		for _, r := range rooms {
			if r.pod >= 1 && r.cpu >= cpu && r.mem >= mem {
				r.pod--
				r.cpu -= cpu
				r.mem -= mem
				placed = true
				break
			}
		}
		if !placed {
			homeless = append(homeless, podRef(p))
		}
	}
	if len(homeless) > 0 {
		return check.Outcome{Status: check.Fail,
			Message: fmt.Sprintf("draining the busiest node %s would leave %d of its %d pods without room on the other %d schedulable nodes (CPU, memory or pod slots)",
				busiest.Name, len(homeless), len(pods), len(rooms)),
			Objects:     append([]string{nodeRef(busiest.Name)}, homeless...),
			Remediation: "add capacity or lower requests before rolling nodes; a drain would leave these pods Pending"}
	}
	return check.Passed("the %d pods of the busiest node %s fit on the other %d schedulable nodes", len(pods), busiest.Name, len(rooms))
}

func refs(names []string, f func(string) string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = f(n)
	}
	return out
}

// summarize joins up to ten items and says how many more there are.
func summarize(items []string) string {
	const shown = 10
	if len(items) <= shown {
		return strings.Join(items, "; ")
	}
	return strings.Join(items[:shown], "; ") + fmt.Sprintf("; and %d more", len(items)-shown)
}

// quantity reads one resource of a list, in milli-units when milli.
func quantity(l corev1.ResourceList, name corev1.ResourceName, milli bool) int64 {
	q := l[name]
	if milli {
		return q.MilliValue()
	}
	return q.Value()
}

package catalog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/kube/eviction"
)

func drainChecks() []check.Check[*Input] {
	return []check.Check[*Input]{
		check.Func[*Input]{Name: "drain.unmanaged-pods", Heading: "No pod without a controller (a drain would delete it for good)", Fn: unmanagedPods},
		check.Func[*Input]{Name: "drain.pinned-pods", Heading: "No pod can run on one node only", Fn: pinnedPods},
		check.Func[*Input]{Name: "drain.pdb", Heading: "Every PodDisruptionBudget allows a disruption", Fn: pdbZero},
		check.Func[*Input]{Name: "drain.single-replica", Heading: "No workload runs a single replica", Fn: singleReplica},
		check.Func[*Input]{Name: "drain.dry-run", Heading: "Server-side dry-run evictions predict no blocked drain", Fn: dryRunEvictions},
	}
}

func unmanagedPods(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("pods"); err != nil {
		return check.Errored(err)
	}
	var objs, names []string
	for i := range in.Snap.Pods {
		p := &in.Snap.Pods[i]
		if eviction.Finished(p) || eviction.Mirror(p) || eviction.Managed(p) || p.DeletionTimestamp != nil {
			continue
		}
		objs = append(objs, podRef(p))
		names = append(names, fmt.Sprintf("%s in %s", p.Name, p.Namespace))
	}
	if len(objs) > 0 {
		return check.Outcome{Status: check.Fail,
			Message:     fmt.Sprintf("Non managed pod exists [%s]", strings.Join(names, ", ")),
			Objects:     objs,
			Remediation: "recreate these pods under a Deployment, StatefulSet or Job, or delete them; a drain cannot move a pod without a controller, it can only delete it"}
	}
	return check.Passed("every running pod has a controller")
}

// pinnedPods finds pods that can run on one node only: bound by nodeName
// without a controller, a hostname nodeSelector, a required node affinity
// that only one node satisfies, or a local PersistentVolume. DaemonSet
// pods are pinned by design and left out.
func pinnedPods(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("pods", "nodes", "persistentvolumes", "persistentvolumeclaims"); err != nil {
		return check.Errored(err)
	}
	localPV := eviction.LocalVolumes(in.Snap.PVs, in.Snap.Nodes)
	var objs, why []string
	for i := range in.Snap.Pods {
		p := &in.Snap.Pods[i]
		if !active(p) || eviction.Mirror(p) || eviction.DaemonSetPod(p) || p.DeletionTimestamp != nil {
			continue
		}
		reason := eviction.Pinned(p, in.Snap.Nodes, localPV)
		if reason == "" {
			continue
		}
		objs = append(objs, podRef(p))
		why = append(why, fmt.Sprintf("%s/%s %s", p.Namespace, p.Name, reason))
	}
	if len(objs) > 0 {
		return check.Outcome{Status: check.Fail,
			Message:     fmt.Sprintf("%d pod(s) can run on one node only, so draining that node leaves them Pending: %s", len(objs), summarize(why)),
			Objects:     objs,
			Remediation: "relax the node selector or affinity to more than one node, or plan a stop of these workloads while their node is drained"}
	}
	return check.Passed("no pod is pinned to a single node")
}

// never reports whether a PDB can never allow a disruption, whatever the
// pods' health: maxUnavailable 0 or 0%, or minAvailable at least the
// number of pods it expects.
func never(p *policyv1.PodDisruptionBudget) bool {
	if mu := p.Spec.MaxUnavailable; mu != nil {
		return mu.String() == "0" || mu.String() == "0%"
	}
	if ma := p.Spec.MinAvailable; ma != nil {
		if ma.String() == "100%" {
			return true
		}
		return p.Status.ExpectedPods > 0 && ma.IntValue() >= int(p.Status.ExpectedPods) && !strings.HasSuffix(ma.String(), "%")
	}
	return false
}

func pdbRef(p *policyv1.PodDisruptionBudget) string {
	return "PodDisruptionBudget/" + p.Namespace + "/" + p.Name
}

func pdbZero(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("poddisruptionbudgets"); err != nil {
		return check.Errored(err)
	}
	var objs, why []string
	for i := range in.Snap.PDBs {
		p := &in.Snap.PDBs[i]
		switch {
		case never(p):
			objs = append(objs, pdbRef(p))
			why = append(why, fmt.Sprintf("%s/%s can never allow a disruption (%s)", p.Namespace, p.Name, budgetSpec(p)))
		case p.Status.DisruptionsAllowed < 1 && p.Status.ExpectedPods > 0:
			objs = append(objs, pdbRef(p))
			why = append(why, fmt.Sprintf("%s/%s allows 0 disruptions now (%d of %d pods healthy, %d desired)",
				p.Namespace, p.Name, p.Status.CurrentHealthy, p.Status.ExpectedPods, p.Status.DesiredHealthy))
		}
	}
	if len(objs) > 0 {
		return check.Outcome{Status: check.Fail,
			Message:     fmt.Sprintf("%d PodDisruptionBudget(s) would block a drain: %s", len(objs), summarize(why)),
			Objects:     objs,
			Remediation: "restore the unhealthy pods, add replicas, or relax minAvailable/maxUnavailable so at least one pod may be evicted"}
	}
	return check.Passed("all %d PodDisruptionBudgets allow at least one disruption", len(in.Snap.PDBs))
}

func budgetSpec(p *policyv1.PodDisruptionBudget) string {
	if p.Spec.MaxUnavailable != nil {
		return "maxUnavailable " + p.Spec.MaxUnavailable.String()
	}
	if p.Spec.MinAvailable != nil {
		return fmt.Sprintf("minAvailable %s of %d pods", p.Spec.MinAvailable.String(), p.Status.ExpectedPods)
	}
	return "no limit"
}

func singleReplica(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("deployments", "statefulsets"); err != nil {
		return check.Errored(err)
	}
	var objs []string
	for i := range in.Snap.Deployments {
		d := &in.Snap.Deployments[i]
		if d.Spec.Replicas != nil && *d.Spec.Replicas == 1 {
			objs = append(objs, "Deployment/"+d.Namespace+"/"+d.Name)
		}
	}
	for i := range in.Snap.StatefulSets {
		s := &in.Snap.StatefulSets[i]
		if s.Spec.Replicas != nil && *s.Spec.Replicas == 1 {
			objs = append(objs, "StatefulSet/"+s.Namespace+"/"+s.Name)
		}
	}
	if len(objs) > 0 {
		return check.Outcome{Status: check.Warn,
			Message:     fmt.Sprintf("%d workload(s) run a single replica and will be down while their pod moves", len(objs)),
			Objects:     objs,
			Remediation: "scale to two or more replicas with a PodDisruptionBudget if the workload must stay up"}
	}
	return check.Passed("no single-replica Deployment or StatefulSet")
}

// dryRunEvictions predicts blocked drains with server-side dry-run
// evictions. The eviction API refuses a pod only because of its
// PodDisruptionBudgets, and a budget's answer is the same for all its
// pods, so one dry run per budget that allows no disruption (and one per
// pod covered by several budgets, which the API always refuses) predicts
// every pod on every node: the requests grow with the budgets, not with
// the nodes.
func dryRunEvictions(ctx context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("pods", "poddisruptionbudgets"); err != nil {
		return check.Errored(err)
	}
	pdbs := make([]*policyv1.PodDisruptionBudget, len(in.Snap.PDBs))
	for i := range in.Snap.PDBs {
		pdbs[i] = &in.Snap.PDBs[i]
	}
	idx := eviction.IndexBudgets(pdbs)
	type probe struct {
		pod    *corev1.Pod
		key    string
		result string // "" evictable, else why it is refused
		failed error
	}
	probes := map[string]*probe{} // budget key -> probe
	podsOf := map[string][]*corev1.Pod{}
	for i := range in.Snap.Pods {
		p := &in.Snap.Pods[i]
		if !active(p) || eviction.Mirror(p) || eviction.DaemonSetPod(p) || p.DeletionTimestamp != nil {
			continue
		}
		bs := idx.Of(p)
		if len(bs) == 0 {
			continue
		}
		key := p.Namespace + "/pod/" + p.Name
		if len(bs) == 1 {
			if bs[0].Status.DisruptionsAllowed >= 1 {
				continue
			}
			key = bs[0].Namespace + "/" + bs[0].Name
		}
		podsOf[key] = append(podsOf[key], p)
		if probes[key] == nil {
			probes[key] = &probe{pod: p, key: key}
		}
	}
	ordered := slices.Collect(maps.Values(probes))
	pods := make([]*corev1.Pod, len(ordered))
	for i, pr := range ordered {
		pods[i] = pr.pod
	}
	for i, err := range eviction.DryRun(ctx, in.Client, pods, 8) {
		pr := ordered[i]
		switch {
		case err == nil:
		case apierrors.IsTooManyRequests(err) || apierrors.IsInternalError(err):
			pr.result = apiMessage(err)
		case apierrors.IsNotFound(err):
		default:
			pr.failed = err
		}
	}
	blockedNodes := map[string][]string{}
	for key, pr := range probes {
		if pr.failed != nil {
			return check.Errored(fmt.Errorf("dry-run eviction of pod %s/%s: %w", pr.pod.Namespace, pr.pod.Name, pr.failed))
		}
		if pr.result == "" {
			continue
		}
		for _, p := range podsOf[key] {
			blockedNodes[p.Spec.NodeName] = append(blockedNodes[p.Spec.NodeName], fmt.Sprintf("%s/%s (%s)", p.Namespace, p.Name, pr.result))
		}
	}
	if len(blockedNodes) == 0 {
		return check.Passed("%d dry-run eviction(s): no drain would block", len(probes))
	}
	nodes := make([]string, 0, len(blockedNodes))
	for n := range blockedNodes {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	var why []string
	for _, n := range nodes {
		why = append(why, fmt.Sprintf("drain of %s would block on %s", n, strings.Join(blockedNodes[n], ", ")))
	}
	return check.Outcome{Status: check.Fail,
		Message:     fmt.Sprintf("%d node drain(s) would block: %s", len(nodes), summarize(why)),
		Objects:     refs(nodes, nodeRef),
		Remediation: "fix the PodDisruptionBudgets named (drain.pdb) before the operation; hitless roll would otherwise wait on them"}
}

func apiMessage(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		if m := st.Status().Message; m != "" {
			return m
		}
	}
	return err.Error()
}

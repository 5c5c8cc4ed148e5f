package openshift

import (
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	knode "github.com/hitless-dev/hitless/internal/kube/node"
)

// Phases of a live migration, as the network operator's conditions on
// Network.config report them.
const (
	phaseMTU    = "mtu"        // first machine-config roll: MTU prepared
	phaseTarget = "target-cni" // the target plugin deployed beside the original
	phaseRoll   = "roll"       // second roll: machines on the target
)

// network is the network operator's model. It returns the machine
// network configuration the pools must run: the migration target once
// spec.migration names one, the current type otherwise, and during a
// live migration first the MTU step, then the target.
func (c *clients) network(ctx context.Context, st *state) (string, error) {
	spec, _, _ := unstructured.NestedString(st.config.Object, "spec", "networkType")
	current, _, _ := unstructured.NestedString(st.config.Object, "status", "networkType")
	migration, _, _ := unstructured.NestedString(st.operator.Object, "spec", "migration", "networkType")
	_, live := st.config.GetAnnotations()[AnnotationLiveMigration]
	switch {
	case live && spec != current:
		return c.live(ctx, st, spec, current)
	case spec != current && migration == spec:
		return migration, c.offline(ctx, st, spec, current)
	case spec != current:
		return current, c.operatorStatus(ctx, "network", true, fmt.Sprintf("spec.networkType %s waits for spec.migration.networkType (offline) or the %s annotation (live)", spec, AnnotationLiveMigration))
	}
	if err := c.settled(ctx, current); err != nil {
		return "", err
	}
	if migration != "" {
		return migration, nil
	}
	return current, nil
}

// offline is the documented offline migration after spec.networkType
// changed: the target plugin is deployed and Multus restarted, then the
// cluster reports the new type once every node has rebooted.
func (c *clients) offline(ctx context.Context, st *state, target, original string) error {
	boots := map[string]string{}
	if rec := st.config.GetAnnotations()[annMigrationBoots]; rec != "" {
		if err := json.Unmarshal([]byte(rec), &boots); err != nil {
			return fmt.Errorf("reading %s: %w", annMigrationBoots, err)
		}
	}
	if len(boots) == 0 {
		for _, nodes := range st.nodes {
			for _, n := range nodes {
				boots[n.Name] = n.Status.NodeInfo.BootID
			}
		}
		b, _ := json.Marshal(boots)
		if _, err := c.merge(ctx, st.config, map[string]any{"metadata": map[string]any{"annotations": map[string]any{annMigrationBoots: string(b)}}}); err != nil {
			return err
		}
		if err := c.deploy(ctx, target); err != nil {
			return err
		}
		return c.operatorStatus(ctx, "network", true, "the cluster network is changing: reboot every node")
	}
	waiting := 0
	for _, nodes := range st.nodes {
		for _, n := range nodes {
			if n.Status.NodeInfo.BootID == boots[n.Name] || !knode.Ready(&n) {
				waiting++
			}
		}
	}
	if waiting > 0 {
		return c.operatorStatus(ctx, "network", true, fmt.Sprintf("waiting for %d node(s) to reboot", waiting))
	}
	if err := c.retire(ctx, original); err != nil {
		return err
	}
	return c.finish(ctx, st, target, map[string]any{annMigrationBoots: nil})
}

// live is the limited live migration: conditions on Network.config
// through two machine-config rolls, pausing while a pool is degraded.
func (c *clients) live(ctx context.Context, st *state, target, original string) (string, error) {
	phase := st.config.GetAnnotations()[annLivePhase]
	conds := map[string]bool{"NetworkTypeMigrationInProgress": true}
	setPhase := func(p string, mode string) (string, error) {
		if err := c.liveStatus(ctx, st.config, p, conds); err != nil {
			return "", err
		}
		return mode, nil
	}
	switch phase {
	case "":
		return setPhase(phaseMTU, modeMTU(original))
	case phaseMTU:
		if !c.poolsAt(st, modeMTU(original)) {
			return setPhase(phaseMTU, modeMTU(original))
		}
		conds["NetworkTypeMigrationMTUReady"] = true
		if err := c.deploy(ctx, target); err != nil {
			return "", err
		}
		return setPhase(phaseTarget, modeMTU(original))
	case phaseTarget:
		conds["NetworkTypeMigrationMTUReady"] = true
		ns, name := plugin(target)
		ok, err := c.rolledOut(ctx, ns, name)
		if err != nil || !ok {
			return modeMTU(original), err
		}
		conds["NetworkTypeMigrationTargetCNIAvailable"] = true
		return setPhase(phaseRoll, target)
	}
	conds["NetworkTypeMigrationMTUReady"], conds["NetworkTypeMigrationTargetCNIAvailable"] = true, true
	if !c.poolsAt(st, target) {
		return setPhase(phaseRoll, target)
	}
	if err := c.retire(ctx, original); err != nil {
		return "", err
	}
	for _, t := range []string{"NetworkTypeMigrationTargetCNIInUse", "NetworkTypeMigrationOriginalCNIPurged", "NetworkTypeMigrationCompleted"} {
		conds[t] = true
	}
	conds["NetworkTypeMigrationInProgress"] = false
	if err := c.liveStatus(ctx, st.config, phase, conds); err != nil {
		return "", err
	}
	return target, c.finish(ctx, st, target, map[string]any{annLivePhase: nil})
}

// poolsAt tells whether every machine runs mode's configuration, done.
func (c *clients) poolsAt(st *state, mode string) bool {
	for pool, nodes := range st.nodes {
		for _, n := range nodes {
			want := renderedName(pool, mode)
			if n.Annotations[annCurrent] != want || n.Annotations[annDesired] != want || n.Annotations[annState] != "Done" {
				return false
			}
		}
	}
	return true
}

func (c *clients) liveStatus(ctx context.Context, cfg *unstructured.Unstructured, phase string, conds map[string]bool) error {
	var list []any
	for _, t := range []string{"NetworkTypeMigrationInProgress", "NetworkTypeMigrationMTUReady", "NetworkTypeMigrationTargetCNIAvailable",
		"NetworkTypeMigrationTargetCNIInUse", "NetworkTypeMigrationOriginalCNIPurged", "NetworkTypeMigrationCompleted"} {
		list = append(list, cond(t, conds[t], ""))
	}
	old, _, _ := unstructured.NestedSlice(cfg.Object, "status", "conditions")
	list = keepTransitions(old, list).([]any)
	if sameJSON(old, list) && cfg.GetAnnotations()[annLivePhase] == phase {
		return nil
	}
	_, err := c.merge(ctx, cfg, map[string]any{"metadata": map[string]any{"annotations": map[string]any{annLivePhase: phase}},
		"status": map[string]any{"conditions": list}})
	return err
}

// finish reports the new network type, as the network operator does
// when the migration is complete.
func (c *clients) finish(ctx context.Context, st *state, target string, annotations map[string]any) error {
	cn, _, _ := unstructured.NestedSlice(st.config.Object, "spec", "clusterNetwork")
	if _, err := c.merge(ctx, st.config, map[string]any{"metadata": map[string]any{"annotations": annotations},
		"status": map[string]any{"networkType": target, "clusterNetwork": cn}}); err != nil {
		return err
	}
	if _, err := c.merge(ctx, st.operator, map[string]any{"spec": map[string]any{"defaultNetwork": map[string]any{"type": target}}}); err != nil {
		return err
	}
	return c.settled(ctx, target)
}

// settled reports the network operator Progressing while one of its
// DaemonSets (Multus, the plugin of network type t) is still rolling out,
// as the real operator does, and settled once they are all updated and
// available.
func (c *clients) settled(ctx context.Context, t string) error {
	ns, name := plugin(t)
	for _, ref := range [][2]string{{"openshift-multus", "multus"}, {ns, name}} {
		ds, err := c.cs.AppsV1().DaemonSets(ref[0]).Get(ctx, ref[1], metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading DaemonSet %s/%s: %w", ref[0], ref[1], err)
		}
		if msg := rollingOut(ds); msg != "" {
			return c.operatorStatus(ctx, "network", true, msg)
		}
	}
	return c.operatorStatus(ctx, "network", false, "")
}

// plugin is where a network type's DaemonSet lives.
func plugin(t string) (ns, name string) {
	if t == OVNKubernetes {
		return "openshift-ovn-kubernetes", "ovnkube-node"
	}
	return "openshift-sdn", "sdn"
}

// deploy starts the target plugin and restarts Multus on it.
func (c *clients) deploy(ctx context.Context, target string) error {
	ns, name := plugin(target)
	if err := c.ensureDaemonSet(ctx, ns, name); err != nil {
		return err
	}
	patch := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{"network.operator.openshift.io/network-type":%q}}}}}`, target)
	if _, err := c.cs.AppsV1().DaemonSets("openshift-multus").Patch(ctx, "multus", types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("restarting Multus: %w", err)
	}
	return nil
}

// rolledOut tells whether the DaemonSet ns/name runs everywhere, updated.
func (c *clients) rolledOut(ctx context.Context, ns, name string) (bool, error) {
	ds, err := c.cs.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("reading DaemonSet %s/%s: %w", ns, name, err)
	}
	return ds.Status.DesiredNumberScheduled > 0 && rollingOut(ds) == "", nil
}

// rollingOut says, as the network operator's status does, why the
// DaemonSet is not rolled out, or "" once every scheduled pod is updated
// and available.
func rollingOut(ds *appsv1.DaemonSet) string {
	ref, st := ds.Namespace+"/"+ds.Name, ds.Status
	switch {
	case st.ObservedGeneration < ds.Generation:
		return fmt.Sprintf("DaemonSet %q is being processed (generation %d)", ref, ds.Generation)
	case st.UpdatedNumberScheduled < st.DesiredNumberScheduled:
		return fmt.Sprintf("DaemonSet %q update is rolling out (%d out of %d updated)", ref, st.UpdatedNumberScheduled, st.DesiredNumberScheduled)
	case st.NumberAvailable < st.DesiredNumberScheduled:
		return fmt.Sprintf("DaemonSet %q is not available (awaiting %d nodes)", ref, st.DesiredNumberScheduled-st.NumberAvailable)
	}
	return ""
}

// retire deletes the original plugin's DaemonSet (its namespace is the
// user's clean-up step).
func (c *clients) retire(ctx context.Context, original string) error {
	ns, name := plugin(original)
	err := c.cs.AppsV1().DaemonSets(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting DaemonSet %s/%s: %w", ns, name, err)
	}
	return nil
}

// operatorStatus sets a managed ClusterOperator's conditions when they
// change: always Available (the model never takes an operator down),
// Progressing as given; Degraded is left as it is (a test or a person
// sets it).
func (c *clients) operatorStatus(ctx context.Context, name string, progressing bool, msg string) error {
	co, err := c.dyn.Resource(gvrClusterOperator()).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading ClusterOperator %s: %w", name, err)
	}
	old, _, _ := unstructured.NestedSlice(co.Object, "status", "conditions")
	degraded := cond("Degraded", false, "")
	for _, o := range old {
		if m, _ := o.(map[string]any); m["type"] == "Degraded" {
			degraded = m
		}
	}
	want := keepTransitions(old, []any{cond("Available", true, ""), cond("Progressing", progressing, msg), degraded}).([]any)
	if sameJSON(old, want) {
		return nil
	}
	co.Object["status"] = map[string]any{"conditions": want}
	if _, err := c.dyn.Resource(gvrClusterOperator()).UpdateStatus(ctx, co, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("updating ClusterOperator %s: %w", name, err)
	}
	return nil
}

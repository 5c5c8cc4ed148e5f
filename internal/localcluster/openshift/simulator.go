package openshift

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	knode "github.com/hitless-dev/hitless/internal/kube/node"
)

// Annotations the simulator keeps its own state in.
const (
	// annMigrationBoots records, on Network.config cluster, every node's
	// boot ID when an offline migration started: the network type
	// changes once every node has rebooted since.
	annMigrationBoots = "sim.hitless.dev/boot-ids"
	// annLivePhase is the live migration's phase.
	annLivePhase = "sim.hitless.dev/live-phase"
	// AnnotationLiveMigration starts a live migration (the documented
	// annotation on Network.config).
	AnnotationLiveMigration = "network.openshift.io/network-type-migration"
	// Reboot requests, as hitless's reboot action makes them; the local
	// cluster honours them.
	annRebootRequest = "hitless.dev/reboot-request"
	annRebootFrom    = "hitless.dev/reboot-from-boot-id"
)

// Simulate runs the model of the network and machine-config operators
// until ctx ends, reading the cluster every poll. Errors are logged and
// retried, as a controller does.
func Simulate(ctx context.Context, cfg *rest.Config, poll time.Duration) error {
	c, err := newClients(cfg)
	if err != nil {
		return err
	}
	log := klog.FromContext(ctx).WithName("openshift-simulator")
	for {
		if err := c.reconcile(ctx); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
			log.Error(err, "reconciling")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
	}
}

// state is one read of everything the model looks at.
type state struct {
	config, operator *unstructured.Unstructured
	nodes            map[string][]corev1.Node // by pool
}

func (c *clients) read(ctx context.Context) (*state, error) {
	cfg, err := c.dyn.Resource(gvrNetworkConfig()).Get(ctx, "cluster", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading Network.config cluster: %w", err)
	}
	op, err := c.dyn.Resource(gvrNetworkOperator()).Get(ctx, "cluster", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading Network.operator cluster: %w", err)
	}
	l, err := c.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	st := &state{config: cfg, operator: op, nodes: map[string][]corev1.Node{}}
	for _, n := range l.Items {
		switch {
		case hasLabel(n, LabelMaster):
			st.nodes["master"] = append(st.nodes["master"], n)
		case hasLabel(n, LabelWorker):
			st.nodes["worker"] = append(st.nodes["worker"], n)
		}
	}
	for _, v := range st.nodes {
		slices.SortFunc(v, func(a, b corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	}
	return st, nil
}

func hasLabel(n corev1.Node, l string) bool { _, ok := n.Labels[l]; return ok }

// reconcile is one pass of the model: the network operator decides what
// the machines must run, the machine-config operator rolls the pools
// there one machine at a time, then the network operator moves on.
func (c *clients) reconcile(ctx context.Context) error {
	st, err := c.read(ctx)
	if err != nil {
		return err
	}
	mode, err := c.network(ctx, st)
	if err != nil {
		return err
	}
	updating := false
	for _, pool := range []string{"master", "worker"} {
		done, err := c.machineConfig(ctx, st, pool, mode)
		if err != nil {
			return err
		}
		updating = updating || !done
	}
	msg := ""
	if updating {
		msg = "a MachineConfigPool is updating"
	}
	return c.operatorStatus(ctx, "machine-config", updating, msg)
}

// machineConfig rolls one pool to the rendered configuration of mode,
// one machine at a time: desiredConfig set, state Working, a reboot, then
// currentConfig = desiredConfig, state Done. A paused pool is left alone.
func (c *clients) machineConfig(ctx context.Context, st *state, pool, mode string) (bool, error) {
	p, err := c.dyn.Resource(gvrPool()).Get(ctx, pool, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("reading MachineConfigPool %s: %w", pool, err)
	}
	rendered, err := c.ensureRendered(ctx, pool, mode)
	if err != nil {
		return false, err
	}
	if cur, _, _ := unstructured.NestedString(p.Object, "spec", "configuration", "name"); cur != rendered {
		patch := map[string]any{"spec": map[string]any{"configuration": map[string]any{"name": rendered}}}
		if p, err = c.merge(ctx, p, patch); err != nil {
			return false, err
		}
	}
	paused, _, _ := unstructured.NestedBool(p.Object, "spec", "paused")
	nodes := st.nodes[pool]
	degraded := 0
	for _, n := range nodes {
		if n.Annotations[annState] == "Degraded" {
			degraded++
		}
	}
	if !paused && degraded == 0 {
		if err := c.step(ctx, nodes, rendered); err != nil {
			return false, err
		}
	}
	updated := 0
	for _, n := range nodes {
		if n.Annotations[annCurrent] == rendered && n.Annotations[annState] == "Done" && n.Annotations[annDesired] == rendered {
			updated++
		}
	}
	current, _, _ := unstructured.NestedString(p.Object, "status", "configuration", "name")
	if updated == len(nodes) {
		current = rendered
	}
	want := poolStatus(p.GetGeneration(), current, len(nodes), updated, degraded, paused)
	return updated == len(nodes), c.setPoolStatus(ctx, p, want)
}

// step moves the pool's update on by one node.
func (c *clients) step(ctx context.Context, nodes []corev1.Node, rendered string) error {
	for _, n := range nodes {
		if n.Annotations[annState] != "Working" {
			continue
		}
		if n.Status.NodeInfo.BootID == n.Annotations[annRebootFrom] || !knode.Ready(&n) {
			return nil // rebooting: one machine at a time
		}
		return c.annotateNode(ctx, n.Name, map[string]any{annCurrent: n.Annotations[annDesired], annState: "Done", annReason: ""})
	}
	for _, n := range nodes {
		if n.Annotations[annCurrent] == rendered && n.Annotations[annDesired] == rendered {
			continue
		}
		return c.annotateNode(ctx, n.Name, map[string]any{annDesired: rendered, annState: "Working",
			annRebootRequest: "mco-" + rendered + "-" + n.Name, annRebootFrom: n.Status.NodeInfo.BootID})
	}
	return nil
}

// setPoolStatus writes the pool's status when it changed (conditions
// keep their transition times when their status does not change).
func (c *clients) setPoolStatus(ctx context.Context, p *unstructured.Unstructured, want map[string]any) error {
	old, _, _ := unstructured.NestedMap(p.Object, "status")
	want["conditions"] = keepTransitions(old["conditions"], want["conditions"])
	if sameJSON(old, want) {
		return nil
	}
	p.Object["status"] = want
	_, err := c.dyn.Resource(gvrPool()).UpdateStatus(ctx, p, metav1.UpdateOptions{FieldManager: fieldManager})
	if err != nil {
		return fmt.Errorf("updating the status of MachineConfigPool %s: %w", p.GetName(), err)
	}
	return nil
}

func keepTransitions(oldConds, newConds any) any {
	olds, _ := oldConds.([]any)
	news, _ := newConds.([]any)
	for _, n := range news {
		nm, _ := n.(map[string]any)
		for _, o := range olds {
			om, _ := o.(map[string]any)
			if om["type"] == nm["type"] && om["status"] == nm["status"] {
				nm["lastTransitionTime"] = om["lastTransitionTime"]
			}
		}
	}
	return news
}

func sameJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func (c *clients) merge(ctx context.Context, u *unstructured.Unstructured, patch map[string]any) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(patch)
	if err != nil {
		return nil, err
	}
	gvr := gvrPool()
	if u.GetKind() == "Network" {
		gvr = gvrNetworkConfig()
		if strings.HasPrefix(u.GetAPIVersion(), "operator.") {
			gvr = gvrNetworkOperator()
		}
	}
	out, err := c.dyn.Resource(gvr).Patch(ctx, u.GetName(), types.MergePatchType, b, metav1.PatchOptions{FieldManager: fieldManager})
	if err != nil {
		return nil, fmt.Errorf("patching %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return out, nil
}

func (c *clients) mergeNode(ctx context.Context, node string, patch map[string]any) error {
	b, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	if _, err := c.cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, b, metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("patching node %s: %w", node, err)
	}
	return nil
}

package openshift

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/component/apply"
	"github.com/hitless-dev/hitless/internal/component/manifest"
)

// Network types.
const (
	OpenShiftSDN   = "OpenShiftSDN"
	OVNKubernetes  = "OVNKubernetes"
	LabelMaster    = "node-role.kubernetes.io/master"
	LabelWorker    = "node-role.kubernetes.io/worker"
	annCurrent     = "machineconfiguration.openshift.io/currentConfig"
	annDesired     = "machineconfiguration.openshift.io/desiredConfig"
	annState       = "machineconfiguration.openshift.io/state"
	annReason      = "machineconfiguration.openshift.io/reason"
	labelControl   = "node-role.kubernetes.io/control-plane"
	fieldManager   = "hitless-openshift-simulator"
	defaultMTU     = 1450
	clusterNetwork = "10.128.0.0/14"
	serviceNetwork = "172.30.0.0/16"
)

// The kinds the rehearsal uses.
func gvr(group, resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: group, Version: "v1", Resource: resource}
}

func gvrNetworkConfig() schema.GroupVersionResource { return gvr("config.openshift.io", "networks") }
func gvrClusterOperator() schema.GroupVersionResource {
	return gvr("config.openshift.io", "clusteroperators")
}
func gvrNetworkOperator() schema.GroupVersionResource {
	return gvr("operator.openshift.io", "networks")
}
func gvrPool() schema.GroupVersionResource {
	return gvr("machineconfiguration.openshift.io", "machineconfigpools")
}
func gvrMachineConfig() schema.GroupVersionResource {
	return gvr("machineconfiguration.openshift.io", "machineconfigs")
}

// Operators are the ClusterOperators of the rehearsal cluster; the
// simulator manages network and machine-config, the others stay as they
// are set (a test degrades one by hand).
func Operators() []string {
	return []string{"authentication", "dns", "ingress", "kube-apiserver", "machine-config", "network"}
}

// Install loads the OpenShift CRDs from crdDir (the real ones, from
// openshift/api) and creates the objects of an OpenShift SDN cluster:
// Network config and operator, ClusterOperators, master and worker
// MachineConfigPools with rendered MachineConfigs, node roles and
// machine-config annotations, and the sdn and multus DaemonSets.
func Install(ctx context.Context, cfg *rest.Config, crdDir string) error {
	if err := installCRDs(ctx, cfg, crdDir); err != nil {
		return err
	}
	c, err := newClients(cfg)
	if err != nil {
		return err
	}
	nodes, err := c.roles(ctx)
	if err != nil {
		return err
	}
	for _, pool := range []string{"master", "worker"} {
		rendered, err := c.ensureRendered(ctx, pool, OpenShiftSDN)
		if err != nil {
			return err
		}
		for _, n := range nodes[pool] {
			if err := c.annotateNode(ctx, n, map[string]any{annCurrent: rendered, annDesired: rendered, annState: "Done", annReason: ""}); err != nil {
				return err
			}
		}
		if err := c.createPool(ctx, pool, rendered, len(nodes[pool])); err != nil {
			return err
		}
	}
	if err := c.createNetworks(ctx); err != nil {
		return err
	}
	for _, name := range Operators() {
		if err := c.createOperator(ctx, name); err != nil {
			return err
		}
	}
	if err := c.ensureDaemonSet(ctx, "openshift-sdn", "sdn"); err != nil {
		return err
	}
	if err := c.ensureDaemonSet(ctx, "openshift-multus", "multus"); err != nil {
		return err
	}
	// An installed cluster is settled: its network DaemonSets run
	// everywhere before anything is asked of it.
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, ds := range [][2]string{{"openshift-sdn", "sdn"}, {"openshift-multus", "multus"}} {
			if ok, err := c.rolledOut(ctx, ds[0], ds[1]); err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	})
}

func installCRDs(ctx context.Context, cfg *rest.Config, dir string) error {
	if dir == "" {
		return fmt.Errorf("the OpenShift CRDs are needed: a directory of openshift/api's CRD manifests (ClusterOperator, Network config and operator, MachineConfigPool, MachineConfig)")
	}
	objs, err := manifest.ReadDir(os.DirFS(dir), ".")
	if err != nil {
		return fmt.Errorf("reading the OpenShift CRDs in %s: %w", dir, err)
	}
	a, err := apply.New(cfg)
	if err != nil {
		return err
	}
	if _, err := a.Apply(ctx, manifest.Unstructured(objs), apply.Options{Set: "openshift-crds", Wait: time.Minute}); err != nil {
		return fmt.Errorf("installing the OpenShift CRDs: %w", err)
	}
	return nil
}

// clients are what the rehearsal reads and writes.
type clients struct {
	cs  kubernetes.Interface
	dyn dynamic.Interface
}

func newClients(cfg *rest.Config) (*clients, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating a client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating a client: %w", err)
	}
	return &clients{cs: cs, dyn: dyn}, nil
}

// roles labels control-plane nodes masters and the others workers, and
// returns the nodes of each pool, sorted.
func (c *clients) roles(ctx context.Context) (map[string][]string, error) {
	l, err := c.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	out := map[string][]string{}
	for _, n := range l.Items {
		role, pool := LabelWorker, "worker"
		if _, cp := n.Labels[labelControl]; cp {
			role, pool = LabelMaster, "master"
		}
		if _, ok := n.Labels[role]; !ok {
			patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:""}}}`, role)
			if _, err := c.cs.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				return nil, fmt.Errorf("labelling node %s: %w", n.Name, err)
			}
		}
		out[pool] = append(out[pool], n.Name)
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out, nil
}

// renderedName names the rendered configuration of a pool for a machine
// network type ("rendered-worker-1a2b3c...").
func renderedName(pool, mode string) string {
	h := sha256.Sum256([]byte(pool + "/" + mode))
	return "rendered-" + pool + "-" + hex.EncodeToString(h[:16])
}

// ensureRendered creates the rendered MachineConfig of pool for mode:
// its ovs-configuration unit runs configure-ovs.sh with the network type,
// as the machine-config operator renders it.
func (c *clients) ensureRendered(ctx context.Context, pool, mode string) (string, error) {
	name := renderedName(pool, mode)
	arg := mode
	if mode == modeMTU(OpenShiftSDN) || mode == modeMTU(OVNKubernetes) {
		arg = mode[:len(mode)-len("+mtu")]
	}
	unit := fmt.Sprintf("[Unit]\nDescription=Configures OVS with proper host networking configuration\n[Service]\nType=oneshot\nExecStart=/usr/local/bin/configure-ovs.sh %s\n[Install]\nWantedBy=network-online.target\n", arg)
	mc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
		"metadata": map[string]any{"name": name, "labels": map[string]any{"machineconfiguration.openshift.io/role": pool},
			"annotations": map[string]any{"machineconfiguration.openshift.io/generated-by-controller-version": "hitless-simulator", "hitless.dev/machine-network": mode}},
		"spec": map[string]any{"config": map[string]any{"ignition": map[string]any{"version": "3.4.0"},
			"systemd": map[string]any{"units": []any{map[string]any{"name": "ovs-configuration.service", "enabled": true, "contents": unit}}}}},
	}}
	_, err := c.dyn.Resource(gvrMachineConfig()).Create(ctx, mc, metav1.CreateOptions{FieldManager: fieldManager})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("creating MachineConfig %s: %w", name, err)
	}
	return name, nil
}

func modeMTU(t string) string { return t + "+mtu" }

func (c *clients) annotateNode(ctx context.Context, node string, ann map[string]any) error {
	patch := map[string]any{"metadata": map[string]any{"annotations": ann}}
	return c.mergeNode(ctx, node, patch)
}

func (c *clients) createPool(ctx context.Context, pool, rendered string, machines int) error {
	role := LabelWorker
	if pool == "master" {
		role = LabelMaster
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfigPool",
		"metadata": map[string]any{"name": pool},
		"spec": map[string]any{
			"machineConfigSelector": map[string]any{"matchLabels": map[string]any{"machineconfiguration.openshift.io/role": pool}},
			"nodeSelector":          map[string]any{"matchLabels": map[string]any{role: ""}},
			"configuration":         map[string]any{"name": rendered},
			"paused":                false,
		},
	}}
	out, err := c.dyn.Resource(gvrPool()).Create(ctx, u, metav1.CreateOptions{FieldManager: fieldManager})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating MachineConfigPool %s: %w", pool, err)
	}
	out.Object["status"] = poolStatus(out.GetGeneration(), rendered, machines, machines, 0, false)
	if _, err := c.dyn.Resource(gvrPool()).UpdateStatus(ctx, out, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("setting the status of MachineConfigPool %s: %w", pool, err)
	}
	return nil
}

func poolStatus(generation int64, current string, machines, updated, degraded int, paused bool) map[string]any {
	done := updated == machines
	updating := !done && !paused
	return map[string]any{
		"observedGeneration": generation, "configuration": map[string]any{"name": current},
		"machineCount": int64(machines), "updatedMachineCount": int64(updated), "readyMachineCount": int64(updated),
		"unavailableMachineCount": int64(machines - updated), "degradedMachineCount": int64(degraded),
		"conditions": []any{
			cond("Updated", done, ""), cond("Updating", updating, ""), cond("Degraded", degraded > 0, ""),
			cond("NodeDegraded", degraded > 0, ""), cond("RenderDegraded", false, ""),
		},
	}
}

func cond(t string, status bool, msg string) map[string]any {
	s := "False"
	if status {
		s = "True"
	}
	return map[string]any{"type": t, "status": s, "reason": "AsExpected", "message": msg, "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}
}

func (c *clients) createNetworks(ctx context.Context) error {
	cn := []any{map[string]any{"cidr": clusterNetwork, "hostPrefix": int64(23)}}
	sn := []any{serviceNetwork}
	cfg := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "config.openshift.io/v1", "kind": "Network", "metadata": map[string]any{"name": "cluster"},
		"spec":   map[string]any{"clusterNetwork": cn, "serviceNetwork": sn, "networkType": OpenShiftSDN},
		"status": map[string]any{"clusterNetwork": cn, "serviceNetwork": sn, "networkType": OpenShiftSDN, "clusterNetworkMTU": int64(defaultMTU)},
	}}
	if _, err := c.dyn.Resource(gvrNetworkConfig()).Create(ctx, cfg, metav1.CreateOptions{FieldManager: fieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating Network.config.openshift.io cluster: %w", err)
	}
	op := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "operator.openshift.io/v1", "kind": "Network", "metadata": map[string]any{"name": "cluster"},
		"spec": map[string]any{"managementState": "Managed", "clusterNetwork": cn, "serviceNetwork": sn,
			"defaultNetwork": map[string]any{"type": OpenShiftSDN,
				"openshiftSDNConfig": map[string]any{"mode": "NetworkPolicy", "mtu": int64(defaultMTU), "vxlanPort": int64(4789)}}},
	}}
	if _, err := c.dyn.Resource(gvrNetworkOperator()).Create(ctx, op, metav1.CreateOptions{FieldManager: fieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating Network.operator.openshift.io cluster: %w", err)
	}
	return nil
}

func (c *clients) createOperator(ctx context.Context, name string) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "config.openshift.io/v1", "kind": "ClusterOperator", "metadata": map[string]any{"name": name}, "spec": map[string]any{}}}
	out, err := c.dyn.Resource(gvrClusterOperator()).Create(ctx, u, metav1.CreateOptions{FieldManager: fieldManager})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating ClusterOperator %s: %w", name, err)
	}
	out.Object["status"] = operatorStatus(true, false, "")
	if _, err := c.dyn.Resource(gvrClusterOperator()).UpdateStatus(ctx, out, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("setting the status of ClusterOperator %s: %w", name, err)
	}
	return nil
}

func operatorStatus(available, progressing bool, msg string) map[string]any {
	return map[string]any{"conditions": []any{
		cond("Available", available, ""), cond("Progressing", progressing, msg), cond("Degraded", false, ""),
	}}
}

// ensureDaemonSet creates a network DaemonSet on every node (host
// network, every taint tolerated), as the network operator deploys them.
func (c *clients) ensureDaemonSet(ctx context.Context, ns, name string) error {
	if _, err := c.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	labels := map[string]string{"app": name}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			// The network operator's DaemonSets roll 10% of the nodes at a time.
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromString("10%"))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{HostNetwork: true, Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					TerminationGracePeriodSeconds: ptr.To[int64](2),
					Containers:                    []corev1.Container{{Name: name, Image: "quay.io/openshift/origin-" + name + ":4.16"}}},
			},
		},
	}
	if _, err := c.cs.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating DaemonSet %s/%s: %w", ns, name, err)
	}
	return nil
}

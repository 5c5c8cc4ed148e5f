package lifecycle

import (
	"context"
	"fmt"
	"slices"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/check/catalog"
	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/component/apply"
)

// The stages of an install or upgrade, in order.
const (
	StageConfig    = "config"     // CRDs, namespaces, RBAC, configuration, custom resources
	StageWorkloads = "workloads"  // Deployments, StatefulSets, DaemonSets, Jobs
	StageDataPlane = "data-plane" // data-plane DaemonSets' pods, node by node
	StageAPI       = "api"        // webhooks and APIServices, once their servers run
	StagePrune     = "prune"      // objects the new revision no longer has
)

// Plan is what an operation will do.
type Plan struct {
	Component string        `json:"component"`
	Action    string        `json:"action"`
	Revision  int           `json:"revision"`
	Previous  int           `json:"previous,omitempty"`
	Source    string        `json:"source,omitempty"`
	Stages    []StagePlan   `json:"stages"`
	DataPlane []string      `json:"dataPlane,omitempty"`
	Changes   []ObjectDiff  `json:"changes,omitempty"`
	Groups    []string      `json:"nodeGroups,omitempty"`
	Objects   int           `json:"objects"`
	Prune     []string      `json:"prune,omitempty"`
	Delete    []DeleteGroup `json:"delete,omitempty"`
	// Outside lists objects in the component's namespaces that are not
	// in its inventory (uninstall refuses without --force-namespaces).
	Outside []string `json:"outside,omitempty"`
}

// StagePlan lists the objects of one stage.
type StagePlan struct {
	Name    string   `json:"name"`
	Objects []string `json:"objects"`
}

// DeleteGroup is one step of an uninstall, in order.
type DeleteGroup struct {
	Name    string   `json:"name"`
	Objects []string `json:"objects"`
}

// ObjectDiff is what applying one object changes (diff, dry runs).
type ObjectDiff struct {
	Object string `json:"object"`
	Action string `json:"action"` // created, configured, unchanged, deleted
	// Diff is a unified diff of the YAML, Secret values masked.
	Diff string `json:"diff,omitempty"`
}

var workloadKinds = map[schema.GroupKind]bool{
	{Group: "apps", Kind: "Deployment"}:  true,
	{Group: "apps", Kind: "StatefulSet"}: true,
	{Group: "apps", Kind: "DaemonSet"}:   true,
	{Group: "apps", Kind: "ReplicaSet"}:  true,
	{Group: "batch", Kind: "Job"}:        true,
	{Group: "batch", Kind: "CronJob"}:    true,
	{Group: "", Kind: "Pod"}:             true,
}

var apiKinds = map[schema.GroupKind]bool{
	{Group: "apiregistration.k8s.io", Kind: "APIService"}:                           true,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}:   true,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}: true,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicy"}:      true,
}

var rbacKinds = map[string]bool{"Role": true, "RoleBinding": true, "ClusterRole": true, "ClusterRoleBinding": true}

func gk(u *unstructured.Unstructured) schema.GroupKind { return u.GroupVersionKind().GroupKind() }

// stageOf says in which apply stage an object goes.
func stageOf(u *unstructured.Unstructured) string {
	switch {
	case apiKinds[gk(u)]:
		return StageAPI
	case workloadKinds[gk(u)]:
		return StageWorkloads
	}
	return StageConfig
}

func split(objs []*unstructured.Unstructured) map[string][]*unstructured.Unstructured {
	out := map[string][]*unstructured.Unstructured{}
	for _, o := range objs {
		out[stageOf(o)] = append(out[stageOf(o)], o)
	}
	return out
}

// customKinds returns the kinds the CRDs among objs define.
func customKinds(objs []*unstructured.Unstructured) map[schema.GroupKind]bool {
	out := map[schema.GroupKind]bool{}
	for k := range component.CRDKinds(objs) {
		out[k] = true
	}
	return out
}

// The uninstall order. Webhooks and APIServices go first: once the
// workloads are gone nothing would answer them, and a webhook that fails
// closed, or an APIService nobody serves, would block the deletions after
// it (the namespace controller waits on every API group).
var deleteOrder = []string{"webhooks and APIServices", "workloads", "custom resources", "custom resource definitions", "configuration", "RBAC", "namespaces", "cluster-scoped configuration"}

func deleteGroupOf(u *unstructured.Unstructured, crds map[schema.GroupKind]bool) int {
	switch {
	case apiKinds[gk(u)]:
		return 0
	case workloadKinds[gk(u)]:
		return 1
	case crds[gk(u)]:
		return 2
	case u.GetKind() == "CustomResourceDefinition":
		return 3
	case rbacKinds[u.GetKind()] && gk(u).Group == "rbac.authorization.k8s.io":
		return 5
	case u.GetKind() == "Namespace" && gk(u).Group == "":
		return 6
	case u.GetNamespace() == "":
		return 7
	}
	return 4
}

// deleteGroups orders objs for deletion.
func deleteGroups(objs []*unstructured.Unstructured) [][]*unstructured.Unstructured {
	crds := customKinds(objs)
	out := make([][]*unstructured.Unstructured, len(deleteOrder))
	for _, o := range objs {
		g := deleteGroupOf(o, crds)
		out[g] = append(out[g], o)
	}
	return out
}

func names(objs []*unstructured.Unstructured) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, apply.Name(o))
	}
	sort.Strings(out)
	return out
}

// dataPlanes returns the DaemonSets among objs that are rolled node by
// node: named with --data-plane, annotated hitless.dev/data-plane=true, or
// on the host network on every node (tolerating every NoSchedule taint).
func dataPlanes(objs []*unstructured.Unstructured, named []string) ([]string, error) {
	want := map[string]bool{}
	for _, n := range named {
		want[n] = true
	}
	var out []string
	for _, o := range objs {
		if gk(o) != (schema.GroupKind{Group: "apps", Kind: "DaemonSet"}) {
			continue
		}
		ref := o.GetNamespace() + "/" + o.GetName()
		var ds appsv1.DaemonSet
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &ds); err != nil {
			return nil, fmt.Errorf("reading DaemonSet %s: %w", ref, err)
		}
		if want[ref] || o.GetAnnotations()[AnnotationDataPlane] == "true" || (ds.Spec.Template.Spec.HostNetwork && everyNode(ds.Spec.Template.Spec.Tolerations)) {
			out = append(out, ref)
			delete(want, ref)
		}
	}
	for n := range want {
		return nil, &InputError{Field: "dataPlane", Msg: fmt.Sprintf("%s is not a DaemonSet of the component", n)}
	}
	sort.Strings(out)
	return out, nil
}

func everyNode(ts []corev1.Toleration) bool {
	for _, t := range ts {
		if t.Operator == corev1.TolerationOpExists && t.Key == "" && (t.Effect == "" || t.Effect == corev1.TaintEffectNoSchedule) {
			return true
		}
	}
	return false
}

// strategyWarnings names the workloads whose update strategy drops
// capacity: Recreate, or more than one pod down at a time.
func strategyWarnings(objs []*unstructured.Unstructured, dataPlane []string) []string {
	var out []string
	for _, o := range objs {
		switch gk(o) {
		case schema.GroupKind{Group: "apps", Kind: "Deployment"}:
			var d appsv1.Deployment
			if runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d) != nil {
				continue
			}
			replicas := 1
			if d.Spec.Replicas != nil {
				replicas = int(*d.Spec.Replicas)
			}
			if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
				out = append(out, fmt.Sprintf("Deployment %s/%s uses Recreate: all %d pod(s) stop before the new ones start", d.Namespace, d.Name, replicas))
				continue
			}
			down := 0
			if ru := d.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
				down, _ = intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, replicas, false)
			} else {
				down = replicas / 4 // the default 25%, rounded down
			}
			if down > 1 {
				out = append(out, fmt.Sprintf("Deployment %s/%s may take %d of %d pods down at once (maxUnavailable)", d.Namespace, d.Name, down, replicas))
			}
		case schema.GroupKind{Group: "apps", Kind: "StatefulSet"}:
			var s appsv1.StatefulSet
			if runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &s) != nil {
				continue
			}
			if s.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
				out = append(out, fmt.Sprintf("StatefulSet %s/%s updates on delete: its pods keep the old version until deleted", s.Namespace, s.Name))
			}
			if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil && ru.MaxUnavailable.IntValue() > 1 {
				out = append(out, fmt.Sprintf("StatefulSet %s/%s may take %s pods down at once", s.Namespace, s.Name, ru.MaxUnavailable.String()))
			}
		case schema.GroupKind{Group: "apps", Kind: "DaemonSet"}:
			ref := o.GetNamespace() + "/" + o.GetName()
			if slices.Contains(dataPlane, ref) {
				continue
			}
			mu, _, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "updateStrategy", "rollingUpdate", "maxUnavailable")
			if mu != nil && fmt.Sprint(mu) != "1" {
				out = append(out, fmt.Sprintf("DaemonSet %s updates %v nodes at once", ref, mu))
			}
		}
	}
	return out
}

// freeSlots returns the nodes with no free pod slot, by the preflight's
// own count (catalog.FullNodes): the drain of a node must have somewhere
// to put its pods, and every node must take the new version's pods (seed
// 000 asks for one free slot per node). Cordoned nodes take no pods and
// nodes not yet reporting their capacity are left out.
func freeSlots(ctx context.Context, cs kubernetes.Interface) ([]string, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "status.phase!=Succeeded,status.phase!=Failed"})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	var full []string
	for _, f := range catalog.FullNodes(nodes.Items, pods.Items) {
		if !f.Node.Spec.Unschedulable && f.Limit > 0 {
			full = append(full, fmt.Sprintf("%s (%d/%d pods)", f.Node.Name, f.Pods, f.Limit))
		}
	}
	return full, nil
}

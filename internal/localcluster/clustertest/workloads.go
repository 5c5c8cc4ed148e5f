package clustertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Workload tunes the pods the helpers create.
type Workload struct {
	// GracePeriod is the pods' terminationGracePeriodSeconds; the local
	// cluster keeps a deleted pod Terminating that long.
	GracePeriod int64
	// NodeName pins the pods (unmanaged pods only).
	NodeName string
	// NodeSelector constrains scheduling.
	NodeSelector map[string]string
	// CPU and Memory are each container's requests ("" for none).
	CPU, Memory string
	// Image is the container's image (default the pause image).
	Image string
}

func podSpec(w Workload) corev1.PodSpec {
	c := corev1.Container{Name: "app", Image: "registry.k8s.io/pause:3.10"}
	if w.Image != "" {
		c.Image = w.Image
	}
	if w.CPU != "" || w.Memory != "" {
		c.Resources.Requests = corev1.ResourceList{}
		if w.CPU != "" {
			c.Resources.Requests[corev1.ResourceCPU] = resourceMust(w.CPU)
		}
		if w.Memory != "" {
			c.Resources.Requests[corev1.ResourceMemory] = resourceMust(w.Memory)
		}
	}
	return corev1.PodSpec{
		Containers:                    []corev1.Container{c},
		TerminationGracePeriodSeconds: ptr.To(w.GracePeriod),
		NodeName:                      w.NodeName,
		NodeSelector:                  w.NodeSelector,
	}
}

// Deployment creates a Deployment of replicas pods labelled app=NAME.
func (e *Env) Deployment(t testing.TB, ns, name string, replicas int32, w Workload) *appsv1.Deployment {
	e.ready(t)
	t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       podSpec(w),
			},
		},
	}
	out, err := e.client.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating deployment %s/%s: %v", ns, name, err)
	}
	return out
}

// StatefulSet creates a StatefulSet of replicas pods labelled app=NAME.
func (e *Env) StatefulSet(t testing.TB, ns, name string, replicas int32, w Workload) *appsv1.StatefulSet {
	e.ready(t)
	t.Helper()
	labels := map[string]string{"app": name}
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To(replicas),
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       podSpec(w),
			},
		},
	}
	out, err := e.client.AppsV1().StatefulSets(ns).Create(context.Background(), s, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating statefulset %s/%s: %v", ns, name, err)
	}
	return out
}

// DaemonSet creates a DaemonSet labelled app=NAME that tolerates every taint.
func (e *Env) DaemonSet(t testing.TB, ns, name string, w Workload) *appsv1.DaemonSet {
	e.ready(t)
	t.Helper()
	labels := map[string]string{"app": name}
	spec := podSpec(w)
	spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	d := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
	out, err := e.client.AppsV1().DaemonSets(ns).Create(context.Background(), d, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating daemonset %s/%s: %v", ns, name, err)
	}
	return out
}

// PDB creates a PodDisruptionBudget over app=APP with maxUnavailable (when
// maxUnavailable is not nil) or minAvailable.
func (e *Env) PDB(t testing.TB, ns, app string, maxUnavailable, minAvailable *intstr.IntOrString) *policyv1.PodDisruptionBudget {
	e.ready(t)
	t.Helper()
	p := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			MaxUnavailable: maxUnavailable,
			MinAvailable:   minAvailable,
		},
	}
	out, err := e.client.PolicyV1().PodDisruptionBudgets(ns).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating PDB %s/%s: %v", ns, app, err)
	}
	return out
}

// UnmanagedPod creates a pod with no controller, bound to w.NodeName when set.
func (e *Env) UnmanagedPod(t testing.TB, ns, name string, w Workload) *corev1.Pod {
	e.ready(t)
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec:       podSpec(w),
	}
	out, err := e.client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s/%s: %v", ns, name, err)
	}
	return out
}

// WaitDeploymentAvailable waits until every replica is updated and available.
func (e *Env) WaitDeploymentAvailable(t testing.TB, ns, name string, timeout time.Duration) {
	e.ready(t)
	t.Helper()
	Eventually(t, timeout, func() error {
		d, err := e.client.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := ptr.Deref(d.Spec.Replicas, 1)
		if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas != want || d.Status.AvailableReplicas != want || d.Status.Replicas != want {
			return fmt.Errorf("deployment %s/%s: %d/%d available, %d updated, %d total",
				ns, name, d.Status.AvailableReplicas, want, d.Status.UpdatedReplicas, d.Status.Replicas)
		}
		return nil
	})
}

// PodsOnNode lists the pods in ns bound to node.
func (e *Env) PodsOnNode(t testing.TB, ns, node string) []corev1.Pod {
	e.ready(t)
	t.Helper()
	pods, err := e.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatalf("listing pods on %s: %v", node, err)
	}
	return pods.Items
}

func resourceMust(s string) resource.Quantity { return resource.MustParse(s) }

// DataPlaneRelease is a data plane's release, as one file, for tests of
// per-node migrations: a namespace name and a DaemonSet name in it,
// marked as the data plane, on every node, whose pods take 2 s to stop.
func DataPlaneRelease(name string) string {
	return `apiVersion: v1
kind: Namespace
metadata: {name: ` + name + `}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: ` + name + `
  namespace: ` + name + `
  annotations: {hitless.dev/data-plane: "true"}
spec:
  selector: {matchLabels: {app: ` + name + `}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}
  template:
    metadata: {labels: {app: ` + name + `}}
    spec:
      hostNetwork: true
      terminationGracePeriodSeconds: 2
      tolerations: [{operator: Exists}]
      containers:
      - {name: agent, image: "registry.example.com/` + name + `/agent:1.0.0"}
`
}

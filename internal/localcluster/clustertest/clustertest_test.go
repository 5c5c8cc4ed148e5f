package clustertest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

var env = New(Options{Workers: 3})

func TestMain(m *testing.M) { os.Exit(env.Run(m)) }

func TestNamespacesAreFreshAndRemoved(t *testing.T) {
	cs := env.Client(t)
	var first string
	t.Run("a", func(t *testing.T) { first = env.Namespace(t) })
	var second string
	t.Run("b", func(t *testing.T) { second = env.Namespace(t) })
	if first == second {
		t.Fatalf("two tests got the same namespace %s", first)
	}
	Eventually(t, 2*time.Minute, func() error {
		_, err := cs.CoreV1().Namespaces().Get(context.Background(), first, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("namespace %s of a finished test still exists (err %w)", first, err)
	})
}

func TestWorkloadsPDBsAndUnmanagedPods(t *testing.T) {
	cs := env.Client(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	env.Deployment(t, ns, "web", 4, Workload{GracePeriod: 1, CPU: "100m"})
	env.StatefulSet(t, ns, "db", 2, Workload{})
	env.DaemonSet(t, ns, "agent", Workload{})
	env.PDB(t, ns, "web", ptr.To(intstr.FromInt32(1)), nil)
	env.WaitDeploymentAvailable(t, ns, "web", time.Minute)

	Eventually(t, time.Minute, func() error {
		pdb, err := cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if pdb.Status.DisruptionsAllowed != 1 {
			return fmt.Errorf("PDB allows %d disruptions, want 1", pdb.Status.DisruptionsAllowed)
		}
		return nil
	})
	Eventually(t, time.Minute, func() error {
		ds, err := cs.AppsV1().DaemonSets(ns).Get(ctx, "agent", metav1.GetOptions{})
		if err != nil {
			return err
		}
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		// Every node, the tainted control plane included.
		n := int32(len(nodes.Items))
		if ds.Status.DesiredNumberScheduled != n || ds.Status.NumberReady != n {
			return fmt.Errorf("daemonset %d/%d ready", ds.Status.NumberReady, ds.Status.DesiredNumberScheduled)
		}
		return nil
	})
	Eventually(t, time.Minute, func() error {
		sts, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "db", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if sts.Status.ReadyReplicas != 2 {
			return fmt.Errorf("statefulset %d/2 ready", sts.Status.ReadyReplicas)
		}
		return nil
	})

	node := env.Cluster(t).Name + "-worker-1"
	p := env.UnmanagedPod(t, ns, "loner", Workload{NodeName: node})
	if len(p.OwnerReferences) != 0 {
		t.Errorf("unmanaged pod has owners %v", p.OwnerReferences)
	}
	Eventually(t, time.Minute, func() error {
		got, err := cs.CoreV1().Pods(ns).Get(ctx, "loner", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.Phase != corev1.PodRunning || got.Spec.NodeName != node {
			return fmt.Errorf("unmanaged pod %s on %q", got.Status.Phase, got.Spec.NodeName)
		}
		return nil
	})
}

func TestTerminationDelayAnnotationOverridesGracePeriod(t *testing.T) {
	cs := env.Client(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	tests := []struct {
		name       string
		grace      int64
		annotation string
		min, max   time.Duration
	}{
		{"grace period honoured", 2, "", 2 * time.Second, 20 * time.Second},
		{"annotation shortens a long grace period", 60, "1s", time.Second, 20 * time.Second},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("p%d", i)
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				Spec: corev1.PodSpec{
					Containers:                    []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}},
					TerminationGracePeriodSeconds: ptr.To(tt.grace),
					NodeName:                      env.Cluster(t).Name + "-worker-2",
				},
			}
			if tt.annotation != "" {
				pod.Annotations = map[string]string{"hitless.dev/termination-delay": tt.annotation}
			}
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			Eventually(t, time.Minute, func() error {
				got, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if got.Status.Phase != corev1.PodRunning {
					return fmt.Errorf("pod %s", got.Status.Phase)
				}
				return nil
			})
			start := time.Now()
			if err := cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			Eventually(t, time.Minute, func() error {
				_, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					return nil
				}
				return fmt.Errorf("pod still Terminating after %s", time.Since(start).Round(time.Millisecond))
			})
			took := time.Since(start)
			if took < tt.min-200*time.Millisecond || took > tt.max {
				t.Errorf("pod took %s to go, want between %s and %s", took, tt.min, tt.max)
			}
		})
	}
}

func TestAddNodes(t *testing.T) {
	cs := env.Client(t)
	names := env.AddNodes(t, 2, map[string]string{"pool": "extra"})
	nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: "pool=extra"})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 2 || len(names) != 2 {
		t.Fatalf("added nodes %v, found %d with the label", names, len(nodes.Items))
	}
}

// TestSnapshotSeesEveryChangeAndNoChurn: two snapshots of a quiet cluster
// 15 s apart are equal (heartbeats, leases and events are left out), and
// an object created, one changed and one deleted each show.
func TestSnapshotSeesEveryChangeAndNoChurn(t *testing.T) {
	cs := env.Client(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	for _, name := range []string{"changed", "deleted"} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string]string{"k": "v"}}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	env.Deployment(t, ns, "web", 2, Workload{})
	env.WaitDeploymentAvailable(t, ns, "web", time.Minute)
	// The namespaces of the tests before are still going: a cluster is
	// quiet once they are gone.
	Eventually(t, 2*time.Minute, func() error {
		list, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, n := range list.Items {
			if n.DeletionTimestamp != nil {
				return fmt.Errorf("namespace %s is being deleted", n.Name)
			}
		}
		return nil
	})
	before := Snapshot(t, env.Config(t), nil)
	if len(before) < 50 {
		t.Fatalf("a snapshot of %d objects: the cluster holds more", len(before))
	}
	time.Sleep(15 * time.Second)
	if diff := before.Diff(Snapshot(t, env.Config(t), nil)); len(diff) > 0 {
		t.Fatalf("a quiet cluster changed in 15 s:\n%v", diff)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "created", Namespace: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "changed", Namespace: ns}, Data: map[string]string{"k": "w"}}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().ConfigMaps(ns).Delete(ctx, "deleted", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	diff := before.Diff(Snapshot(t, env.Config(t), nil))
	want := []string{"+ configmaps " + ns + "/created", "- configmaps " + ns + "/deleted", "~ configmaps " + ns + "/changed"}
	if len(diff) != len(want) {
		t.Fatalf("diff %v, want %v", diff, want)
	}
	for i, w := range want {
		if !strings.HasPrefix(diff[i], w) {
			t.Errorf("diff[%d] = %q, want %q", i, diff[i], w)
		}
	}
}

package clustertest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// sees waits until the guard has recorded a violation containing want,
// and takes every violation so that the test's end does not fail on it.
func sees(t *testing.T, g *Guard, want string) {
	t.Helper()
	var seen []string
	Eventually(t, 20*time.Second, func() error {
		seen = append(seen, g.Take(false)...)
		if !strings.Contains(strings.Join(seen, "\n"), want) {
			return fmt.Errorf("the guard did not see %q; it saw %v", want, seen)
		}
		return nil
	})
	g.Take(true)
}

func cordon(t *testing.T, node string, on bool) {
	t.Helper()
	body := `{"spec":{"unschedulable":true}}`
	if !on {
		body = `{"spec":{"unschedulable":null}}`
	}
	if _, err := env.Client(t).CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, []byte(body), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func podsOf(t *testing.T, ns, app string) []corev1.Pod {
	t.Helper()
	pods, err := env.Client(t).CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

// TestGuardChecksCanFail breaks, on purpose, each thing the guard watches
// and expects it to say so: every check of the guard can fail.
func TestGuardChecksCanFail(t *testing.T) {
	cs := env.Client(t)
	ctx := context.Background()

	t.Run("a StatefulSet's PDB broken by deleting its pods", func(t *testing.T) {
		ns := env.Namespace(t)
		pool := env.AddNodes(t, 2, nil)
		env.StatefulSet(t, ns, "db", 3, Workload{})
		env.PDB(t, ns, "db", ptr.To(intstr.FromInt32(1)), nil)
		Eventually(t, time.Minute, func() error {
			if n := len(podsOf(t, ns, "db")); n != 3 {
				return fmt.Errorf("%d db pods", n)
			}
			pdb, err := cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "db", metav1.GetOptions{})
			if err != nil || pdb.Status.CurrentHealthy != 3 {
				return fmt.Errorf("PDB not yet counting 3 healthy pods (%w)", err)
			}
			return nil
		})
		g := StartGuard(t, cs, ns, pool, 1)
		if v := g.Take(false); len(v) > 0 {
			t.Fatalf("a healthy StatefulSet is a violation: %v", v)
		}
		for _, p := range podsOf(t, ns, "db")[:2] {
			if err := cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		sees(t, g, "PDB db wants 2 healthy pods")
	})

	t.Run("an instant's dip in one pod's readiness", func(t *testing.T) {
		ns := env.Namespace(t)
		pool := env.AddNodes(t, 1, nil)
		env.Deployment(t, ns, "web", 2, Workload{})
		env.PDB(t, ns, "web", nil, ptr.To(intstr.FromInt32(2)))
		env.WaitDeploymentAvailable(t, ns, "web", time.Minute)
		g := StartGuard(t, cs, ns, pool, 1)
		p := podsOf(t, ns, "web")[0]
		// Not ready and ready again at once: a guard that read its cache
		// when handling the first event would already see the second.
		for _, status := range []string{"False", "True"} {
			body := fmt.Sprintf(`{"status":{"conditions":[{"type":"Ready","status":%q}]}}`, status)
			if _, err := cs.CoreV1().Pods(ns).Patch(ctx, p.Name, types.StrategicMergePatchType, []byte(body), metav1.PatchOptions{}, "status"); err != nil {
				t.Fatal(err)
			}
		}
		sees(t, g, "PDB web wants 2 healthy pods, 1 were")
	})

	t.Run("more nodes unavailable than the batch", func(t *testing.T) {
		ns := env.Namespace(t)
		pool := env.AddNodes(t, 2, nil)
		g := StartGuard(t, cs, ns, pool, 1)
		for _, n := range pool {
			cordon(t, n, true)
			defer cordon(t, n, false)
		}
		sees(t, g, "2 nodes unavailable at once, the batch allows 1")
	})

	t.Run("a data-plane pod deleted on a node not cordoned, then one not drained", func(t *testing.T) {
		ns := env.Namespace(t)
		pool := env.AddNodes(t, 1, map[string]string{"guard-dp": ns})
		node := pool[0]
		env.DaemonSet(t, ns, "dp", Workload{NodeSelector: map[string]string{"guard-dp": ns}})
		env.UnmanagedPod(t, ns, "app", Workload{NodeName: node})
		Eventually(t, time.Minute, func() error {
			if n := len(podsOf(t, ns, "dp")); n != 1 {
				return fmt.Errorf("%d data-plane pods", n)
			}
			return nil
		})
		g := StartDataPlaneGuard(t, cs, ns, pool, 1, ns, "dp")
		deleteDP := func() {
			t.Helper()
			for _, p := range podsOf(t, ns, "dp") {
				if p.DeletionTimestamp == nil {
					if err := cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)}); err != nil {
						t.Fatal(err)
					}
					return
				}
			}
			t.Fatal("no data-plane pod to delete")
		}
		deleteDP()
		sees(t, g, "which was not cordoned")

		g = StartDataPlaneGuard(t, cs, ns, pool, 1, ns, "dp")
		Eventually(t, time.Minute, func() error {
			for _, p := range podsOf(t, ns, "dp") {
				if p.DeletionTimestamp == nil {
					return nil
				}
			}
			return fmt.Errorf("no new data-plane pod yet")
		})
		cordon(t, node, true)
		defer cordon(t, node, false)
		deleteDP()
		sees(t, g, "while pod app still ran there")
		if g.Replaced() != 0 {
			t.Errorf("%d replacements counted on a node not drained", g.Replaced())
		}
	})
}

package catalog_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/check/catalog"
	"github.com/hitless-dev/hitless/internal/check/profile"
	"github.com/hitless-dev/hitless/internal/localcluster"
)

type counter struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// BenchmarkPreflight measures the cluster-level preflight (generic
// profile, without agents) on local clusters of 100 and 1,000 nodes with
// ten pods per node, 50 Deployments under PodDisruptionBudgets of which
// 10 allow no disruption. Beside it, the baseline a per-node script pays
// just to see each node's pods (one LIST per node, as `kubectl drain
// --dry-run` or a kubectl loop does).
//
//	go test -run '^$' -bench Preflight -benchtime 3x -timeout 60m ./internal/check/catalog
func BenchmarkPreflight(b *testing.B) {
	if testing.Short() {
		b.Skip("starts local clusters")
	}
	for _, nodes := range []int{100, 1000} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			cfg, cs := benchCluster(b, nodes)
			b.Run("tool=hitless", func(b *testing.B) {
				c := &counter{}
				cfg := rest.CopyConfig(cfg)
				cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { c.next = rt; return c }
				cs := kubernetes.NewForConfigOrDie(cfg)
				dyn := dynamic.NewForConfigOrDie(cfg)
				prep, err := catalog.Prepare(catalog.Options{Kind: profile.Preflight, Profile: "generic", NoRecord: true})
				if err != nil {
					b.Fatal(err)
				}
				var start int64
				for b.Loop() {
					start = c.n.Load()
					rep, err := prep.Run(context.Background(), cs, dyn)
					if err != nil {
						b.Fatal(err)
					}
					if rep.Summary.Blocking == 0 {
						b.Fatalf("the planted PDBs were not found: %+v", rep.Summary)
					}
				}
				b.ReportMetric(float64(c.n.Load()-start), "requests/run")
			})
			b.Run("tool=per-node-pod-list", func(b *testing.B) {
				c := &counter{}
				cfg := rest.CopyConfig(cfg)
				cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { c.next = rt; return c }
				pcs := kubernetes.NewForConfigOrDie(cfg)
				nl, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
				if err != nil {
					b.Fatal(err)
				}
				var start int64
				for b.Loop() {
					start = c.n.Load()
					for _, n := range nl.Items {
						if _, err := pcs.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.Name}); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(c.n.Load()-start), "requests/run")
			})
		})
	}
}

// benchCluster starts a local cluster of nodes workers with ten pods per
// node: 50 Deployments, each under a PodDisruptionBudget, 10 of which
// allow no disruption.
func benchCluster(b *testing.B, nodes int) (*rest.Config, kubernetes.Interface) {
	b.Helper()
	ctx := context.Background()
	home := b.TempDir()
	name := fmt.Sprintf("bench%d", nodes)
	c, err := localcluster.Up(ctx, localcluster.Options{Name: name, Nodes: nodes, ControlPlaneNodes: 1, Home: home, Attached: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = localcluster.Down(context.Background(), home, name) })
	_, cfg, err := c.Client()
	if err != nil {
		b.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	cs := kubernetes.NewForConfigOrDie(cfg)
	const deployments = 50
	per := int32(nodes * 10 / deployments)
	for i := range deployments {
		app := fmt.Sprintf("load-%02d", i)
		labels := map[string]string{"app": app}
		_, err := cs.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: app},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(per),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		budget := intstr.FromString("10%")
		if i < 10 {
			budget = intstr.FromInt32(0)
		}
		_, err = cs.PolicyV1().PodDisruptionBudgets("default").Create(ctx, &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: app},
			Spec:       policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, MaxUnavailable: &budget},
		}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
	}
	// Wait for the pods themselves: with 10,000 pods created at once the
	// ReplicaSets' status can lag minutes behind.
	want := int(per) * deployments
	deadline := time.Now().Add(20 * time.Minute)
	for {
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		ready := 0
		for i := range l.Items {
			for _, c := range l.Items[i].Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		if ready == want {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d pods Ready", ready, want)
		}
		time.Sleep(2 * time.Second)
	}
	// The PodDisruptionBudgets' status must be computed for drain.pdb.
	for {
		l, err := cs.PolicyV1().PodDisruptionBudgets("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		done := 0
		for _, p := range l.Items {
			if p.Status.ExpectedPods > 0 {
				done++
			}
		}
		if done == deployments {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d PodDisruptionBudgets computed", done, deployments)
		}
		time.Sleep(2 * time.Second)
	}
	return cfg, cs
}

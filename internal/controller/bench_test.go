package controller_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

// rssMB reads a process's resident memory.
func rssMB(b *testing.B, pid int) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// requests sums what a controller's process sent to the API server
// (client-go's rest_client_requests_total, served beside its own metrics).
func requests(b *testing.B, addr string) float64 {
	b.Helper()
	f := clustertest.Scrape(b, addr)["rest_client_requests_total"]
	if f == nil {
		b.Fatal("no rest_client_requests_total on /metrics")
	}
	var sum float64
	for _, m := range f.Metric {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// BenchmarkController measures the controller on 1,000 nodes and 10,000
// pods: idle for a minute (memory, API requests per minute), then a
// NodeRoll of 100 nodes at batch 10 % beside the CLI's engine rolling
// another 100 nodes with the same spec, one after the other. Run:
//
//	bash hack/bench.sh Controller
func BenchmarkController(b *testing.B) {
	if testing.Short() {
		b.Skip("starts a local cluster")
	}
	env.InstallCRDs(b)
	cs := env.Client(b)
	ns := benchCluster(b, cs)
	c := env.APIClient(b)
	ctx := context.Background()
	for b.Loop() {
		metrics := clustertest.FreeAddr(b)
		// The shipped election timings (the tests' are shorter), so that
		// the idle requests are what a user's controller sends.
		p := env.StartController(b, "--metrics-bind-address", metrics,
			"--leader-elect-lease-duration", "15s", "--leader-elect-renew-deadline", "10s", "--leader-elect-retry-period", "2s")
		time.Sleep(10 * time.Second) // started, caches synced, lead taken
		before, rss0 := requests(b, metrics), rssMB(b, p.Cmd.Process.Pid)
		const idle = time.Minute
		time.Sleep(idle)
		idleRequests := requests(b, metrics) - before
		rssIdle := rssMB(b, p.Cmd.Process.Pid)

		nr := &v1alpha1.NodeRoll{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: v1alpha1.NodeRollSpec{
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"bench": "controller"}},
			Batch:        intstr.FromString("10%"), Drain: &v1alpha1.DrainPolicy{EvictRetryDelay: &metav1.Duration{Duration: time.Second}},
		}}
		before = requests(b, metrics)
		start := time.Now()
		if err := c.Create(ctx, nr); err != nil {
			b.Fatal(err)
		}
		waitPhase(b, c, nr.Name, v1alpha1.PhaseSucceeded, 20*time.Minute)
		ctrlWall := time.Since(start)
		ctrlRequests := requests(b, metrics) - before
		rssRoll := rssMB(b, p.Cmd.Process.Pid)
		if err := c.Delete(ctx, nr); err != nil {
			b.Fatal(err)
		}
		p.Stop()

		cfg, n := env.CountingConfig(b)
		counted, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			b.Fatal(err)
		}
		env.WaitDeploymentAvailable(b, ns, "load", 20*time.Minute)
		start = time.Now()
		if _, err := roll.Run(ctx, counted, roll.Options{Spec: roll.Spec{Selector: "bench=cli", Batch: "10%", EvictRetryDelay: time.Second}, Command: "bench"}); err != nil {
			b.Fatal(err)
		}
		cliWall, cliRequests := time.Since(start), float64(n.Load())

		b.ReportMetric(idleRequests/idle.Minutes(), "idle-requests/min")
		b.ReportMetric(rssIdle, "idle-MB")
		b.ReportMetric(ctrlWall.Seconds(), "controller-roll-s")
		b.ReportMetric(cliWall.Seconds(), "cli-roll-s")
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		_, _ = fmt.Fprintf(w, "1,000 nodes, 10,000 pods\tcontroller\tCLI engine\t\n")
		_, _ = fmt.Fprintf(w, "RSS after start, MB\t%.0f\t\t\n", rss0)
		_, _ = fmt.Fprintf(w, "RSS idle 1 min, MB\t%.0f\t\t\n", rssIdle)
		_, _ = fmt.Fprintf(w, "API requests per minute, idle\t%.1f\t\t\n", idleRequests/idle.Minutes())
		_, _ = fmt.Fprintf(w, "roll of 100 nodes at 10%%, s\t%.1f\t%.1f\t\n", ctrlWall.Seconds(), cliWall.Seconds())
		_, _ = fmt.Fprintf(w, "requests per rolled node\t%.1f\t%.1f\t\n", ctrlRequests/100, cliRequests/100)
		_, _ = fmt.Fprintf(w, "RSS after the roll, MB\t%.0f\t\t\n", rssRoll)
		_ = w.Flush()
	}
}

// benchCluster fills the cluster: 1,000 nodes (two pools of 100 to roll),
// 10,000 pods in one Deployment with a PDB of maxUnavailable 10 %.
func benchCluster(b *testing.B, cs kubernetes.Interface) string {
	b.Helper()
	env.AddNodes(b, 100, map[string]string{"bench": "controller"})
	env.AddNodes(b, 100, map[string]string{"bench": "cli"})
	env.AddNodes(b, 800, nil)
	ns := env.Namespace(b)
	labels := map[string]string{"app": "load"}
	ctx := context.Background()
	_, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "load"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(10_000)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}},
					TerminationGracePeriodSeconds: ptr.To(int64(1))},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	env.PDB(b, ns, "load", ptr.To(intstr.FromString("10%")), nil)
	env.WaitDeploymentAvailable(b, ns, "load", 20*time.Minute)
	return ns
}

package localcluster_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/localcluster"
)

// BenchmarkUp measures `cluster up` until every node is Ready, with cached
// binaries. Run: go test -run '^$' -bench Up -benchtime 1x ./internal/localcluster
func BenchmarkUp(b *testing.B) {
	if testing.Short() {
		b.Skip("starts local clusters")
	}
	for _, nodes := range []int{3, 100, 1000} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			home := b.TempDir()
			ctx := context.Background()
			var total time.Duration
			for i := 0; b.Loop(); i++ {
				name := fmt.Sprintf("bench%d", i)
				start := time.Now()
				_, err := localcluster.Up(ctx, localcluster.Options{Name: name, Nodes: nodes, ControlPlaneNodes: 1, Home: home, Attached: true})
				if err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				b.StopTimer()
				if err := localcluster.Down(ctx, home, name); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s-to-ready")
		})
	}
}

// BenchmarkMemory1000Nodes10000Pods reports the resident memory of every
// cluster process with 1,000 nodes and 10,000 Running pods.
func BenchmarkMemory1000Nodes10000Pods(b *testing.B) {
	if testing.Short() {
		b.Skip("starts a local cluster")
	}
	home := b.TempDir()
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("mem%d", i)
		c, err := localcluster.Up(ctx, localcluster.Options{Name: name, Nodes: 1000, ControlPlaneNodes: 1, Home: home, Attached: true})
		if err != nil {
			b.Fatal(err)
		}
		cs, _, err := c.Client()
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := createPods(ctx, cs.AppsV1().Deployments("default"), 10_000); err != nil {
			b.Fatal(err)
		}
		if err := waitReplicas(ctx, func() (int32, error) {
			d, err := cs.AppsV1().Deployments("default").Get(ctx, "load", metav1.GetOptions{})
			if err != nil {
				return 0, err
			}
			return d.Status.AvailableReplicas, nil
		}, 10_000, 20*time.Minute); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s-to-10k-pods-available")
		time.Sleep(10 * time.Second) // let the heaps settle after the burst
		var sum float64
		for _, p := range c.Processes {
			mb, err := rssMB(p.PID)
			if err != nil {
				b.Fatal(err)
			}
			sum += mb
			b.ReportMetric(mb, p.Name+"-MB")
		}
		b.ReportMetric(sum, "total-MB")
		if err := localcluster.Down(ctx, home, name); err != nil {
			b.Fatal(err)
		}
	}
}

type deploymentCreator interface {
	Create(ctx context.Context, d *appsv1.Deployment, opts metav1.CreateOptions) (*appsv1.Deployment, error)
}

func createPods(ctx context.Context, d deploymentCreator, n int32) error {
	labels := map[string]string{"app": "load"}
	_, err := d.Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "load"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(n),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}, metav1.CreateOptions{})
	return err
}

func waitReplicas(ctx context.Context, get func() (int32, error), want int32, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := get()
		if err == nil && got >= want {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("waiting for %d replicas: %w", want, err)
			}
			return fmt.Errorf("%d of %d replicas available after %s", got, want, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// rssMB reads VmRSS of a process in MiB.
func rssMB(pid int) (float64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return 0, err
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

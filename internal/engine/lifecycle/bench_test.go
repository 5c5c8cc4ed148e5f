package lifecycle_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/component/apply"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
)

// counting returns the cluster with every request counted.
func counting(b *testing.B) (lifecycle.Cluster, *atomic.Int64) {
	cfg, n := env.CountingConfig(b)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return lifecycle.Cluster{Client: cs, Config: cfg}, n
}

// BenchmarkUpgrade upgrades a component of 25 CRDs (each with a custom
// resource), a namespace, RBAC, a Service, a controller Deployment and a
// data-plane DaemonSet on 100 nodes, 10% of the nodes at a time; each
// iteration rolls back afterwards, untimed. Side by side, the baseline is
// what a plain apply does with the same objects: one staged server-side
// apply and a wait for readiness, the DaemonSet rolling itself, with no
// backup, no port of customizations and no drain.
//
//	go test -run '^$' -bench Upgrade -benchtime 2x -timeout 60m ./internal/engine/lifecycle
func BenchmarkUpgrade(b *testing.B) {
	ctx := context.Background()
	env.AddNodes(b, 96, map[string]string{"bench": "upgrade"}) // 100 with the package's 4
	v1, v2 := writeComponent(b, "bench", "1.0.0", 25, 0), writeComponent(b, "bench", "1.1.0", 25, 0)
	c, requests := counting(b)
	if _, err := lifecycle.Install(ctx, c, lifecycle.Options{Name: "bench", Source: mustLoad(b, v1), Command: "bench"}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_, _ = lifecycle.Uninstall(context.Background(), c, lifecycle.Options{Name: "bench", Command: "bench"})
	})

	src2 := mustLoad(b, v2)
	b.Run("hitless-upgrade", func(b *testing.B) {
		phases := map[string]time.Duration{}
		var total time.Duration
		requests.Store(0)
		var reqs int64
		for range b.N {
			start := time.Now()
			before := requests.Load()
			res, err := lifecycle.Upgrade(ctx, c, lifecycle.Options{Name: "bench", Source: src2, Batch: "10%", Command: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
			reqs += requests.Load() - before
			for _, s := range res.Steps {
				phases[s.Name] += s.Finished.Sub(s.Started)
			}
			b.StopTimer()
			if _, err := lifecycle.Rollback(ctx, c, lifecycle.Options{Name: "bench", Batch: "100%", Command: "bench"}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		n := float64(b.N)
		b.ReportMetric(total.Seconds()/n, "s/upgrade")
		b.ReportMetric(float64(reqs)/n, "requests/upgrade")
		for name, d := range phases {
			b.ReportMetric(d.Seconds()/n, strings.ReplaceAll(name, " ", "-")+"-s")
		}
	})

	b.Run("baseline-plain-apply", func(b *testing.B) {
		a, err := apply.New(c.Config)
		if err != nil {
			b.Fatal(err)
		}
		objs := func(path string) []*unstructured.Unstructured {
			src, err := component.Load(path)
			if err != nil {
				b.Fatal(err)
			}
			var out []*unstructured.Unstructured
			for _, o := range src.Objects {
				out = append(out, o.DeepCopy())
			}
			return out
		}
		next, prev := objs(v2), objs(v1)
		var total time.Duration
		var reqs int64
		for range b.N {
			start := time.Now()
			before := requests.Load()
			if _, err := a.Apply(ctx, next, apply.Options{Set: "bench", Wait: 30 * time.Minute}); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
			reqs += requests.Load() - before
			b.StopTimer()
			// Back to v1: the custom resources shed the new field before
			// their CRDs drop it (applied after, they would be refused).
			var crs []*unstructured.Unstructured
			for _, o := range prev {
				if strings.HasSuffix(o.GroupVersionKind().Group, ".bench.hitless.dev") {
					crs = append(crs, o)
				}
			}
			if _, err := a.Apply(ctx, crs, apply.Options{Set: "bench"}); err != nil {
				b.Fatal(err)
			}
			if _, err := a.Apply(ctx, prev, apply.Options{Set: "bench", Wait: 30 * time.Minute}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(total.Seconds()/float64(b.N), "s/upgrade")
		b.ReportMetric(float64(reqs)/float64(b.N), "requests/upgrade")
	})
}

func mustLoad(tb testing.TB, path string) *component.Source {
	tb.Helper()
	src, err := component.Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	return src
}

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
	"github.com/hitless-dev/hitless/internal/component/chart"
	"github.com/hitless-dev/hitless/internal/component/manifest"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
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
	b.Run("tool=hitless-upgrade", func(b *testing.B) {
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

	b.Run("tool=plain-apply", func(b *testing.B) {
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

// BenchmarkInstallCiliumChart installs Cilium's chart (1.19.6, the
// operator at 1 replica) on the package's 4 nodes; each iteration
// uninstalls afterwards, untimed. Side by side, the baseline is what
// `helm install --wait` amounts to: render the chart once and apply its
// objects in one staged server-side apply, then wait for readiness, with
// no checks, no journal, no revision record and no data plane roll.
// Memory is what the process allocates per install (B/op).
//
//	go test -run '^$' -bench InstallCiliumChart -benchtime 3x ./internal/engine/lifecycle
func BenchmarkInstallCiliumChart(b *testing.B) {
	ctx := context.Background()
	c, requests := counting(b)
	path := upstream.Path(b, "helm", "cilium", "cilium-1.19.6.tgz")
	values := map[string]any{"operator": map[string]any{"replicas": 1}}
	ch, err := chart.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	opts := lifecycle.Options{Name: "bench-cilium", Chart: ch, Values: values, Namespace: "kube-system", Batch: "100%", Command: "bench"}
	uninstall := func() {
		if _, err := lifecycle.Uninstall(ctx, c, lifecycle.Options{Name: "bench-cilium", Command: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("tool=hitless-install", func(b *testing.B) {
		b.ReportAllocs()
		var total time.Duration
		var reqs int64
		for range b.N {
			start, before := time.Now(), requests.Load()
			if _, err := lifecycle.Install(ctx, c, opts); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
			reqs += requests.Load() - before
			b.StopTimer()
			uninstall()
			b.StartTimer()
		}
		b.ReportMetric(total.Seconds()/float64(b.N), "s/install")
		b.ReportMetric(float64(reqs)/float64(b.N), "requests/install")
	})
	b.Run("tool=render-and-apply", func(b *testing.B) {
		b.ReportAllocs()
		a, err := apply.New(c.Config)
		if err != nil {
			b.Fatal(err)
		}
		var total time.Duration
		var reqs int64
		for range b.N {
			start, before := time.Now(), requests.Load()
			caps, err := chart.Discover(c.Client.Discovery())
			if err != nil {
				b.Fatal(err)
			}
			scope, err := component.NewClusterScope(ctx, c.Client)
			if err != nil {
				b.Fatal(err)
			}
			r, err := chart.Render(ctx, ch, chart.Options{Release: "bench-cilium", Namespace: "kube-system", Values: values, Caps: caps}, scope)
			if err != nil {
				b.Fatal(err)
			}
			objs := manifest.Unstructured(r.Source.Objects)
			if _, err := a.Apply(ctx, objs, apply.Options{Set: "bench-cilium", Wait: 10 * time.Minute}); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
			reqs += requests.Load() - before
			b.StopTimer()
			if _, err := a.Delete(ctx, objs); err != nil {
				b.Fatal(err)
			}
			if left, err := a.WaitGone(ctx, objs, 5*time.Minute); err != nil || len(left) > 0 {
				b.Fatalf("baseline objects not gone: %d left, %v", len(left), err)
			}
			b.StartTimer()
		}
		b.ReportMetric(total.Seconds()/float64(b.N), "s/install")
		b.ReportMetric(float64(reqs)/float64(b.N), "requests/install")
	})
}

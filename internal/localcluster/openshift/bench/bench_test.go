package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
	"github.com/hitless-dev/hitless/internal/localcluster/openshift"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
)

const (
	masters = 3
	workers = 497
	// downtime is each simulated reboot's NotReady time.
	downtime = 200 * time.Millisecond
)

var env = clustertest.New(clustertest.Options{Workers: workers, ControlPlanes: masters})

// TestMain starts the 500-node cluster only for -bench: the package has no
// tests, and CI runs none of its benchmarks.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run())
	}
	os.Exit(env.Run(m))
}

// BenchmarkOfflineMigration500Nodes runs openshift-sdn-to-ovn on a
// rehearsal cluster of 3 masters and 497 workers (reboots 200 ms, the
// simulator reading the cluster every 100 ms) and prints, per step, the
// wall time beside the part of it the plan cannot avoid: what the
// (simulated) operators and reboots take. The machine-config operator's
// one machine at a time dominates, as it does on a real cluster.
func BenchmarkOfflineMigration500Nodes(b *testing.B) {
	ctx := context.Background()
	cfg := env.Config(b)
	if err := openshift.Install(ctx, cfg, upstream.Path(b, "openshift")); err != nil {
		b.Fatal(err)
	}
	cs := env.Client(b)
	setDowntime(b, cs)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = openshift.Simulate(sctx, cfg, 100*time.Millisecond) }()
	counted, requests := env.CountingConfig(b)
	ccs, err := kubernetes.NewForConfig(counted)
	if err != nil {
		b.Fatal(err)
	}
	p, err := plan.Builtin("openshift-sdn-to-ovn")
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		requests.Store(0)
		start := time.Now()
		res, err := migrate.Run(ctx, operation.Cluster{Client: ccs, Config: counted}, migrate.Options{Plan: p, Poll: 500 * time.Millisecond,
			Set: map[string]string{"settle": "5s", "workerBatch": "10%", "operatorTimeout": "5m"}})
		if err != nil {
			b.Fatal(err)
		}
		total := time.Since(start)
		nodes := float64(masters + workers)
		fmt.Printf("\n%-24s %10s\n", "STEP", "WALL")
		// The reboot step cannot be shorter than its batches' reboots:
		// masters one at a time, workers 10% at a time.
		rebootFloor := time.Duration(masters+(workers+workers/10-1)/(workers/10)) * downtime
		var waits time.Duration
		fmt.Printf("%-24s %10s %12s\n", "", "", "UNAVOIDABLE")
		for _, s := range res.Steps {
			d := s.Finished.Sub(s.Started)
			floor := time.Duration(0)
			switch {
			case s.Name == "reboot-nodes":
				floor = rebootFloor
			case unavoidable(s.Name):
				floor = d
			}
			waits += floor
			fmt.Printf("%-24s %10s %12s\n", s.Name, d.Round(10*time.Millisecond), floor.Round(10*time.Millisecond))
		}
		fmt.Printf("%-24s %10s %12s (the operators' rolls, the Multus rollout, the settle holds, the reboots themselves)\n%-24s %10s\n%-24s %10.1f\n",
			"total", total.Round(10*time.Millisecond), waits.Round(10*time.Millisecond),
			"hitless's own", (total - waits).Round(10*time.Millisecond), "requests/node", float64(requests.Load())/nodes)
		b.ReportMetric(total.Seconds(), "s-total")
		b.ReportMetric((total - waits).Seconds(), "s-hitless")
		b.ReportMetric(float64(requests.Load())/nodes, "requests/node")
	}
}

// unavoidable are the steps whose whole time is the operators': the
// pools' roll, the Multus rollout, the namespace going.
func unavoidable(step string) bool {
	for _, s := range []string{"pools-updated", "multus-rolled-out", "delete-sdn-namespace", "verify-network-type"} {
		if strings.HasPrefix(step, s) {
			return true
		}
	}
	return false
}

func setDowntime(b *testing.B, cs kubernetes.Interface) {
	l, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{"hitless.dev/reboot-downtime":%q}}}`, downtime.String())
	for _, n := range l.Items {
		if _, err := cs.CoreV1().Nodes().Patch(context.Background(), n.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

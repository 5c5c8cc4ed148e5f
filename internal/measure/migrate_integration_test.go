package measure_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/measure"
)

// A migration probed from start to end: the data-plane restart of its
// roll step is a loss window tied to that step and node.
func TestMigrationLossTiedToStepAndNode(t *testing.T) {
	startAgents(t)
	ns := env.Namespace(t)
	dataPlane(t, ns, 2)
	cs := env.Client(t)
	ctx := context.Background()
	node := env.Cluster(t).Lab.Nodes[0].Name
	doc := `apiVersion: hitless.dev/v1alpha1
kind: MigrationPlan
metadata: {name: probed}
steps:
- name: data-plane-ready
  wait:
    for: {apiVersion: apps/v1, kind: DaemonSet, namespace: ` + ns + `, name: vrouter}
    condition: object.status.numberReady == object.status.desiredNumberScheduled
- name: restart-data-plane
  roll:
    groups: [{selector: kubernetes.io/hostname=` + node + `}]
    actions: [{name: restart-daemonset, params: {daemonSet: ` + ns + `/vrouter}}]
`
	p, err := plan.Parse("probed.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	guard, err := measure.StartGuard(ctx, cs, measure.GuardSpec{Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // a quiet start
	res, runErr := migrate.Run(ctx, operation.Cluster{Client: cs, Config: env.Config(t)}, migrate.Options{Plan: p, Guard: guard, Poll: 200 * time.Millisecond})
	if runErr != nil {
		t.Fatal(runErr)
	}
	rep, err := guard.Stop(ctx, res.Operation, res)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Operation != res.Operation {
		t.Errorf("report of %q, want the migration %s", rep.Operation, res.Operation)
	}
	udp := 0
	for _, w := range rep.Windows {
		if w.Kind != "udp" {
			continue
		}
		udp++
		if w.From != node && w.To != node {
			t.Errorf("loss on %s -> %s, which does not pass %s", w.From, w.To, node)
		}
		if w.Node != node || !strings.HasPrefix(w.Phase, "restart-data-plane/") || !w.OnPath {
			t.Errorf("window %s -> %s (%.0f ms) tied to %q of %q, want restart-data-plane/<phase> of %s", w.From, w.To, w.DurationMs, w.Phase, w.Node, node)
		}
	}
	if udp == 0 {
		t.Fatalf("no loss window measured for the data-plane restart: %+v", rep.Windows)
	}
}

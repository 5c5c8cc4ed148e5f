package measure_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	engine "github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
	"github.com/hitless-dev/hitless/internal/measure"
)

// plane writes a data plane's release (clustertest.DataPlaneRelease)
// and returns its path; the lab agents take a node's link down while its
// data-plane pod is replaced: a model.
func plane(t *testing.T, name string) string {
	t.Helper()
	doc := clustertest.DataPlaneRelease(name)
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// breakEachMovedNode makes every node that switches to the data plane
// value drop what it receives for 1.5 s, once (a loss fault: the agents
// following the data plane own the link).
func breakEachMovedNode(ctx context.Context, t *testing.T, value string) {
	c := env.Cluster(t)
	broken := map[string]bool{}
	for ctx.Err() == nil {
		l, err := env.Client(t).CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "hitless.dev/data-plane=" + value})
		if err == nil {
			for _, n := range l.Items {
				if !broken[n.Name] {
					broken[n.Name] = true
					if err := c.Inject(ctx, localcluster.Fault{Node: n.Name, Kind: "loss", Percent: 100}); err != nil {
						t.Errorf("loss on %s: %v", n.Name, err)
					}
					go func(node string) {
						time.Sleep(1500 * time.Millisecond)
						if err := c.Inject(context.WithoutCancel(ctx), localcluster.Fault{Node: node, Kind: "loss", Percent: 0}); err != nil {
							t.Errorf("loss removed on %s: %v", node, err)
						}
					}(n.Name)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func hitless(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := app.Run(context.Background(), "hitless", append([]string{"--kubeconfig", env.Kubeconfig(t)}, args...),
		genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb})
	return code, out.String(), errb.String()
}

// A per-node migration under a disruption budget: each node drops what
// it receives for 1.5 s as its cutover starts (an injected fault), which exceeds
// the budget, so the migration pauses before the next node and says why;
// resumed, it moves that node and pauses again before the one after.
func TestMigrationBudgetPausesBeforeTheNextNode(t *testing.T) {
	startAgents(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go breakEachMovedNode(ctx, t, "plane-b")
	if code, out, errb := hitless(t, "install", "-f", plane(t, "plane-a"), "--name", "plane-a"); code != 0 {
		t.Fatalf("install: exit %d\n%s\n%s", code, out, errb)
	}
	code, out, errb := hitless(t, "migrate", "run", "cni-node-by-node", "--yes", "-o", "json", "--probe", "--max-outage", "500ms",
		"--set", "skipVerify=true",
		"--set", "from=plane-a", "--set", "fromNamespace=plane-a", "--set", "fromDaemonSet=plane-a", "--set", "fromValue=plane-a",
		"--set", "to=plane-b", "--set", "toNamespace=plane-b", "--set", "toDaemonSet=plane-b", "--set", "toValue=plane-b",
		"--release", "to="+plane(t, "plane-b"))
	if code != 1 {
		t.Fatalf("migrate run: exit %d, want 1 (paused by the budget)\n%s\n%s", code, out, errb)
	}
	var res struct {
		engine.Result
		Probe *measure.Report `json:"probe"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("migrate run output: %v\n%s", err, out)
	}
	onB := func() []string {
		l, err := env.Client(t).CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: "hitless.dev/data-plane=plane-b"})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, n := range l.Items {
			names = append(names, n.Name)
		}
		return names
	}
	paused := func(wantMoved int) {
		t.Helper()
		raw, err := journal.NewStore(env.Client(t)).Get(context.Background(), res.Operation)
		if err != nil {
			t.Fatal(err)
		}
		if raw.Status != journal.Paused || !strings.Contains(raw.Message, "disruption budget exceeded before node") || !strings.Contains(raw.Message, "maxOutage") {
			t.Fatalf("migration %s: %s %q; want paused by the budget before a node", res.Operation, raw.Status, raw.Message)
		}
		if moved := onB(); len(moved) != wantMoved {
			t.Fatalf("nodes on the target: %v, want %d", moved, wantMoved)
		}
		t.Logf("paused with %d node(s) moved: %s", wantMoved, raw.Message)
	}
	paused(1)
	if res.Probe == nil || len(res.Probe.Windows) == 0 {
		t.Fatalf("the migration's probe report has no loss window: %+v", res.Probe)
	}
	moved := onB()[0]
	for _, w := range res.Probe.Windows {
		if w.Kind == "udp" && w.DurationMs > 1000 && w.Node != moved {
			t.Errorf("loss window %s -> %s (%.0f ms) attributed to node %q, want %s (the one moved)", w.From, w.To, w.DurationMs, w.Node, moved)
		}
	}
	code, out, errb = hitless(t, "resume", res.Operation, "-o", "json")
	if code != 1 {
		t.Fatalf("resume: exit %d, want 1 (paused again)\n%s\n%s", code, out, errb)
	}
	paused(2)
	if code, out, errb := hitless(t, "migrate", "rollback", res.Operation); code != 0 {
		t.Fatalf("rollback: exit %d\n%s\n%s", code, out, errb)
	}
	if moved := onB(); len(moved) != 0 {
		t.Errorf("after the rollback, nodes still on the target: %v", moved)
	}
	if code, out, errb := hitless(t, "uninstall", "--name", "plane-a"); code != 0 {
		t.Fatalf("uninstall: exit %d\n%s\n%s", code, out, errb)
	}
}

package migration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
	"github.com/hitless-dev/hitless/internal/engine/cutover"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	engine "github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
	"github.com/hitless-dev/hitless/internal/measure"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

var env = clustertest.New(clustertest.Options{Workers: 3, Lab: localcluster.LabCNI})

func TestMain(m *testing.M) {
	if os.Getenv(clustertest.EnvRunCLI) == "1" {
		os.Exit(app.Main())
	}
	os.Exit(env.Run(m))
}

// plane is one data plane as the built-in plan's parameters name it.
type plane struct {
	component, namespace, daemonSet, release string
	cniConfigs, links, annotations           string
}

func kubeRouter(t *testing.T) plane {
	dir, err := upstream.Find()
	if err != nil {
		t.Fatal(err)
	}
	return plane{component: "kube-router", namespace: "kube-system", daemonSet: "kube-router",
		release:    filepath.Join(dir, "cni", "kube-router", "kubeadm-kuberouter-v2.1.0.yaml"),
		cniConfigs: "10-kuberouter.conflist", links: "kube-bridge"}
}

func flannel() plane {
	return plane{component: "flannel", namespace: "kube-flannel", daemonSet: "kube-flannel-ds",
		release:    "../../../../examples/flannel-lab/kube-flannel.yaml",
		cniConfigs: "10-flannel.conflist", links: "flannel.1,cni0", annotations: "flannel.alpha.coreos.com/"}
}

// sets are the plan's parameters for a move from one plane to another.
func sets(from, to plane) []string {
	var out []string
	for _, kv := range [][2]string{
		{"from", from.component}, {"fromNamespace", from.namespace}, {"fromDaemonSet", from.daemonSet},
		{"fromCNIConfigs", from.cniConfigs}, {"fromLinks", from.links}, {"fromAnnotations", from.annotations},
		{"to", to.component}, {"toNamespace", to.namespace}, {"toDaemonSet", to.daemonSet},
		{"toCNIConfigs", to.cniConfigs}, {"toLinks", to.links}, {"toAnnotations", to.annotations},
		{"fromValue", from.component}, {"toValue", to.component},
	} {
		out = append(out, "--set", kv[0]+"="+kv[1])
	}
	return append(out, "--release", "to="+to.release)
}

type result struct {
	*engine.Result
	Probe *measure.Report `json:"probe"`
}

// The built-in per-node migration moves a 4-node lab (three workers and
// the control-plane node) from kube-router to flannel and back, each node
// cordoned, drained under the PDB guard, cut over, verified pod to pod by its agent and uncordoned: every node ends
// on the target data plane with its pods wired by it, none cordoned, the
// source gone, and the loss measured per node. The first move is
// interrupted once three nodes are across; two of them are rolled back
// alone (back on kube-router, the third untouched), and running the
// migration again finishes it, moving those two again with the reason
// journaled.
func TestMigrationBothWays(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local cluster (skipped under -short)")
	}
	ctx := context.Background()
	cs := env.Client(t)
	workers := env.NodeNames(t) // every node runs a data plane, the control plane's too
	kr, fl := kubeRouter(t), flannel()

	lifecycletest.MustHitless(t, env, "install", "-f", kr.release, "--name", kr.component)
	env.WaitAgentPods(t)
	ns := env.Namespace(t)
	env.Deployment(t, ns, "web", 8, clustertest.Workload{GracePeriod: 1})
	env.PDB(t, ns, "web", ptr.To(intstr.FromInt32(1)), nil)
	env.WaitDeploymentAvailable(t, ns, "web", 2*time.Minute)

	args := func(from, to plane) []string {
		return append([]string{"--kubeconfig", env.Kubeconfig(t), "migrate", "run", "cni-node-by-node", "--yes", "--probe", "-o", "json"}, sets(from, to)...)
	}
	run := func(ctx context.Context, from, to plane) (int, *result, string) {
		var out, errOut bytes.Buffer
		code := app.Run(ctx, "hitless", args(from, to), genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
		var res result
		_ = json.Unmarshal(out.Bytes(), &res)
		return code, &res, out.String() + "\n" + errOut.String()
	}
	onPlane := func(value string) (on, cordoned []string) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes.Items {
			if n.Labels[cutover.DefaultLabel] == value {
				on = append(on, n.Name)
			}
			if n.Spec.Unschedulable {
				cordoned = append(cordoned, n.Name)
			}
		}
		return on, cordoned
	}
	// finished checks the end of a move: every node on the target, wired
	// by it, none cordoned, the source gone, its leftovers with it.
	finished := func(t *testing.T, from, to plane, res *result) {
		t.Helper()
		said := false
		for _, w := range res.Warnings {
			said = said || strings.Contains(w, "do not reach each other while the cluster is mixed")
		}
		if !said {
			t.Errorf("the migration did not say that %s and %s do not reach each other mixed: warnings %q", from.component, to.component, res.Warnings)
		}
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes.Items {
			if n.Spec.Unschedulable {
				t.Errorf("node %s is left cordoned", n.Name)
			}
			if got := n.Labels[cutover.DefaultLabel]; got != to.component {
				t.Errorf("node %s: %s=%q, want %s", n.Name, cutover.DefaultLabel, got, to.component)
			}
			r, ok := agent.TaskResultOf(&n)
			switch {
			case !ok:
				t.Errorf("node %s: its agent did no task", n.Name)
			case r.CNIConfig != to.cniConfigs:
				t.Errorf("node %s: active CNI configuration %q, want %s", n.Name, r.CNIConfig, to.cniConfigs)
			}
			for k := range n.Annotations {
				if from.annotations != "" && strings.HasPrefix(k, from.annotations) {
					t.Errorf("node %s keeps %s's annotation %s", n.Name, from.component, k)
				}
			}
		}
		if _, err := cs.AppsV1().DaemonSets(from.namespace).Get(ctx, from.daemonSet, metav1.GetOptions{}); err == nil {
			t.Errorf("DaemonSet %s/%s is still there", from.namespace, from.daemonSet)
		}
		ds, err := cs.AppsV1().DaemonSets(to.namespace).Get(ctx, to.daemonSet, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, pinned := ds.Spec.Template.Spec.NodeSelector[cutover.DefaultLabel]; pinned {
			t.Errorf("DaemonSet %s/%s still selects nodes by %s", to.namespace, to.daemonSet, cutover.DefaultLabel)
		}
		if res.Probe == nil || len(measure.PathsOf("udp", res.Probe)) == 0 {
			t.Fatal("the migration has no probe report")
		}
		for _, n := range workers {
			var lost int64
			longest := 0.0
			for _, p := range measure.PathsOf("udp", res.Probe) {
				if p.From == n || p.To == n {
					lost += p.Lost
					longest = max(longest, p.LongestOutageMs)
				}
			}
			t.Logf("%s -> %s, node %s: %d probes lost on its paths, longest outage %.0f ms", from.component, to.component, n, lost, longest)
		}
	}
	// batch is how many nodes may be unschedulable at once: an
	// interrupted roll leaves its node in flight (cordoned) while the
	// rollback rolls another.
	guard := func(t *testing.T, from plane, batch int) *clustertest.Guard {
		return clustertest.StartDataPlaneGuard(t, cs, ns, workers, batch, from.namespace, from.daemonSet)
	}
	guarded := func(t *testing.T, g *clustertest.Guard, replaced, batch int) {
		t.Helper()
		if v := g.Take(true); len(v) > 0 {
			t.Errorf("guard: %s", strings.Join(v, "\n"))
		}
		if n := g.Replaced(); n != replaced {
			t.Errorf("%d source data-plane pods were deleted on drained nodes, want %d", n, replaced)
		}
		if n := g.MaxUnavailable(); n > batch {
			t.Errorf("%d nodes were unavailable at once, want at most %d", n, batch)
		}
	}

	ok := t.Run("kube-router to flannel, two nodes rolled back alone on the way", func(t *testing.T) {
		g := guard(t, kr, 2)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		var id string
		go func() {
			defer close(done)
			_, res, _ := run(rctx, kr, fl)
			id = res.Operation
		}()
		// Interrupt once three nodes are across and uncordoned.
		var moved []string
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 10*time.Minute, true, func(context.Context) (bool, error) {
			on, cordoned := onPlane(fl.component)
			moved = slices.DeleteFunc(on, func(n string) bool { return slices.Contains(cordoned, n) })
			return len(moved) >= 3, nil
		})
		cancel()
		<-done
		if err != nil {
			t.Fatalf("three nodes never moved: %v", err)
		}
		if id == "" {
			t.Fatal("the interrupted migration printed no operation")
		}
		back := moved[:2]
		code, out, errOut := lifecycletest.Hitless(t, env, "migrate", "rollback", id, "--nodes", strings.Join(back, ","), "-o", "json")
		if code != 0 {
			t.Fatalf("migrate rollback --nodes: exit %d\n%s\n%s", code, out, errOut)
		}
		on, cordoned := onPlane(kr.component)
		for _, n := range back {
			if !slices.Contains(on, n) {
				t.Errorf("node %s was rolled back but is not on kube-router", n)
			}
			if slices.Contains(cordoned, n) {
				t.Errorf("node %s was rolled back but is cordoned", n)
			}
		}
		if slices.Contains(on, moved[2]) {
			t.Errorf("node %s was not rolled back but is on kube-router", moved[2])
		}
		if st := migration(t, cs, id).Status; st != journal.Paused {
			t.Errorf("after rolling nodes back alone the migration is %s, want Paused", st)
		}

		code, res, text := run(ctx, kr, fl)
		if code != 0 {
			t.Fatalf("the migration run again: exit %d\n%s", code, text)
		}
		if res.Operation != id || !res.Resumed {
			t.Errorf("the run again is %s (resumed %v), want %s resumed", res.Operation, res.Resumed, id)
		}
		finished(t, kr, fl, res)
		// The two rolled back moved twice, with the reason journaled.
		again := migration(t, cs, id).Record.Again
		if len(again) != 1 || !sameSet(again[0].Nodes, back) || again[0].Reason == "" {
			t.Errorf("moved again: %+v, want %v once with a reason", again, back)
		}
		want := append(slices.Clone(workers), back...)
		if moved := movedNodes(t, cs, id); !sameSet(moved, want) {
			t.Errorf("nodes cut over: %v, want %v", moved, want)
		}
		// kube-router's pod left each node once per move off it: once
		// per node, and twice for the two rolled back.
		guarded(t, g, len(workers)+len(back), 2)
	})
	if !ok {
		t.FailNow()
	}
	env.WaitAgentPods(t)
	t.Run("flannel to kube-router", func(t *testing.T) {
		g := guard(t, fl, 1)
		code, res, text := run(ctx, fl, kr)
		if code != 0 {
			t.Fatalf("the migration: exit %d\n%s", code, text)
		}
		finished(t, fl, kr, res)
		if moved := movedNodes(t, cs, res.Operation); !sameSet(moved, workers) {
			t.Errorf("nodes cut over: %v, want every worker %v", moved, workers)
		}
		guarded(t, g, len(workers), 1)
	})
}

// migration reads a migration's journal.
func migration(t *testing.T, cs kubernetes.Interface, id string) *engine.Journal {
	t.Helper()
	raw, err := journal.NewStore(cs).Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	op, err := journal.Decode[engine.Record](raw)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// movedNodes are the nodes the migration's roll steps cut over, as many
// times as each was (a node moved again after a rollback twice).
func movedNodes(t *testing.T, cs kubernetes.Interface, id string) []string {
	t.Helper()
	var out []string
	for _, ids := range migration(t, cs, id).Record.Rolls {
		for _, rid := range ids {
			raw, err := journal.NewStore(cs).Get(context.Background(), rid)
			if err != nil {
				t.Fatal(err)
			}
			op, err := journal.Decode[roll.Record](raw)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range op.Record.Nodes {
				if n.ActionRuns > 0 {
					out = append(out, n.Name)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

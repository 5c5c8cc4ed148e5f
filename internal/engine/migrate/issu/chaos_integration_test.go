package issu_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/cutover"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	engine "github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

const kills = 10

// fresh uninstalls what an earlier test left, takes the data-plane label
// off every node and installs release (a path) as component name.
func fresh(t *testing.T, installs ...[2]string) {
	t.Helper()
	ctx := context.Background()
	cs := env.Client(t)
	for _, c := range []string{"contrail2", "contrail", "plane-a", "plane-b"} {
		if release.Current(lifecycletest.Revisions(t, env, c)) != nil {
			lifecycletest.MustHitless(t, env, "uninstall", "--name", c, "--force-namespaces")
		}
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if _, ok := n.Labels[cutover.DefaultLabel]; ok {
			if _, err := cs.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(`{"metadata":{"labels":{"`+cutover.DefaultLabel+`":null}}}`), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, in := range installs {
		lifecycletest.MustHitless(t, env, "install", "-f", in[1], "--name", in[0])
	}
}

// moves counts, per node, how often its data-plane label was switched to
// value, from a watch that runs until the test ends.
func moves(t *testing.T, value string) func() map[string]int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := env.Client(t).CoreV1().Nodes().Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	count, last := map[string]int{}, map[string]string{}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			n, ok := ev.Object.(*corev1.Node)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			mu.Lock()
			v, seen := last[n.Name]
			cur := n.Labels[cutover.DefaultLabel]
			if seen && v != value && cur == value {
				count[n.Name]++
			}
			last[n.Name] = cur
			mu.Unlock()
		}
	}()
	return func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range count {
			out[k] = v
		}
		return out
	}
}

// killed checks what every migration killed ten times must show: it
// succeeded, every run counted, each node moved exactly once (no second
// move, so none to journal a reason for), the guard held, no node is left
// cordoned.
func killed(t *testing.T, j *journal.Raw, resuming int, g *clustertest.Guard, moved map[string]int, nodes []string) {
	t.Helper()
	if j.Status != journal.Succeeded {
		t.Errorf("%s: %s (%s)", j.ID, j.Status, j.Message)
	}
	if j.Runs != kills+1 || resuming != kills {
		t.Errorf("%s: %d runs journaled, %d found the journal; want %d and %d", j.ID, j.Runs, resuming, kills+1, kills)
	}
	op, err := journal.Decode[engine.Record](j)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if moved[n] != 1 {
			t.Errorf("node %s was switched %d times, want once", n, moved[n])
		}
	}
	if len(op.Record.Again) > 0 {
		t.Errorf("nodes moved again: %+v", op.Record.Again)
	}
	if v := g.Take(true); len(v) > 0 {
		t.Errorf("guard: %s", strings.Join(v, "\n"))
	}
	if g.Replaced() != len(nodes) {
		t.Errorf("%d old data-plane pods left drained nodes, want %d (one per node)", g.Replaced(), len(nodes))
	}
	l, err := env.Client(t).CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Items {
		if n.Spec.Unschedulable {
			t.Errorf("node %s is left cordoned", n.Name)
		}
	}
}

// The ISSU killed with SIGKILL at ten random moments, each time run again:
// the same operation finishes, each vRouter moved once, on a drained node,
// the new release configured and nothing of the old left.
func TestISSUKilledTenTimes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local cluster (skipped under -short)")
	}
	cs := env.Client(t)
	nodes := env.NodeNames(t)
	fresh(t, [2]string{"contrail", v2})
	ns := env.Namespace(t)
	env.Deployment(t, ns, "web", 4, clustertest.Workload{GracePeriod: 1})
	env.PDB(t, ns, "web", ptr.To(intstr.FromInt32(1)), nil)
	env.WaitDeploymentAvailable(t, ns, "web", 2*time.Minute)
	g := clustertest.StartDataPlaneGuard(t, cs, ns, nodes, 1, "contrail", "contrail-vrouter-nodes")
	moved := moves(t, newPlane)
	j, resuming := env.KillAndRerun(t, clustertest.Kills{Kind: engine.Kind, Times: kills, MaxDelay: 6 * time.Second},
		"migrate", "run", "sample-plugin-issu", "--yes", "--set", "from=contrail", "--set", "to=contrail2",
		"--set", "skipVerify=true", "--set", "syncInterval=1s", "--release", "to="+v3)
	killed(t, j, resuming, g, moved(), nodes)
	newReleaseConfigured(t, dynamic.NewForConfigOrDie(env.Config(t)), 180)
	oldReleaseGone(t)
}

// The per-node CNI migration killed with SIGKILL at ten random moments,
// each time run again: it finishes with every node on the target, each
// moved once, on a drained node.
func TestCNIMigrationKilledTenTimes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local cluster (skipped under -short)")
	}
	cs := env.Client(t)
	nodes := env.NodeNames(t)
	fresh(t, [2]string{"plane-a", lifecycletest.WriteFile(t, "plane-a.yaml", clustertest.DataPlaneRelease("plane-a"))})
	ns := env.Namespace(t)
	// Drains of 3 s and kills within 2 s of each run's start: the
	// migration outlasts ten kills (the runs restart quickly).
	env.Deployment(t, ns, "web", 4, clustertest.Workload{GracePeriod: 3})
	env.PDB(t, ns, "web", ptr.To(intstr.FromInt32(1)), nil)
	env.WaitDeploymentAvailable(t, ns, "web", 2*time.Minute)
	g := clustertest.StartDataPlaneGuard(t, cs, ns, nodes, 1, "plane-a", "plane-a")
	moved := moves(t, "plane-b")
	j, resuming := env.KillAndRerun(t, clustertest.Kills{Kind: engine.Kind, Times: kills, MaxDelay: 2 * time.Second},
		"migrate", "run", "cni-node-by-node", "--yes", "--set", "skipVerify=true",
		"--set", "from=plane-a", "--set", "fromNamespace=plane-a", "--set", "fromDaemonSet=plane-a", "--set", "fromValue=plane-a",
		"--set", "to=plane-b", "--set", "toNamespace=plane-b", "--set", "toDaemonSet=plane-b", "--set", "toValue=plane-b",
		"--release", "to="+lifecycletest.WriteFile(t, "plane-b.yaml", clustertest.DataPlaneRelease("plane-b")))
	killed(t, j, resuming, g, moved(), nodes)
	if release.Current(lifecycletest.Revisions(t, env, "plane-a")) != nil {
		t.Error("the source plane is still installed")
	}
	ds, err := cs.AppsV1().DaemonSets("plane-b").Get(context.Background(), "plane-b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Status.NumberAvailable != int32(len(nodes)) || hasKey(ds.Spec.Template.Spec.NodeSelector, cutover.DefaultLabel) {
		t.Errorf("the target plane: %d of %d available, node selector %v", ds.Status.NumberAvailable, len(nodes), ds.Spec.Template.Spec.NodeSelector)
	}
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

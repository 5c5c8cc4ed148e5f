package chaos_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

var env = clustertest.New(clustertest.Options{Workers: 3, QuickTermination: true})

func TestMain(m *testing.M) {
	if os.Getenv(clustertest.EnvRunCLI) == "1" {
		os.Exit(app.Main())
	}
	os.Exit(env.Run(m))
}

const (
	pluginV1  = "../../../../examples/sample-plugin/v1"
	pluginV2  = "../../../../examples/sample-plugin/v2"
	component = "contrail"
	kills     = 10
)

// bystanders are the cluster's objects that are not the component's: its
// namespaces, hitless's own records, the workloads' pods and what the
// controllers derive from them (which a drain legitimately replaces), and
// the API services the API server registers for each served group (its
// CRDs' among them) are left out.
func bystanders(gr schema.GroupResource, u *unstructured.Unstructured) bool {
	switch u.GetNamespace() {
	case "contrail", "contrail-system", "contrail-deploy", store.Namespace:
		return true
	}
	if u.GetLabels()["hitless.dev/name"] == component || u.GetLabels()["kube-aggregator.kubernetes.io/automanaged"] != "" {
		return true
	}
	switch gr.Resource {
	case "pods", "replicasets", "controllerrevisions", "endpoints", "endpointslices", "nodes":
		return true
	}
	return false
}

// holdNamespace puts a ConfigMap with a finalizer of the test's in the
// component's namespace, so that the namespace, once deleted, stays
// terminating until the returned release takes the finalizer off.
func holdNamespace(t *testing.T) func() {
	t.Helper()
	ctx := context.Background()
	cms := env.Client(t).CoreV1().ConfigMaps(component)
	const name, finalizer = "held", "hitless.dev/chaos-test-hold"
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: []string{finalizer}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return func() {
		clustertest.Eventually(t, time.Minute, func() error {
			cm, err := cms.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cm.Finalizers = nil
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
			return err
		})
	}
}

func cordoned(t *testing.T) []string {
	t.Helper()
	nodes, err := env.Client(t).CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable {
			out = append(out, n.Name)
		}
	}
	return out
}

// TestKilledTenTimes kills an upgrade, its rollback and the uninstall ten
// times each at random moments and re-runs the same command: each
// finishes; the application's PDB holds and the data plane is replaced
// only on drained nodes throughout; no node is left cordoned; nothing
// that was not the component's is deleted; the journal counts the runs.
func TestKilledTenTimes(t *testing.T) {
	cs := env.Client(t)
	ctx := context.Background()
	apps := env.Namespace(t)
	env.Deployment(t, apps, "web", 4, clustertest.Workload{})
	env.PDB(t, apps, "web", ptr.To(intstr.FromInt32(1)), nil)
	env.WaitDeploymentAvailable(t, apps, "web", time.Minute)
	if _, err := cs.CoreV1().ConfigMaps("kube-system").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bystander"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lifecycletest.MustHitless(t, env, "install", "-f", pluginV1, "--name", component)
	pool := env.NodeNames(t)

	// Each kill lands up to maxDelay after the run counted itself, every
	// run going a little further: the uninstall, mostly waiting for
	// namespaces to go, is killed sooner than the upgrade and rollback
	// (a few seconds of work here each). The namespaces go on terminating
	// while the killed runs restart, so the uninstall's namespace is held
	// by a finalizer until the tenth kill: without it the last runs could
	// find nothing left to wait for and end before their kill.
	for _, op := range []struct {
		kind      string
		args      []string
		dataPlane bool
		maxDelay  time.Duration
		hold      func(t *testing.T) (release func())
	}{
		{"upgrade", []string{"upgrade", "-f", pluginV2, "--name", component}, true, 800 * time.Millisecond, nil},
		{"rollback", []string{"rollback", "--name", component}, true, 800 * time.Millisecond, nil},
		{"uninstall", []string{"uninstall", "--name", component, "--force-namespaces"}, false, 300 * time.Millisecond, holdNamespace},
	} {
		t.Run(op.kind, func(t *testing.T) {
			var release func()
			if op.hold != nil {
				release = op.hold(t)
			}
			before := clustertest.Snapshot(t, env.Config(t), bystanders)
			var g *clustertest.Guard
			if op.dataPlane {
				g = clustertest.StartDataPlaneGuard(t, cs, apps, pool, 1, "contrail", "contrail-vrouter-nodes")
			} else {
				g = clustertest.StartGuard(t, cs, apps, pool, 1)
			}
			j, resuming := env.KillAndRerun(t, clustertest.Kills{Kind: op.kind, Times: kills, MaxDelay: op.maxDelay, Release: release}, op.args...)
			if j.Status != journal.Succeeded {
				t.Errorf("%s %s: %s (%s)", op.kind, j.ID, j.Status, j.Message)
			}
			// Every run was killed only once it had counted itself: the
			// journal counts each of them and the last.
			if j.Runs != kills+1 || resuming != kills {
				t.Errorf("%s %s: %d runs journaled, %d found the journal; want %d and %d", op.kind, j.ID, j.Runs, resuming, kills+1, kills)
			}
			t.Logf("%s %s: %d runs journaled of %d that found it", op.kind, j.ID, j.Runs, resuming)
			if v := g.Take(true); len(v) > 0 {
				t.Errorf("guard: %v", v)
			}
			if op.dataPlane && g.Replaced() < len(pool) {
				t.Errorf("%d vRouter pods replaced on drained nodes, want every node's (%d)", g.Replaced(), len(pool))
			}
			if left := cordoned(t); len(left) > 0 {
				t.Errorf("nodes left cordoned: %v", left)
			}
			after := clustertest.Snapshot(t, env.Config(t), bystanders)
			var lost []string
			for k := range before {
				if _, ok := after[k]; !ok {
					lost = append(lost, k)
				}
			}
			if len(lost) > 0 {
				slices.Sort(lost)
				t.Errorf("deleted, and not the component's: %v", lost)
			}
		})
	}
	if _, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, "bystander", metav1.GetOptions{}); err != nil {
		t.Errorf("the bystander ConfigMap: %v", err)
	}
	// A crash after the uninstall finished, then the same command: it
	// says so and succeeds.
	if code, out, errOut := lifecycletest.Hitless(t, env, "uninstall", "--name", component, "--force-namespaces", "-o", "json"); code != 0 || !strings.Contains(out, "already uninstalled by operation uninstall-") {
		t.Errorf("uninstall once more: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestAPIServerRestarts restarts kube-apiserver in the middle of an
// upgrade (once a node is cordoned) and of an uninstall (once it is
// journaled): the operation rides through, or the same command run again
// finishes it, with the PDB held and no node left cordoned.
func TestAPIServerRestarts(t *testing.T) {
	cs := env.Client(t)
	apps := env.Namespace(t)
	env.Deployment(t, apps, "web", 4, clustertest.Workload{})
	env.PDB(t, apps, "web", ptr.To(intstr.FromInt32(1)), nil)
	env.WaitDeploymentAvailable(t, apps, "web", time.Minute)
	lifecycletest.MustHitless(t, env, "install", "-f", pluginV1, "--name", component)
	pool := env.NodeNames(t)
	for _, op := range []struct {
		kind string
		args []string
		mid  func() error // nil once the operation is where the restart belongs
	}{
		{"upgrade", []string{"upgrade", "-f", pluginV2, "--name", component}, func() error {
			if len(cordoned(t)) == 0 {
				return errors.New("no node cordoned yet")
			}
			return nil
		}},
		{"uninstall", []string{"uninstall", "--name", component, "--force-namespaces"}, func() error { return nil }},
	} {
		t.Run(op.kind, func(t *testing.T) {
			g := clustertest.StartGuard(t, cs, apps, pool, 1)
			since := time.Now().Add(-time.Second).UTC().Truncate(time.Second)
			cmd, out, done := env.StartCLI(t, op.args...)
			clustertest.Eventually(t, 2*time.Minute, func() error {
				select {
				case err := <-done:
					t.Fatalf("%s ended (%v) before the API server restart\n%s", op.kind, err, out)
				default:
				}
				if env.OperationSince(t, op.kind, since) == nil {
					return errors.New("not journaled yet")
				}
				return op.mid()
			})
			env.Restart(t, "kube-apiserver")
			err := clustertest.WaitCLI(t, cmd, out, done, 5*time.Minute)
			runs := 1
			for err != nil && runs < 4 {
				t.Logf("run %d: %v; the same command again:\n%s", runs, err, out)
				cmd, out, done = env.StartCLI(t, op.args...)
				err = clustertest.WaitCLI(t, cmd, out, done, 5*time.Minute)
				runs++
			}
			if err != nil {
				t.Fatalf("%s did not finish in %d runs: %v\n%s", op.kind, runs, err, out)
			}
			j := env.OperationSince(t, op.kind, since)
			if j == nil || j.Status != journal.Succeeded {
				t.Fatalf("%s after the restart: %+v", op.kind, j)
			}
			t.Logf("%s finished in %d run(s) across the API server restart; the last run printed:\n%s", op.kind, runs, out)
			if v := g.Take(true); len(v) > 0 {
				t.Errorf("guard: %v", v)
			}
			if left := cordoned(t); len(left) > 0 {
				t.Errorf("nodes left cordoned: %v", left)
			}
		})
	}
}

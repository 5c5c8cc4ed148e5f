package chaos_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
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

// envRunCLI makes the test binary act as the hitless CLI, so that the
// tests can SIGKILL real processes.
const envRunCLI = "HITLESS_TEST_RUN_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(envRunCLI) == "1" {
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

// start runs the CLI as a process of its own.
func start(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer, chan error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--kubeconfig", env.Kubeconfig(t)}, args...)...) //nolint:gosec // the test binary
	cmd.Env = append(os.Environ(), envRunCLI+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, &out, done
}

// opOf returns the journal of the operation of kind started since, or nil.
func opOf(t *testing.T, kind string, since time.Time) *journal.Raw {
	t.Helper()
	ops, err := journal.NewStore(env.Client(t)).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var found *journal.Raw
	for _, op := range ops {
		if op.Kind == kind && !op.Started.Before(since) {
			if found != nil && found.ID != op.ID {
				t.Fatalf("two %s operations since %s: %s and %s; a re-run must resume, not start anew", kind, since, found.ID, op.ID)
			}
			found = op
		}
	}
	return found
}

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

// chaos runs the command and kills it with SIGKILL at a random moment
// after the run has begun acting (its journal created, or its run
// counted in it): ten times, then lets it finish. It returns the
// operation's journal and how many runs found it.
func chaos(t *testing.T, kind string, maxDelay time.Duration, args ...string) (*journal.Raw, int) {
	t.Helper()
	since := time.Now().Add(-time.Second).UTC().Truncate(time.Second)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 17)) //nolint:gosec // random kill moments
	resuming, runs := 0, 0
	for k := 0; k < kills; k++ {
		if opOf(t, kind, since) != nil {
			resuming++ // this run finds the journal
		}
		cmd, out, done := start(t, args...)
		// However slow the process starts (a race-instrumented binary on
		// a busy machine), the kill lands in the operation.
		clustertest.Eventually(t, 2*time.Minute, func() error {
			select {
			case err := <-done:
				t.Fatalf("kill %d: %s ended (%v) before it was killed; the operation is too short for %d kills\n%s", k+1, kind, err, kills, out)
			default:
			}
			if op := opOf(t, kind, since); op != nil && op.Runs > runs {
				runs = op.Runs
				return nil
			}
			return errors.New("this run has not journaled yet")
		})
		delay := time.Duration(rng.Int64N(int64(maxDelay)))
		select {
		case err := <-done:
			t.Fatalf("kill %d: %s ended (%v) before the kill %s into it; the operation is too short for %d kills\n%s", k+1, kind, err, delay, kills, out)
		case <-time.After(delay):
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		t.Logf("kill %d %s after run %d journaled", k+1, delay.Round(time.Millisecond), runs)
	}
	resuming++ // the last run finds it
	cmd, out, done := start(t, args...)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the run after %d kills: %v\n%s", kills, err, out)
		}
	case <-time.After(5 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("the run after %d kills hung\n%s", kills, out)
	}
	op := opOf(t, kind, since)
	if op == nil {
		t.Fatalf("no %s journal", kind)
	}
	return op, resuming
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
	// (a few seconds of work here each).
	for _, op := range []struct {
		kind      string
		args      []string
		dataPlane bool
		maxDelay  time.Duration
	}{
		{"upgrade", []string{"upgrade", "-f", pluginV2, "--name", component}, true, 800 * time.Millisecond},
		{"rollback", []string{"rollback", "--name", component}, true, 800 * time.Millisecond},
		{"uninstall", []string{"uninstall", "--name", component, "--force-namespaces"}, false, 300 * time.Millisecond},
	} {
		t.Run(op.kind, func(t *testing.T) {
			before := clustertest.Snapshot(t, env.Config(t), bystanders)
			var g *clustertest.Guard
			if op.dataPlane {
				g = clustertest.StartDataPlaneGuard(t, cs, apps, pool, 1, "contrail", "contrail-vrouter-nodes")
			} else {
				g = clustertest.StartGuard(t, cs, apps, pool, 1)
			}
			j, resuming := chaos(t, op.kind, op.maxDelay, op.args...)
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
			_, out, done := start(t, op.args...)
			clustertest.Eventually(t, 2*time.Minute, func() error {
				select {
				case err := <-done:
					t.Fatalf("%s ended (%v) before the API server restart\n%s", op.kind, err, out)
				default:
				}
				if opOf(t, op.kind, since) == nil {
					return errors.New("not journaled yet")
				}
				return op.mid()
			})
			env.Restart(t, "kube-apiserver")
			err := <-done
			runs := 1
			for err != nil && runs < 4 {
				t.Logf("run %d: %v; the same command again:\n%s", runs, err, out)
				_, out, done = start(t, op.args...)
				err = <-done
				runs++
			}
			if err != nil {
				t.Fatalf("%s did not finish in %d runs: %v\n%s", op.kind, runs, err, out)
			}
			j := opOf(t, op.kind, since)
			if j == nil || j.Status != journal.Succeeded {
				t.Fatalf("%s after the restart: %+v", op.kind, j)
			}
			t.Logf("%s finished in %d run(s) across the API server restart", op.kind, runs)
			if v := g.Take(true); len(v) > 0 {
				t.Errorf("guard: %v", v)
			}
			if left := cordoned(t); len(left) > 0 {
				t.Errorf("nodes left cordoned: %v", left)
			}
		})
	}
}

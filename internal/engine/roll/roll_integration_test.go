package roll_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubectl/pkg/util/podutils"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

var env = clustertest.New(clustertest.Options{Workers: 2})

// envRunCLI makes the test binary act as the hitless CLI, so tests can run
// and SIGKILL real `hitless roll` processes.
const envRunCLI = "HITLESS_TEST_RUN_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(envRunCLI) == "1" {
		os.Exit(app.MainWith(app.Options{Actions: testActions()}))
	}
	os.Exit(env.Run(m))
}

// pool adds n nodes labelled for one test, and protected workloads pinned
// to them: web (2 pods a node, PDB maxUnavailable 1) and api (one a node,
// PDB minAvailable n-1), with 1 s grace periods; and starts the guard that
// fails the test if the roll breaks a PDB or takes more than batch nodes
// away at once.
func pool(t *testing.T, n, batch int) (ns, selector string, nodes []string, g *clustertest.Guard) {
	t.Helper()
	id := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(id) > 50 {
		id = id[len(id)-50:]
	}
	id = strings.Trim(id, "-")
	nodes = env.AddNodes(t, n, map[string]string{"roll-test": id})
	ns = env.Namespace(t)
	sel := map[string]string{"roll-test": id}
	env.Deployment(t, ns, "web", int32(2*n), clustertest.Workload{GracePeriod: 1, NodeSelector: sel})
	env.Deployment(t, ns, "api", int32(n), clustertest.Workload{GracePeriod: 1, NodeSelector: sel})
	env.PDB(t, ns, "web", ptr.To(intstr.FromInt32(1)), nil)
	env.PDB(t, ns, "api", nil, ptr.To(intstr.FromInt32(int32(n-1))))
	env.WaitDeploymentAvailable(t, ns, "web", time.Minute)
	env.WaitDeploymentAvailable(t, ns, "api", time.Minute)
	g = clustertest.StartGuard(t, env.Client(t), ns, nodes, batch)
	return ns, "roll-test=" + id, nodes, g
}

func hitless(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"--kubeconfig", env.Kubeconfig(t)}, args...)
	code := app.RunWith(context.Background(), "hitless", args, genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, app.Options{Actions: testActions()})
	return code, out.String(), errOut.String()
}

// cliProcess starts `hitless ARGS` as a real process.
func cliProcess(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envRunCLI+"=1", "KUBECONFIG="+env.Kubeconfig(t))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

func lastRoll(t *testing.T, cs kubernetes.Interface) *roll.Journal {
	t.Helper()
	op := lastRollOrNil(t, cs)
	if op == nil {
		t.Fatal("no roll journaled")
	}
	return op
}

func lastRollOrNil(t *testing.T, cs kubernetes.Interface) *roll.Journal {
	t.Helper()
	ops, err := journal.NewStore(cs).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if op.Kind == roll.Kind {
			j, err := journal.Decode[roll.Record](op)
			if err != nil {
				t.Fatal(err)
			}
			return j
		}
	}
	return nil
}

func cordoned(t *testing.T, cs kubernetes.Interface, names []string) []string {
	t.Helper()
	var out []string
	for _, n := range names {
		node, err := cs.CoreV1().Nodes().Get(context.Background(), n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if node.Spec.Unschedulable {
			out = append(out, n)
		}
		if v := node.Annotations[roll.AnnotationOperation]; v != "" {
			t.Errorf("node %s still marked by operation %s", n, v)
		}
	}
	return out
}

func assertLockFree(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	h, err := lock.Current(context.Background(), cs)
	if err != nil {
		t.Fatal(err)
	}
	if h != nil {
		t.Errorf("lock still held by %+v", *h)
	}
}

// TestCrashAndResume kills the CLI with SIGKILL at random moments of a
// 20-node roll and re-runs the same command each time.
func TestCrashAndResume(t *testing.T) {
	cs := env.Client(t)
	_, selector, nodes, _ := pool(t, 20, 2)
	actions := filepath.Join(t.TempDir(), "actions")
	args := []string{"roll", "--selector", selector, "--batch", "2", "--evict-retry-delay", "200ms",
		"--exec", `echo "$HITLESS_NODE" >> ` + actions}
	counts := func() map[string]int {
		b, _ := os.ReadFile(actions)
		c := map[string]int{}
		for _, l := range strings.Fields(string(b)) {
			c[l]++
		}
		return c
	}
	kills := 0
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for run := 0; run < 40; run++ {
		var doneBefore map[string]int
		if run > 0 {
			op := lastRoll(t, cs)
			doneBefore = map[string]int{}
			c := counts()
			for _, n := range op.Record.Nodes {
				if n.Phase == roll.PhaseDone {
					doneBefore[n.Name] = c[n.Name]
				}
			}
		}
		cmd, out := cliProcess(t, args...)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		var err error
		killed := false
		if kills < 12 {
			select {
			case err = <-exited:
			case <-time.After(time.Duration(300+rng.IntN(1500)) * time.Millisecond):
				_ = cmd.Process.Signal(syscall.SIGKILL)
				err = <-exited
				killed = true
				kills++
			}
		} else {
			select {
			case err = <-exited:
			case <-time.After(5 * time.Minute):
				_ = cmd.Process.Kill()
				t.Fatalf("final roll did not finish:\n%s", out)
			}
		}
		c := counts()
		for n, before := range doneBefore {
			if c[n] != before {
				t.Errorf("run %d ran the action of node %s again after it had finished (%d -> %d)", run, n, before, c[n])
			}
		}
		if !killed {
			if err != nil {
				t.Fatalf("run %d: %v\n%s", run, err, out)
			}
			break
		}
	}
	if kills < 10 {
		t.Errorf("only %d kills: the roll finished too fast to test resuming", kills)
	}
	op := lastRoll(t, cs)
	if op.Status != journal.Succeeded || op.Runs < kills+1 {
		t.Errorf("journal: status %s after %d runs, want Succeeded after %d", op.Status, op.Runs, kills+1)
	}
	c := counts()
	for _, n := range op.Record.Nodes {
		if n.Phase != roll.PhaseDone {
			t.Errorf("node %s ended in phase %s", n.Name, n.Phase)
		}
		if c[n.Name] < 1 {
			t.Errorf("node %s never ran its action", n.Name)
		}
		if c[n.Name] > n.ActionRuns {
			t.Errorf("node %s ran its action %d times but the journal counts %d starts", n.Name, c[n.Name], n.ActionRuns)
		}
		if c[n.Name] > 1 && len(n.Notes) == 0 {
			t.Errorf("node %s ran its action %d times and the journal does not say why", n.Name, c[n.Name])
		}
	}
	if left := cordoned(t, cs, nodes); len(left) > 0 {
		t.Errorf("nodes left cordoned: %v", left)
	}
	assertLockFree(t, cs)
	t.Logf("%d kills, %d runs", kills, op.Runs)
}

// TestCordonedByOthersStayCordoned: a node the user cordoned before the
// roll is still cordoned after; a node outside the roll is never touched.
func TestCordonedByOthersStayCordoned(t *testing.T) {
	cs := env.Client(t)
	_, selector, nodes, _ := pool(t, 4, 2)
	outside := env.AddNodes(t, 1, nil)[0]
	ctx := context.Background()
	for _, n := range []string{nodes[1], outside} {
		if _, err := cs.CoreV1().Nodes().Patch(ctx, n, "application/merge-patch+json", []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := hitless(t, "roll", "--selector", selector, "--batch", "2", "--evict-retry-delay", "200ms")
	if code != 0 {
		t.Fatalf("roll: exit %d\n%s%s", code, out, errOut)
	}
	if left := cordoned(t, cs, nodes); len(left) != 1 || left[0] != nodes[1] {
		t.Errorf("cordoned after the roll: %v, want only %s", left, nodes[1])
	}
	if !strings.Contains(out, "left cordoned: it was cordoned before the roll") {
		t.Errorf("recap does not say %s stays cordoned:\n%s", nodes[1], out)
	}
	if left := cordoned(t, cs, []string{outside}); len(left) != 1 {
		t.Errorf("node %s outside the roll was uncordoned", outside)
	}
	// Without an action the drain and the uncordon are one event, which
	// says both; a node left cordoned says it was drained.
	for _, tc := range []struct {
		node    string
		reasons string
		says    string
	}{
		{nodes[0], "Cordoned,Uncordoned", "pods evicted; then uncordoned it"},
		{nodes[1], "Cordoned,Drained", "hitless drained the node: "},
	} {
		evs, err := cs.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + tc.node})
		if err != nil {
			t.Fatal(err)
		}
		var reasons []string
		said := false
		for _, e := range evs.Items {
			if e.Source.Component == "hitless" {
				reasons = append(reasons, e.Reason)
				said = said || strings.Contains(e.Message, tc.says)
			}
		}
		slices.Sort(reasons)
		if strings.Join(reasons, ",") != tc.reasons || !said {
			t.Errorf("events on node %s: %v, want %s, one saying %q", tc.node, reasons, tc.reasons, tc.says)
		}
	}
	assertLockFree(t, cs)
}

// TestPDBThatNeverAllowsEviction: the drain-timeout policy is obeyed and
// the recap names the blocking PDB and pods.
func TestPDBThatNeverAllowsEviction(t *testing.T) {
	cs := env.Client(t)
	tests := []struct {
		policy   string
		wantCode int
		outcome  string
	}{
		{roll.OnDrainTimeoutSkip, exitcode.OK, roll.OutcomeSkipped},
		{roll.OnDrainTimeoutFail, exitcode.Failed, roll.OutcomeFailed},
		{roll.OnDrainTimeoutUncordon, exitcode.Failed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			nodes := env.AddNodes(t, 1, map[string]string{"stuck": tt.policy})
			ns := env.Namespace(t)
			env.Deployment(t, ns, "frozen", 2, clustertest.Workload{GracePeriod: 1, NodeSelector: map[string]string{"stuck": tt.policy}})
			env.PDB(t, ns, "frozen", nil, ptr.To(intstr.FromInt32(2)))
			env.WaitDeploymentAvailable(t, ns, "frozen", time.Minute)
			clustertest.StartGuard(t, cs, ns, nodes, 1)
			code, out, errOut := hitless(t, "roll", "--selector", "stuck="+tt.policy, "--drain-timeout", "3s",
				"--on-drain-timeout", tt.policy, "--evict-retry-delay", "500ms", "-o", "json")
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s", code, tt.wantCode, errOut)
			}
			var res roll.Result
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("-o json: %v\n%s", err, out)
			}
			row := res.Recap[0]
			if res.Operation.Record.Nodes[0].Outcome != tt.outcome {
				t.Errorf("outcome %q, want %q", res.Operation.Record.Nodes[0].Outcome, tt.outcome)
			}
			blockers := strings.Join(append(row.Blockers, res.Operation.Record.Nodes[0].Notes...), " ") + row.Error
			if !strings.Contains(blockers, "frozen") {
				t.Errorf("recap does not name the blocking PDB or pods: %+v", row)
			}
			if left := cordoned(t, cs, nodes); len(left) != 0 {
				t.Errorf("node left cordoned after a blocked drain: %v", left)
			}
			assertLockFree(t, cs)
		})
	}
}

// TestNoRoomForEvictedPods: a batch holding every node a PDB-guarded
// workload fits would evict its pods with nowhere to start them again, so
// its drains could never finish: the plan refuses it naming the PDB and
// the pods, changing nothing; a batch that leaves a node they fit rolls.
func TestNoRoomForEvictedPods(t *testing.T) {
	cs := env.Client(t)
	nodes := env.AddNodes(t, 2, map[string]string{"pinned": "yes"})
	ns := env.Namespace(t)
	env.Deployment(t, ns, "pinned", 2, clustertest.Workload{GracePeriod: 1, NodeSelector: map[string]string{"pinned": "yes"}})
	env.PDB(t, ns, "pinned", nil, ptr.To(intstr.FromInt32(1)))
	env.WaitDeploymentAvailable(t, ns, "pinned", time.Minute)
	clustertest.StartGuard(t, cs, ns, nodes, 2)
	code, out, errOut := hitless(t, "roll", "--selector", "pinned=yes", "--batch", "100%")
	if code != exitcode.Failed || !strings.Contains(errOut, "[no-room]") || !strings.Contains(out, "PodDisruptionBudget "+ns+"/pinned allows 1 disruption(s)") {
		t.Fatalf("roll of every node the pods fit: exit %d, want 1 naming the PDB\n%s%s", code, out, errOut)
	}
	if left := cordoned(t, cs, nodes); len(left) != 0 {
		t.Errorf("a refused plan cordoned %v", left)
	}
	assertLockFree(t, cs)
	if code, out, errOut := hitless(t, "roll", "--selector", "pinned=yes", "--batch", "1"); code != 0 {
		t.Fatalf("roll one node at a time: exit %d\n%s%s", code, out, errOut)
	}
}

// TestUnmanagedPods: the plan fails naming them; --force deletes them and says so.
func TestUnmanagedPods(t *testing.T) {
	cs := env.Client(t)
	nodes := env.AddNodes(t, 1, map[string]string{"unmanaged": "yes"})
	ns := env.Namespace(t)
	env.UnmanagedPod(t, ns, "loner", clustertest.Workload{GracePeriod: 1, NodeName: nodes[0]})
	clustertest.StartGuard(t, cs, ns, nodes, 1)
	clustertest.Eventually(t, time.Minute, func() error {
		p, err := cs.CoreV1().Pods(ns).Get(context.Background(), "loner", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != "Running" {
			return fmt.Errorf("loner is %s", p.Status.Phase)
		}
		return nil
	})
	code, out, errOut := hitless(t, "roll", "--selector", "unmanaged=yes")
	if code != exitcode.Failed || !strings.Contains(errOut, ns+"/loner") || !strings.Contains(out, "Non managed pod exists") {
		t.Fatalf("plan with an unmanaged pod: exit %d, want 1 naming %s/loner\n%s%s", code, ns, out, errOut)
	}
	if left := cordoned(t, cs, nodes); len(left) != 0 {
		t.Errorf("a blocked plan changed the cluster: %v cordoned", left)
	}
	code, out, errOut = hitless(t, "roll", "--selector", "unmanaged=yes", "--force")
	if code != 0 {
		t.Fatalf("roll --force: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "deleted unmanaged pods (--force): "+ns+"/loner") {
		t.Errorf("recap does not say the unmanaged pod was deleted:\n%s", out)
	}
}

// TestSecondRollIsRefused: a second mutating command while a roll runs
// exits 3 and names the holder.
func TestSecondRollIsRefused(t *testing.T) {
	cs := env.Client(t)
	_, selector, nodes, _ := pool(t, 2, 1)
	cmd, out := cliProcess(t, "roll", "--selector", selector, "--exec", "sleep 3")
	defer func() { _ = cmd.Wait() }()
	clustertest.Eventually(t, 30*time.Second, func() error {
		h, err := lock.Current(context.Background(), cs)
		if err != nil {
			return err
		}
		if h == nil {
			return errors.New("lock not taken yet")
		}
		return nil
	})
	code, _, errOut := hitless(t, "roll", "--nodes", nodes[0], "--exec", "true")
	if code != exitcode.Locked {
		t.Errorf("second roll: exit %d, want 3\n%s", code, errOut)
	}
	for _, want := range []string{"holds the cluster lock", "operation roll-", "pid", "started"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("refusal does not name the holder (%q):\n%s", want, errOut)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("first roll: %v\n%s", err, out)
	}
	assertLockFree(t, cs)
}

// TestAbortUncordonsAndReleases aborts a running roll from another process.
func TestAbortUncordonsAndReleases(t *testing.T) {
	cs := env.Client(t)
	_, selector, nodes, _ := pool(t, 3, 1)
	cmd, out := cliProcess(t, "roll", "--selector", selector, "--exec", "sleep 30")
	var op *roll.Journal
	clustertest.Eventually(t, 30*time.Second, func() error {
		op = lastRoll(t, cs)
		for _, n := range op.Record.Nodes {
			if n.Phase == roll.PhaseAction {
				return nil
			}
		}
		return fmt.Errorf("no node in its action yet")
	})
	code, stdout, errOut := hitless(t, "abort", op.ID)
	if code != 0 {
		t.Fatalf("abort: exit %d\n%s%s", code, stdout, errOut)
	}
	_ = cmd.Wait()
	if got := lastRoll(t, cs); got.Status != journal.Aborted {
		t.Errorf("status %s after abort, want Aborted\n%s", got.Status, out)
	}
	if left := cordoned(t, cs, nodes); len(left) != 0 {
		t.Errorf("nodes left cordoned after abort: %v", left)
	}
	assertLockFree(t, cs)
}

// TestGuardCatchesABrokenPDB proves the guard can fail: deleting pods
// around their PDB, as a drain without the Eviction API would, is seen.
func TestGuardCatchesABrokenPDB(t *testing.T) {
	cs := env.Client(t)
	ns, _, nodes, g := pool(t, 2, 1)
	ctx := context.Background()
	if err := cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app=web"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if _, err := cs.CoreV1().Nodes().Patch(ctx, n, "application/merge-patch+json", []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	clustertest.Eventually(t, 10*time.Second, func() error {
		seen = append(seen, g.Take(false)...)
		joined := strings.Join(seen, "\n")
		if !strings.Contains(joined, "PDB web") || !strings.Contains(joined, "nodes unavailable at once") {
			return fmt.Errorf("guard saw only: %v", seen)
		}
		return nil
	})
	g.Take(true)
	for _, n := range nodes {
		_, _ = cs.CoreV1().Nodes().Patch(ctx, n, "application/merge-patch+json", []byte(`{"spec":{"unschedulable":null}}`), metav1.PatchOptions{})
	}
}

// TestControlPlaneRestartMidRoll restarts kube-apiserver, then etcd,
// while a roll runs: the roll rides through or, when a run fails, the same
// command finishes it; no node is left cordoned and the PDB held.
func TestControlPlaneRestartMidRoll(t *testing.T) {
	for _, component := range []string{"kube-apiserver", "etcd"} {
		t.Run(component, func(t *testing.T) {
			cs := env.Client(t)
			_, selector, nodes, g := pool(t, 4, 1)
			args := []string{"roll", "--selector", selector, "--exec", "sleep 1", "--evict-retry-delay", "200ms"}
			cmd, out := cliProcess(t, args...)
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			time.Sleep(2500 * time.Millisecond)
			env.Restart(t, component)
			var err error
			select {
			case err = <-exited:
			case <-time.After(3 * time.Minute):
				_ = cmd.Process.Kill()
				t.Fatalf("roll hung after the %s restart:\n%s", component, out)
			}
			runs := 1
			for err != nil && runs < 4 {
				t.Logf("run %d failed (%v); resuming with the same command:\n%s", runs, err, out)
				cmd, out = cliProcess(t, args...)
				err = cmd.Wait()
				runs++
			}
			if err != nil {
				t.Fatalf("roll did not complete after %d runs: %v\n%s", runs, err, out)
			}
			op := lastRoll(t, cs)
			for _, n := range op.Record.Nodes {
				if n.Phase != roll.PhaseDone {
					t.Errorf("node %s in phase %s", n.Name, n.Phase)
				}
			}
			if left := cordoned(t, cs, nodes); len(left) > 0 {
				t.Errorf("nodes left cordoned: %v", left)
			}
			if v := g.Take(true); len(v) > 0 {
				t.Errorf("guard: %v", v)
			}
			assertLockFree(t, cs)
			t.Logf("completed in %d run(s)", runs)
		})
	}
}

// TestActionsAndHooks: pre- and post-node commands see the node's
// environment, labels are set, and a node annotation is waited for (here
// the machine-config state a test goroutine sets, as OpenShift's daemon
// would).
func TestActionsAndHooks(t *testing.T) {
	cs := env.Client(t)
	_, selector, nodes, _ := pool(t, 2, 1)
	dir := t.TempDir()
	ctx := context.Background()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// Play the machine-config daemon: once a node is labelled by the
		// roll, report its config Done.
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			for _, n := range nodes {
				node, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
				if err != nil || node.Labels["hitless-test/updated"] != "yes" || node.Annotations["machineconfiguration.openshift.io/state"] == "Done" {
					continue
				}
				patch := `{"metadata":{"annotations":{"machineconfiguration.openshift.io/state":"Done","machineconfiguration.openshift.io/currentConfig":"rendered-2","machineconfiguration.openshift.io/desiredConfig":"rendered-2"}}}`
				_, _ = cs.CoreV1().Nodes().Patch(ctx, n, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
			}
		}
	}()
	code, out, errOut := hitless(t, "roll", "--selector", selector,
		"--pre-node", `echo "pre $HITLESS_NODE $HITLESS_NODE_IP $HITLESS_BATCH $HITLESS_OPERATION" >> `+dir+`/hooks`,
		"--post-node", `echo "post $HITLESS_NODE" >> `+dir+`/hooks`,
		"--set-node-label", "hitless-test/updated=yes",
		"--wait-node-annotation", "machineconfiguration.openshift.io/state=Done",
		"--action-timeout", "30s", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	b, err := os.ReadFile(filepath.Join(dir, "hooks"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 4 {
		t.Fatalf("hooks ran %d times, want 4:\n%s", len(lines), b)
	}
	for i, n := range nodes {
		pre := strings.Fields(lines[2*i])
		if len(pre) != 5 || pre[1] != n || pre[2] == "" || pre[3] != fmt.Sprint(i) || !strings.HasPrefix(pre[4], "roll-") {
			t.Errorf("pre-node environment for %s: %q", n, lines[2*i])
		}
		if lines[2*i+1] != "post "+n {
			t.Errorf("post-node for %s: %q", n, lines[2*i+1])
		}
		node, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if node.Labels["hitless-test/updated"] != "yes" {
			t.Errorf("node %s not labelled", n)
		}
	}
	evs, err := cs.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + nodes[0]})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]bool{}
	for _, e := range evs.Items {
		if e.Source.Component == "hitless" {
			reasons[e.Reason] = true
		}
	}
	for _, r := range []string{"Cordoned", "Drained", "Updated", "Uncordoned"} {
		if !reasons[r] {
			t.Errorf("no %s event on node %s (got %v)", r, nodes[0], reasons)
		}
	}
}

// TestCanaryStopsForConfirmation: without --yes and with nobody to answer,
// the roll stops after the canary; the same command with --yes... is a
// different spec, so the operator resumes it by ID.
func TestCanaryStopsForConfirmation(t *testing.T) {
	cs := env.Client(t)
	_, selector, nodes, _ := pool(t, 3, 1)
	code, out, errOut := hitless(t, "roll", "--selector", selector, "--canary", "1", "-o", "json")
	if code != exitcode.Failed || !strings.Contains(errOut, "canary") {
		t.Fatalf("canary without an answer: exit %d, want 1 mentioning the canary\n%s", code, errOut)
	}
	op := lastRoll(t, cs)
	done := 0
	for _, n := range op.Record.Nodes {
		if n.Phase == roll.PhaseDone {
			done++
		}
	}
	if done != 1 || op.Status != journal.Paused {
		t.Fatalf("after the canary: %d nodes done, status %s; want 1 and Paused\n%s", done, op.Status, out)
	}
	code, _, errOut = hitless(t, "resume", op.ID, "--yes")
	if code != 0 {
		t.Fatalf("resume --yes: exit %d\n%s", code, errOut)
	}
	op = lastRoll(t, cs)
	if op.Status != journal.Succeeded || op.Runs != 2 {
		t.Errorf("after resume: status %s, runs %d", op.Status, op.Runs)
	}
	if left := cordoned(t, cs, nodes); len(left) != 0 {
		t.Errorf("left cordoned: %v", left)
	}
}

// TestConfirmPromptsTheOperator: with --confirm the operator is asked to
// stop routing to each node before its drain and to resume after, in the
// spirit of seed 003, and answers on stdin.
func TestConfirmPromptsTheOperator(t *testing.T) {
	_, selector, nodes, _ := pool(t, 2, 1)
	var out, errOut bytes.Buffer
	args := []string{"--kubeconfig", env.Kubeconfig(t), "roll", "--selector", selector, "--confirm"}
	code := app.Run(context.Background(), "hitless", args, genericiooptions.IOStreams{In: strings.NewReader("\n\n\n\n"), Out: &out, ErrOut: &errOut})
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	// Per node, in the output's order: the operator is asked to stop
	// routing, then the node drains, then it is uncordoned, then the
	// operator is asked to resume routing.
	text := errOut.String()
	for _, n := range nodes {
		q := regexp.QuoteMeta(n)
		at := func(what string, re *regexp.Regexp) int {
			loc := re.FindStringIndex(text)
			if loc == nil {
				t.Fatalf("node %s: no %s in the output:\n%s", n, what, text)
			}
			return loc[0]
		}
		stop := at("stop-routing prompt", regexp.MustCompile(`Stop routing requests to node `+q+` `))
		drain := at("drain line", regexp.MustCompile(`batch \d+\s+`+q+`\s+drain\b`))
		uncordon := at("uncordon line", regexp.MustCompile(`batch \d+\s+`+q+`\s+uncordon\b`))
		resume := at("resume-routing prompt", regexp.MustCompile(`Resume routing requests to node `+q+` `))
		if stop >= drain || drain >= resume || resume >= uncordon {
			t.Errorf("node %s: prompt to stop routing at %d, drain at %d, prompt to resume at %d, uncordon at %d; want them in that order",
				n, stop, drain, resume, uncordon)
		}
	}
}

// TestMaxFailuresStopsTheRoll: the roll stops after the failed node; the
// nodes after it are untouched and nothing is left cordoned.
func TestMaxFailuresStopsTheRoll(t *testing.T) {
	cs := env.Client(t)
	_, selector, nodes, _ := pool(t, 4, 1)
	slices.Sort(nodes) // the roll's order
	code, out, errOut := hitless(t, "roll", "--selector", selector, "--max-failures", "1",
		"--exec", `test "$HITLESS_NODE" != "`+nodes[1]+`"`, "-o", "json")
	if code != exitcode.Failed {
		t.Fatalf("exit %d, want 1\n%s", code, errOut)
	}
	var res roll.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{nodes[0]: roll.PhaseDone, nodes[1]: roll.PhaseFailed, nodes[2]: roll.PhasePending, nodes[3]: roll.PhasePending}
	for _, n := range res.Operation.Record.Nodes {
		if n.Phase != want[n.Name] {
			t.Errorf("node %s in phase %s, want %s", n.Name, n.Phase, want[n.Name])
		}
		if n.Phase == roll.PhasePending && len(n.Phases) > 0 {
			t.Errorf("node %s was touched after the roll stopped: %+v", n.Name, n.Phases)
		}
	}
	if res.Operation.Status != journal.Failed || !strings.Contains(res.Operation.Message, "max-failures") {
		t.Errorf("status %s (%s)", res.Operation.Status, res.Operation.Message)
	}
	if left := cordoned(t, cs, nodes); len(left) != 0 {
		t.Errorf("left cordoned: %v", left)
	}
	// hitless status shows it, and the failed node's hook outcome.
	code, out, _ = hitless(t, "status", res.Operation.ID, "-o", "json")
	if code != 0 || !strings.Contains(out, `"exitCode": 1`) {
		t.Errorf("status %s: exit %d\n%s", res.Operation.ID, code, out)
	}
	code, out, _ = hitless(t, "status")
	if code != 0 || !strings.Contains(out, res.Operation.ID) || !strings.Contains(out, "Failed") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
}

// TestDryRunChangesNothing: the plan lists batches, pods to evict and an
// estimate, and nothing is cordoned or journaled.
func TestDryRunChangesNothing(t *testing.T) {
	cs := env.Client(t)
	ns, selector, nodes, _ := pool(t, 3, 2)
	before, err := journal.NewStore(cs).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := hitless(t, "roll", "--selector", selector, "--batch", "2", "--dry-run", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var res roll.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	p := res.Plan
	if len(p.Batches) != 2 || len(p.Batches[0]) != 2 || p.Estimate <= 0 {
		t.Errorf("plan batches %v, estimate %s", p.Batches, p.Estimate)
	}
	evicts := 0
	for _, n := range p.Nodes {
		for _, e := range n.Evict {
			if e.Namespace != ns {
				t.Errorf("plan evicts %s outside the test namespace", e)
			}
			evicts++
		}
	}
	if evicts != 3*3 {
		t.Errorf("plan evicts %d pods, want 9 (3 nodes x 3 pods)", evicts)
	}
	after, err := journal.NewStore(cs).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("--dry-run journaled an operation")
	}
	if left := cordoned(t, cs, nodes); len(left) != 0 {
		t.Errorf("--dry-run cordoned %v", left)
	}
}

// TestRestartDaemonSetNodeByNode updates an OnDelete data plane the way
// upgrades will: each node's agent pod is replaced only after the node is
// drained, and the new one is Ready before the node is uncordoned.
func TestRestartDaemonSetNodeByNode(t *testing.T) {
	cs := env.Client(t)
	ns, selector, nodes, _ := pool(t, 3, 1)
	ctx := context.Background()
	ds := env.DaemonSet(t, ns, "agent", clustertest.Workload{GracePeriod: 1, NodeSelector: map[string]string{"roll-test": strings.TrimPrefix(selector, "roll-test=")}})
	ds.Spec.UpdateStrategy.Type = "OnDelete"
	if _, err := cs.AppsV1().DaemonSets(ns).Update(ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	podsByNode := func() map[string]string {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=agent"})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil && podutils.IsPodReady(&p) {
				out[p.Spec.NodeName] = string(p.UID)
			}
		}
		return out
	}
	var before map[string]string
	clustertest.Eventually(t, time.Minute, func() error {
		before = podsByNode()
		if len(before) != len(nodes) {
			return fmt.Errorf("agent Ready on %d of %d nodes", len(before), len(nodes))
		}
		return nil
	})
	code, out, errOut := hitless(t, "roll", "--selector", selector, "--restart-daemonset", ns+"/agent")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	after := podsByNode()
	for _, n := range nodes {
		if after[n] == "" || after[n] == before[n] {
			t.Errorf("node %s: agent pod %q before, %q after; want a new Ready pod", n, before[n], after[n])
		}
	}
	op := lastRoll(t, cs)
	for _, n := range op.Record.Nodes {
		var drainEnd, actionStart time.Time
		for _, p := range n.Phases {
			if p.Name == roll.PhaseDrain && p.Finished != nil {
				drainEnd = *p.Finished
			}
			if p.Name == roll.PhaseAction {
				actionStart = p.Started
			}
		}
		if actionStart.Before(drainEnd) {
			t.Errorf("node %s: agent restarted at %s, before its drain ended at %s", n.Name, actionStart, drainEnd)
		}
	}
}

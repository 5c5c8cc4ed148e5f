package measure_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
	"github.com/hitless-dev/hitless/internal/measure"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

var env = clustertest.New(clustertest.Options{Workers: 3, Lab: localcluster.LabNetNS})

func TestMain(m *testing.M) { os.Exit(env.Run(m)) }

// startAgents runs one agent per lab node in this process, its link
// following the node's data-plane pod.
func startAgents(t *testing.T) { env.StartLabAgents(t) }

// Without agents nothing can be measured: the command says so instead of
// reporting a quiet network.
func TestProbeRunWithoutAgents(t *testing.T) {
	var out, errb bytes.Buffer
	code := app.Run(context.Background(), "hitless", []string{"probe", "run", "--duration", "1s", "--kubeconfig", env.Kubeconfig(t)},
		genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb})
	if code != 1 || !strings.Contains(errb.String(), "no node agent runs in this cluster") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

// A measured run with a link-down injected on one node, through the
// command, with its JSON.
func TestProbeRunSeesLinkDown(t *testing.T) {
	startAgents(t)
	c := env.Cluster(t)
	victim := c.Lab.Nodes[1].Name
	go func() {
		time.Sleep(1500 * time.Millisecond)
		_ = c.Inject(context.Background(), localcluster.Fault{Node: victim, Kind: "link-down", Duration: time.Second})
	}()
	var out, errb bytes.Buffer
	code := app.Run(context.Background(), "hitless", []string{"probe", "run", "--duration", "4s", "-o", "json", "--kubeconfig", env.Kubeconfig(t),
		"--report", filepath.Join(t.TempDir(), "r.html")}, genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep measure.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	n := len(c.Lab.Nodes)
	if len(rep.Agents) != n || len(rep.Missing) != 0 || rep.Summary.Paths != n*(n-1)+n {
		t.Fatalf("agents %v missing %v paths %d", rep.Agents, rep.Missing, rep.Summary.Paths)
	}
	for _, p := range rep.Paths {
		through := p.Kind == "udp" && (p.From == victim || p.To == victim)
		switch {
		case through && (len(p.Windows) != 1 || p.LongestOutageMs < 950 || p.LongestOutageMs > 1100):
			t.Errorf("%s -> %s: windows %+v, want one of about 1 s", p.From, p.To, p.Windows)
		case !through && p.Kind == "udp" && p.Lost != 0:
			t.Errorf("%s -> %s does not pass %s but lost %d", p.From, p.To, victim, p.Lost)
		}
	}
}

// dataPlane creates a DaemonSet marked as the data plane, updated on
// delete like a vRouter, whose pods take grace seconds to stop.
func dataPlane(t *testing.T, ns string, grace int64) *appsv1.DaemonSet {
	t.Helper()
	labels := map[string]string{"app": "vrouter"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "vrouter", Namespace: ns, Annotations: map[string]string{agent.AnnotationDataPlane: "true"}},
		Spec: appsv1.DaemonSetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: labels},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				Containers:                    []corev1.Container{{Name: "agent", Image: "registry.k8s.io/pause:3.10"}},
				TerminationGracePeriodSeconds: ptr.To(grace),
				Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			}},
		},
	}
	out, err := env.Client(t).AppsV1().DaemonSets(ns).Create(context.Background(), ds, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, time.Minute, func() error {
		d, err := env.Client(t).AppsV1().DaemonSets(ns).Get(context.Background(), "vrouter", metav1.GetOptions{})
		if err != nil || d.Status.NumberReady != d.Status.DesiredNumberScheduled || d.Status.DesiredNumberScheduled == 0 {
			return fmt.Errorf("data plane not ready (%w)", err)
		}
		return nil
	})
	return out
}

// A data-plane restart during a roll is a loss window attributed to the
// right node and step, on that node's paths alone; a budget smaller than
// the outage pauses the roll before the next node.
func TestRollWithProbesAndBudget(t *testing.T) {
	startAgents(t)
	ns := env.Namespace(t)
	dataPlane(t, ns, 2)
	cs := env.Client(t)
	ctx := context.Background()
	// An application with a PDB on the rolled nodes, and a guard: the
	// PDB holds, one node at a time, the data plane restarts only on
	// drained nodes.
	env.Deployment(t, ns, "web", 3, clustertest.Workload{GracePeriod: 1})
	env.PDB(t, ns, "web", ptr.To(intstr.FromInt32(1)), nil)
	env.WaitDeploymentAvailable(t, ns, "web", time.Minute)
	workers, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "node-role.kubernetes.io/worker"})
	if err != nil {
		t.Fatal(err)
	}
	var pool []string
	for _, n := range workers.Items {
		pool = append(pool, n.Name)
	}
	pdbGuard := clustertest.StartDataPlaneGuard(t, cs, ns, pool, 1, ns, "vrouter")
	guard, err := measure.StartGuard(ctx, cs, measure.GuardSpec{Rate: 100, Budget: measure.Budget{MaxOutage: 500 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // a quiet start
	spec := roll.Spec{Selector: "node-role.kubernetes.io/worker", Actions: []roll.ActionSpec{{Name: roll.ActionRestartDaemonSet, Params: []byte(`{"daemonSet":"` + ns + `/vrouter"}`)}}, Batch: "1"}
	res, runErr := roll.Run(ctx, cs, roll.Options{Spec: spec, Command: "test", Guard: guard})
	if res == nil || res.Operation == nil {
		t.Fatalf("roll did not start: %v", runErr)
	}
	rep, err := guard.Stop(ctx, res.Operation.ID, &res.Operation.Record)
	if err != nil {
		t.Fatal(err)
	}
	op := res.Operation
	first := res.Plan.Batches[0][0]
	second := res.Plan.Batches[1][0]
	if op.Status != journal.Paused || !strings.Contains(op.Message, "disruption budget exceeded before node "+second) || !strings.Contains(op.Message, "exceeds `maxOutage` 500ms") {
		t.Fatalf("roll %s: %q; want paused before %s by the budget", op.Status, op.Message, second)
	}
	for _, n := range op.Record.Nodes {
		if (n.Name == first) != (n.Phase == roll.PhaseDone) {
			t.Fatalf("node %s in phase %s: only %s should have run", n.Name, n.Phase, first)
		}
	}
	if len(rep.Windows) == 0 {
		t.Fatal("no loss window measured for the data-plane restart")
	}
	for _, w := range rep.Windows {
		if w.Kind != "udp" {
			continue
		}
		if w.From != first && w.To != first {
			t.Errorf("loss on %s -> %s, which does not pass %s", w.From, w.To, first)
		}
		if w.Node != first || w.Phase != roll.PhaseAction || !w.OnPath {
			t.Errorf("window %s -> %s (%.0f ms) attributed to %s of %s, want action of %s", w.From, w.To, w.DurationMs, w.Phase, w.Node, first)
		}
		if w.DurationMs < 1500 {
			t.Errorf("window %s -> %s lasted %.0f ms; the data plane stopped for at least its 2 s grace period", w.From, w.To, w.DurationMs)
		}
	}
	page := filepath.Join(t.TempDir(), "roll.html")
	if err := measure.WriteHTML(page, rep); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(page)
	for _, want := range []string{first, second, `class="loss"`, `class="action"`, "action of " + first} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("HTML report lacks %q", want)
		}
	}
	resumeKeepsProbing(t, op, res.Plan.Batches[1][0], res.Plan.Batches[2][0])
	if got := pdbGuard.Replaced(); got != 2 {
		t.Errorf("%d data-plane pods restarted on drained nodes, want the 2 nodes rolled", got)
	}
	// Leave the cluster to the next test: abort the paused roll.
	if _, err := roll.Abort(ctx, cs, op.ID, "test", time.Minute); err != nil {
		t.Fatal(err)
	}
}

// resumeKeepsProbing resumes the roll the budget paused, as a user does,
// with `hitless resume ID` and no probe flag: the journaled guard probes
// the resumed run, ties the restart of the next node to its loss window,
// and its budget pauses the roll again before the node after.
func resumeKeepsProbing(t *testing.T, op *roll.Journal, next, after string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := app.Run(context.Background(), "hitless", []string{"--kubeconfig", env.Kubeconfig(t), "resume", op.ID, "-o", "json"},
		genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb})
	if code != 1 {
		t.Fatalf("resume: exit %d, want 1 (paused again by the budget)\n%s\n%s", code, out.String(), errb.String())
	}
	var res struct {
		Operation roll.Journal    `json:"operation"`
		Probe     *measure.Report `json:"probe"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("resume output: %v\n%s", err, out.String())
	}
	if res.Operation.Status != journal.Paused || res.Operation.Runs != 2 || !strings.Contains(res.Operation.Message, "disruption budget exceeded before node "+after) {
		t.Errorf("resumed roll %s run %d: %q; want paused again before %s by the budget", res.Operation.Status, res.Operation.Runs, res.Operation.Message, after)
	}
	if !strings.Contains(res.Operation.Message, "--max-outage 500ms") {
		t.Errorf("the CLI names the flag of the budget: %q", res.Operation.Message)
	}
	if res.Probe == nil || len(res.Probe.Windows) == 0 {
		t.Fatalf("the resumed roll was not probed: %+v", res.Probe)
	}
	for _, w := range res.Probe.Windows {
		if w.Kind == "udp" && (w.Node != next || w.Phase != roll.PhaseAction) {
			t.Errorf("resumed run's window %s -> %s attributed to %s of %s, want action of %s", w.From, w.To, w.Phase, w.Node, next)
		}
	}
}

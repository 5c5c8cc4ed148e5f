package controller_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
	"github.com/hitless-dev/hitless/internal/controller"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

// A NodeRoll rolls its nodes through the same engine as `hitless roll`:
// every node drained under the PDB guard and uncordoned, the status and
// Events telling the story, the journal readable by `hitless status`.
func TestNodeRollRollsItsNodes(t *testing.T) {
	env.InstallCRDs(t)
	c := env.APIClient(t)
	sel, nodes := pool(t, 4, 1, 1)
	metrics, health := clustertest.FreeAddr(t), clustertest.FreeAddr(t)
	env.StartController(t, "--metrics-bind-address", metrics, "--health-probe-bind-address", health)
	for _, path := range []string{"/healthz", "/readyz"} {
		clustertest.Eventually(t, 30*time.Second, func() error {
			resp, err := http.Get("http://" + health + path)
			if err != nil {
				return err
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %s", path, resp.Status)
			}
			return nil
		})
	}

	ctx := context.Background()
	nr := nodeRoll("rolls-its-nodes", sel)
	if err := c.Create(ctx, nr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), nr) })
	nr = waitPhase(t, c, nr.Name, v1alpha1.PhaseSucceeded, 3*time.Minute)

	if got := cordoned(t, nodes); len(got) > 0 {
		t.Errorf("nodes left cordoned: %v", got)
	}
	if s := nr.Status.Summary; s.Total != 4 || s.Done != 4 || s.Failed != 0 {
		t.Errorf("summary %+v, want 4 of 4 done", s)
	}
	if conditionTrue(nr, v1alpha1.ConditionReady) == nil {
		t.Errorf("Ready is not True: %+v", nr.Status.Conditions)
	}
	if nr.Status.ObservedGeneration != nr.Generation {
		t.Errorf("observedGeneration %d, generation %d", nr.Status.ObservedGeneration, nr.Generation)
	}
	if len(nr.Status.History) != 1 || nr.Status.History[0].Operation != nr.Status.Operation || nr.Status.History[0].Result != v1alpha1.PhaseSucceeded {
		t.Errorf("history %+v, want the one operation %s Succeeded", nr.Status.History, nr.Status.Operation)
	}
	raw, err := journal.NewStore(env.Client(t)).Get(ctx, nr.Status.Operation)
	if err != nil {
		t.Fatalf("the status names operation %q: %v", nr.Status.Operation, err)
	}
	op, err := journal.Decode[roll.Record](raw)
	if err != nil {
		t.Fatal(err)
	}
	if op.Status != journal.Succeeded || len(op.Record.Nodes) != 4 {
		t.Errorf("journal: %s with %d nodes", op.Status, len(op.Record.Nodes))
	}
	for _, n := range op.Record.Nodes {
		// Evicted pods land on the nodes rolled later: each node has at
		// least the 2 pods it started with.
		if n.Phase != roll.PhaseDone || len(n.Evicted) < 2 {
			t.Errorf("node %s: %s, evicted %v; want done with its pods evicted", n.Name, n.Phase, n.Evicted)
		}
	}
	// The same journal as a CLI roll: `hitless status ID` reads it.
	cmd, out, done := env.StartCLI(t, "status", nr.Status.Operation)
	if err := clustertest.WaitCLI(t, cmd, out, done, time.Minute); err != nil {
		t.Fatalf("hitless status %s: %v\n%s", nr.Status.Operation, err, out)
	}
	if !strings.Contains(out.String(), "4/4") {
		t.Errorf("hitless status %s does not show 4/4 nodes:\n%s", nr.Status.Operation, out)
	}
	evs := strings.Join(events(t, nr.Name), "\n")
	for _, want := range []string{"Started: operation " + nr.Status.Operation, "Succeeded: operation " + nr.Status.Operation} {
		if !strings.Contains(evs, want) {
			t.Errorf("no Event %q among:\n%s", want, evs)
		}
	}
	if holder, err := lock.Current(ctx, env.Client(t)); err != nil || holder != nil {
		t.Errorf("lock after the roll: %v, %v; want released", holder, err)
	}

	// The metrics say what the journal says.
	fams := clustertest.Scrape(t, metrics)
	if m := clustertest.Sample(fams, "hitless_operations_total", map[string]string{"kind": "roll", "result": "Succeeded"}); m == nil || m.GetCounter().GetValue() != 1 {
		t.Errorf("hitless_operations_total{roll,Succeeded} = %v, want 1", m)
	}
	var drains float64
	for _, n := range op.Record.Nodes {
		for _, ph := range n.Phases {
			if ph.Name == roll.PhaseDrain && ph.Finished != nil {
				drains += ph.Finished.Sub(ph.Started).Seconds()
			}
		}
	}
	h := clustertest.Sample(fams, "hitless_node_phase_duration_seconds", map[string]string{"kind": "roll", "phase": "drain"})
	if h == nil || h.GetHistogram().GetSampleCount() != 4 || math.Abs(h.GetHistogram().GetSampleSum()-drains) > 1e-3 {
		t.Errorf("drain durations %v; want 4 samples summing to the journal's %.3fs", h, drains)
	}
	if drains < 4 {
		t.Errorf("4 drains of pods with 1 s grace periods took %.3fs in all", drains)
	}
	if m := clustertest.Sample(fams, "hitless_nodes_cordoned", nil); m != nil {
		t.Errorf("hitless_nodes_cordoned after the roll: %v", m)
	}
	if m := clustertest.Sample(fams, "hitless_lock_held", nil); m != nil {
		t.Errorf("hitless_lock_held after the roll: %v", m)
	}
}

// Two controllers: one leads and rolls, the other waits. The leader is
// SIGKILLed mid-roll: the other takes the lead and the lock over, resumes
// the same operation from the journal, and finishes it; no node is rolled
// twice and none is left cordoned.
func TestLeaderKilledMidRoll(t *testing.T) {
	env.InstallCRDs(t)
	c := env.APIClient(t)
	sel, nodes := pool(t, 5, 1, 3)
	cs := env.Client(t)
	ctx := context.Background()

	first := env.StartController(t)
	var leader string
	clustertest.Eventually(t, time.Minute, func() error {
		l, err := cs.CoordinationV1().Leases(lock.Namespace).Get(ctx, controller.LeaderElectionID, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			return fmt.Errorf("lease %s has no holder", l.Name)
		}
		leader = *l.Spec.HolderIdentity
		return nil
	})
	second := env.StartController(t)

	nr := nodeRoll("leader-killed", sel)
	start := time.Now()
	if err := c.Create(ctx, nr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), nr) })
	// Kill the leader while its second node drains. The drain right after
	// the cordon is journaled with the next write, so the status shows the
	// node cordoned (or, once that write came, draining).
	clustertest.Eventually(t, 2*time.Minute, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(nr), nr); err != nil {
			return err
		}
		for _, n := range nr.Status.Nodes {
			if (n.Phase == roll.PhaseCordon || n.Phase == roll.PhaseDrain) && nr.Status.Summary.Done >= 1 {
				return nil
			}
		}
		return fmt.Errorf("waiting for the second node's drain: %s, %+v", nr.Status.Phase, nr.Status.Summary)
	})
	id := nr.Status.Operation
	raw, err := journal.NewStore(cs).Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Runs != 1 {
		t.Errorf("operation %s had %d runs before the kill; want 1 (the follower must stay idle)", id, raw.Runs)
	}
	if l, err := cs.CoordinationV1().Leases(lock.Namespace).Get(ctx, controller.LeaderElectionID, metav1.GetOptions{}); err != nil || *l.Spec.HolderIdentity != leader {
		t.Fatalf("the lead moved before the kill: %v %v", l, err)
	}
	killed := time.Now()
	first.Kill()

	nr = waitPhase(t, c, nr.Name, v1alpha1.PhaseSucceeded, 3*time.Minute)
	if got := cordoned(t, nodes); len(got) > 0 {
		t.Errorf("nodes left cordoned: %v", got)
	}
	if nr.Status.Operation != id {
		t.Errorf("the new leader ran operation %s, not the journaled %s", nr.Status.Operation, id)
	}
	if op := env.OperationSince(t, roll.Kind, start); op == nil || op.ID != id {
		t.Errorf("operations since the start: %v; want only %s", op, id)
	}
	raw, err = journal.NewStore(cs).Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	op, err := journal.Decode[roll.Record](raw)
	if err != nil {
		t.Fatal(err)
	}
	if op.Runs != 2 || op.Status != journal.Succeeded {
		t.Errorf("operation %s: %s after %d runs; want Succeeded after 2", id, op.Status, op.Runs)
	}
	for _, n := range op.Record.Nodes {
		if n.Phase != roll.PhaseDone {
			t.Errorf("node %s is %s", n.Name, n.Phase)
		}
		// A node finished before the kill is not touched again.
		if n.CompletedAt != nil && n.CompletedAt.Before(killed) {
			for _, ph := range n.Phases {
				if ph.Started.After(killed) {
					t.Errorf("node %s, done before the kill, went through %s again after it", n.Name, ph.Name)
				}
			}
		}
		uncordons := 0
		for _, ph := range n.Phases {
			if ph.Name == roll.PhaseUncordon {
				uncordons++
			}
		}
		if uncordons != 1 {
			t.Errorf("node %s was uncordoned %d times", n.Name, uncordons)
		}
	}
	evs := strings.Join(events(t, nr.Name), "\n")
	if !strings.Contains(evs, "Started: operation "+id+" resumed (run 2)") || !strings.Contains(evs, "LockTakeover: operation "+id+" is held by") {
		t.Errorf("no Events of the resume and the lock takeover among:\n%s", evs)
	}
	if !strings.Contains(second.Out.String(), "Successfully acquired lease") {
		t.Errorf("the second controller never took the lead:\n%s", second.Out)
	}
}

// Deleting a NodeRoll mid-node aborts its operation cleanly: the node in
// flight is uncordoned (a node someone else cordoned stays so), the lock
// is released, an Event says so, and then the resource is gone.
func TestDeleteNodeRollMidNode(t *testing.T) {
	env.InstallCRDs(t)
	c := env.APIClient(t)
	// Batch 2: the node someone else cordoned counts as one of the two.
	sel, nodes := pool(t, 4, 2, 8)
	cs := env.Client(t)
	ctx := context.Background()
	// The last node was cordoned by someone else: hitless must leave it so.
	other := nodes[3]
	if _, err := cs.CoreV1().Nodes().Patch(ctx, other, "application/merge-patch+json", []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	env.StartController(t)

	nr := nodeRoll("deleted-mid-node", sel)
	nr.Spec.Batch = intstr.FromInt32(2)
	if err := c.Create(ctx, nr); err != nil {
		t.Fatal(err)
	}
	// Wait until the first node is draining (its pods take 8 s to go).
	clustertest.Eventually(t, 2*time.Minute, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(nr), nr); err != nil {
			return err
		}
		for _, n := range nr.Status.Nodes {
			if n.Phase == roll.PhaseDrain {
				return nil
			}
		}
		return fmt.Errorf("no node draining yet: %s %+v %+v", nr.Status.Phase, nr.Status.Nodes, nr.Status.Conditions)
	})
	id := nr.Status.Operation
	if err := c.Delete(ctx, nr); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 2*time.Minute, func() error { return gone(c, nr.Name) })

	if got := cordoned(t, nodes); len(got) != 1 || got[0] != other {
		t.Errorf("cordoned after the delete: %v, want only %s (cordoned by someone else)", got, other)
	}
	raw, err := journal.NewStore(cs).Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Status != journal.Aborted {
		t.Errorf("operation %s is %s, want Aborted", id, raw.Status)
	}
	if holder, err := lock.Current(ctx, cs); err != nil || holder != nil {
		t.Errorf("lock after the delete: %v, %v; want released", holder, err)
	}
	evs := strings.Join(events(t, nr.Name), "\n")
	if !strings.Contains(evs, "Aborted: NodeRoll deleted: operation "+id) || !strings.Contains(evs, "lock released") {
		t.Errorf("no Event of the abort among:\n%s", evs)
	}
}

// Bad NodeRolls are refused at admission with the field named; what
// admission cannot judge becomes a Failed condition naming the field, and
// nothing is changed.
func TestBadNodeRolls(t *testing.T) {
	env.InstallCRDs(t)
	c := env.APIClient(t)
	ctx := context.Background()
	sel := map[string]string{"bad-noderolls": "none"}

	t.Run("refused at admission", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			mutate func(*v1alpha1.NodeRoll)
			want   string
		}{
			{"selector and nodes", func(nr *v1alpha1.NodeRoll) { nr.Spec.Nodes = []string{"a"} }, "give nodeSelector or nodes"},
			{"neither selector nor nodes", func(nr *v1alpha1.NodeRoll) { nr.Spec.NodeSelector = nil }, "give nodeSelector or nodes"},
			{"batch zero", func(nr *v1alpha1.NodeRoll) { nr.Spec.Batch = intstr.FromInt32(0) }, "spec.batch"},
			{"batch over 100%", func(nr *v1alpha1.NodeRoll) { nr.Spec.Batch = intstr.FromString("150%") }, "spec.batch"},
			{"unknown order", func(nr *v1alpha1.NodeRoll) { nr.Spec.Order = "random" }, "spec.order"},
			{"negative canary", func(nr *v1alpha1.NodeRoll) { nr.Spec.Canary = -1 }, "spec.canary"},
			{"zero maxFailures", func(nr *v1alpha1.NodeRoll) { nr.Spec.MaxFailures = -2 }, "spec.maxFailures"},
			{"unknown drain timeout policy", func(nr *v1alpha1.NodeRoll) { nr.Spec.Drain = &v1alpha1.DrainPolicy{OnTimeout: "ignore"} }, "spec.drain.onTimeout"},
			{"window start", func(nr *v1alpha1.NodeRoll) {
				nr.Spec.MaintenanceWindow = &v1alpha1.MaintenanceWindow{Start: "25:00", Duration: metav1.Duration{Duration: time.Hour}}
			}, "spec.maintenanceWindow.start"},
			{"window day", func(nr *v1alpha1.NodeRoll) {
				nr.Spec.MaintenanceWindow = &v1alpha1.MaintenanceWindow{Start: "01:00", Days: []string{"Someday"}, Duration: metav1.Duration{Duration: time.Hour}}
			}, "spec.maintenanceWindow.days[0]"},
			{"node name", func(nr *v1alpha1.NodeRoll) { nr.Spec.NodeSelector, nr.Spec.Nodes = nil, []string{"Not_A_Node"} }, "spec.nodes[0]"},
			{"hook with a job and an action", func(nr *v1alpha1.NodeRoll) {
				nr.Spec.Hooks = &v1alpha1.NodeHooks{PreNode: []v1alpha1.NodeHook{{Action: &v1alpha1.NodeAction{Name: "reboot"}, Job: &v1alpha1.JobHook{Template: runtime.RawExtension{Raw: []byte(`{}`)}}}}}
			}, "spec.hooks.preNode[0]"},
			{"hook with neither", func(nr *v1alpha1.NodeRoll) {
				nr.Spec.Hooks = &v1alpha1.NodeHooks{PostNode: []v1alpha1.NodeHook{{}}}
			}, "give job or action"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				nr := nodeRoll("bad-"+strings.ReplaceAll(tc.name, " ", "-"), sel)
				tc.mutate(nr)
				err := c.Create(ctx, nr)
				if err == nil {
					_ = c.Delete(ctx, nr)
					t.Fatalf("created; want refused naming %s", tc.want)
				}
				if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %v; want Invalid naming %q", err, tc.want)
				}
			})
		}
	})

	t.Run("what defines the roll is immutable", func(t *testing.T) {
		nr := nodeRoll("immutable", sel)
		nr.Spec.Paused = true
		if err := c.Create(ctx, nr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), nr) })
		nr.Spec.Batch = intstr.FromString("50%")
		if err := c.Update(ctx, nr); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "only paused, canaryApproved, maintenanceWindow and probe may change") {
			t.Errorf("changing spec.batch: %v; want Invalid", err)
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(nr), nr); err != nil {
			t.Fatal(err)
		}
		nr.Spec.CanaryApproved = true
		if err := c.Update(ctx, nr); err != nil {
			t.Errorf("changing spec.canaryApproved: %v; want allowed", err)
		}
	})

	t.Run("refused by the controller", func(t *testing.T) {
		hookNamespace(t)
		env.StartController(t)
		cs := env.Client(t)
		before, err := journal.NewStore(cs).List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name   string
			mutate func(*v1alpha1.NodeRoll)
			field  string
		}{
			{"unknown action", func(nr *v1alpha1.NodeRoll) { nr.Spec.Actions = []v1alpha1.NodeAction{{Name: "reboot-the-world"}} }, "spec.actions[0].name"},
			// exec would run a command in the controller's pod.
			{"exec action", func(nr *v1alpha1.NodeRoll) {
				nr.Spec.Actions = []v1alpha1.NodeAction{{Name: "exec", Params: &runtime.RawExtension{Raw: []byte(`{"command":"id"}`)}}}
			}, "spec.actions[0].name"},
			{"unknown hook action", func(nr *v1alpha1.NodeRoll) {
				nr.Spec.Hooks = &v1alpha1.NodeHooks{PostNode: []v1alpha1.NodeHook{{Action: &v1alpha1.NodeAction{Name: "warp"}}}}
			}, "spec.hooks.postNode[0].action.name"},
			{"unknown field in a job hook template", func(nr *v1alpha1.NodeRoll) {
				nr.Spec.Hooks = &v1alpha1.NodeHooks{PreNode: []v1alpha1.NodeHook{{Job: &v1alpha1.JobHook{Template: runtime.RawExtension{Raw: []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"a","imagee":"x"}]}}}}`)}}}}}
			}, "spec.hooks.preNode[0].job"},
			{"job hook the api server refuses", func(nr *v1alpha1.NodeRoll) {
				nr.Spec.Hooks = &v1alpha1.NodeHooks{PreNode: []v1alpha1.NodeHook{{Job: &v1alpha1.JobHook{Template: runtime.RawExtension{Raw: []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"a"}]}}}}`)}}}}}
			}, "spec.hooks.preNode[0].job.template"},
			// A job action in another namespace would run pods under its
			// ServiceAccounts.
			{"job action elsewhere", func(nr *v1alpha1.NodeRoll) {
				nr.Spec.Actions = []v1alpha1.NodeAction{{Name: "job", Params: &runtime.RawExtension{Raw: []byte(`{"namespace":"kube-system","template":{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"x"}]}}}}}`)}}}
			}, "spec.actions[0].params"},
			{"unknown time zone", func(nr *v1alpha1.NodeRoll) {
				nr.Spec.MaintenanceWindow = &v1alpha1.MaintenanceWindow{Start: "01:00", Duration: metav1.Duration{Duration: time.Hour}, TimeZone: "Mars/Olympus_Mons"}
			}, "spec.maintenanceWindow.timeZone"},
			{"bad selector", func(nr *v1alpha1.NodeRoll) {
				nr.Spec.NodeSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "zone", Operator: "Near", Values: []string{"a"}}}
			}, "spec.nodeSelector"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				nr := nodeRoll("refused-"+strings.ReplaceAll(tc.name, " ", "-"), map[string]string{"bad-noderolls": "controller"})
				tc.mutate(nr)
				if err := c.Create(ctx, nr); err != nil {
					t.Fatalf("admission refused what only the controller can judge: %v", err)
				}
				t.Cleanup(func() { _ = c.Delete(context.Background(), nr) })
				nr = waitPhase(t, c, nr.Name, v1alpha1.PhaseFailed, time.Minute)
				cond := conditionTrue(nr, v1alpha1.ConditionFailed)
				if cond != nil {
					t.Log(cond.Message)
				}
				if cond == nil || cond.Reason != "InvalidSpec" || !strings.HasPrefix(cond.Message, tc.field+": ") || !strings.Contains(cond.Message, "nothing was changed") {
					t.Errorf("Failed condition %+v; want InvalidSpec naming %s", cond, tc.field)
				}
				if ws := strings.Join(warnings(t, nr.Name), "\n"); !strings.Contains(ws, "InvalidSpec: "+tc.field) {
					t.Errorf("no Warning Event naming %s among:\n%s", tc.field, ws)
				}
			})
		}
		after, err := journal.NewStore(cs).List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != len(before) {
			t.Errorf("%d operations journaled by refused NodeRolls", len(after)-len(before))
		}
	})
}

// A NodeRoll created paused touches nothing; unpaused, it rolls its canary
// and waits for spec.canaryApproved; approved, it finishes. The
// conditions say why it waits at each stop.
func TestPausedThenCanaryApproved(t *testing.T) {
	env.InstallCRDs(t)
	c := env.APIClient(t)
	sel, nodes := pool(t, 3, 1, 1)
	env.StartController(t)
	ctx := context.Background()

	nr := nodeRoll("paused-then-canary", sel)
	nr.Spec.Paused, nr.Spec.Canary = true, 1
	if err := c.Create(ctx, nr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), nr) })
	nr = waitPhase(t, c, nr.Name, v1alpha1.PhasePaused, time.Minute)
	if cond := conditionTrue(nr, v1alpha1.ConditionPaused); cond == nil || cond.Reason != "Paused" {
		t.Errorf("Paused condition %+v; want reason Paused", cond)
	}
	if nr.Status.Operation != "" {
		t.Errorf("a paused NodeRoll started operation %s", nr.Status.Operation)
	}

	update := func(mutate func(*v1alpha1.NodeRoll)) {
		t.Helper()
		clustertest.Eventually(t, 30*time.Second, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(nr), nr); err != nil {
				return err
			}
			mutate(nr)
			return c.Update(ctx, nr)
		})
	}
	update(func(nr *v1alpha1.NodeRoll) { nr.Spec.Paused = false })
	clustertest.Eventually(t, 2*time.Minute, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(nr), nr); err != nil {
			return err
		}
		if cond := conditionTrue(nr, v1alpha1.ConditionPaused); cond == nil || cond.Reason != "AwaitingCanaryApproval" {
			return fmt.Errorf("not waiting for the canary's approval: %s %+v", nr.Status.Phase, nr.Status.Conditions)
		}
		return nil
	})
	if nr.Status.Summary.Done != 1 {
		t.Errorf("summary %+v at the canary's stop; want 1 node done", nr.Status.Summary)
	}
	if got := cordoned(t, nodes); len(got) > 0 {
		t.Errorf("cordoned while waiting for approval: %v", got)
	}
	id := nr.Status.Operation

	update(func(nr *v1alpha1.NodeRoll) { nr.Spec.CanaryApproved = true })
	nr = waitPhase(t, c, nr.Name, v1alpha1.PhaseSucceeded, 2*time.Minute)
	if nr.Status.Summary.Done != 3 || nr.Status.Operation != id {
		t.Errorf("after approval: operation %s (want %s), summary %+v", nr.Status.Operation, id, nr.Status.Summary)
	}
	if len(nr.Status.History) != 1 || nr.Status.History[0].Result != v1alpha1.PhaseSucceeded {
		t.Errorf("history %+v; want the one operation, Succeeded", nr.Status.History)
	}
}

// `hitless roll --in-cluster` creates the NodeRoll of its flags and
// follows it to the end (--yes approves the canary); the same command run
// again follows the same NodeRoll; `hitless status` lists its operation
// beside the CLI's.
func TestRollInCluster(t *testing.T) {
	env.InstallCRDs(t)
	sel, nodes := pool(t, 3, 1, 1)
	env.StartController(t)
	var selector []string
	for k, v := range sel {
		selector = append(selector, k+"="+v)
	}
	args := []string{"roll", "--in-cluster", "--selector", strings.Join(selector, ","), "--canary", "1", "--yes"}
	cmd, out, done := env.StartCLI(t, args...)
	if err := clustertest.WaitCLI(t, cmd, out, done, 3*time.Minute); err != nil {
		t.Fatalf("hitless %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, want := range []string{" created (the controller runs it", "Succeeded 3/3 nodes done"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got := cordoned(t, nodes); len(got) > 0 {
		t.Errorf("nodes left cordoned: %v", got)
	}
	c := env.APIClient(t)
	list := &v1alpha1.NodeRollList{}
	if err := c.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	var nr *v1alpha1.NodeRoll
	for i := range list.Items {
		if strings.Contains(out.String(), "NodeRoll "+list.Items[i].Name+" created") {
			nr = &list.Items[i]
		}
	}
	if nr == nil {
		t.Fatalf("no NodeRoll named in the output:\n%s", out)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), nr) })
	if !nr.Spec.CanaryApproved || nr.Spec.Canary != 1 {
		t.Errorf("NodeRoll spec %+v; want canary 1, approved by --yes", nr.Spec)
	}

	cmd, again, done := env.StartCLI(t, args...)
	if err := clustertest.WaitCLI(t, cmd, again, done, time.Minute); err != nil {
		t.Fatalf("the same command again: %v\n%s", err, again)
	}
	if !strings.Contains(again.String(), "NodeRoll "+nr.Name+" exists; following it") {
		t.Errorf("the same command again did not follow the same NodeRoll:\n%s", again)
	}
	t.Run("probe budget", func(t *testing.T) {
		probe := slices.Concat(args, []string{"--probe", "--max-outage", "2s", "--max-loss", "0.5", "--probe-rate", "50"})
		code, out, errb := lifecycletest.Hitless(t, env, append(probe, "--dry-run")...)
		if code != 0 || !strings.Contains(out, "maxOutage: 2s") || !strings.Contains(out, "maxLoss: 0.5%") || !strings.Contains(out, "rate: 50") {
			t.Errorf("--dry-run with a probe budget: exit %d\n%s\n%s", code, out, errb)
		}
		for _, bad := range [][]string{{"--report", "x.html"}, {"--on-budget", "abort"}} {
			code, _, errb := lifecycletest.Hitless(t, env, append(probe, bad...)...)
			if code != 2 || !strings.Contains(errb, bad[0]) {
				t.Errorf("%v with --in-cluster: exit %d, %s; want 2 naming the flag", bad, code, errb)
			}
		}
	})
	t.Run("job hooks", func(t *testing.T) {
		dir := t.TempDir()
		write := func(name, doc string) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		job := "onNode: true\ntemplate:\n  spec:\n    template:\n      spec:\n        containers: [{name: lb, image: registry.example/lb-tool:1.0}]\n"
		good := write("job.yaml", job)
		code, out, errb := lifecycletest.Hitless(t, env, append(slices.Clone(args), "--post-node-action", "job=@"+good, "--dry-run")...)
		if code != 0 || !strings.Contains(out, "postNode:") || !strings.Contains(out, "onNode: true") || !strings.Contains(out, "image: registry.example/lb-tool:1.0") {
			t.Errorf("--post-node-action job=@FILE --dry-run: exit %d\n%s\n%s", code, out, errb)
		}
		elsewhere := write("elsewhere.yaml", "namespace: kube-system\n"+job)
		code, _, errb = lifecycletest.Hitless(t, env, append(slices.Clone(args), "--pre-node-action", "job=@"+elsewhere)...)
		if code != 2 || !strings.Contains(errb, "--pre-node-action") || !strings.Contains(errb, "hook namespace") {
			t.Errorf("a Job hook in kube-system with --in-cluster: exit %d, %s; want 2 naming the flag", code, errb)
		}
	})
	cmd, status, done := env.StartCLI(t, "status")
	if err := clustertest.WaitCLI(t, cmd, status, done, time.Minute); err != nil {
		t.Fatalf("hitless status: %v\n%s", err, status)
	}
	if !strings.Contains(status.String(), nr.Status.Operation) || !strings.Contains(status.String(), "NodeRoll "+nr.Name+" (hitless controller)") {
		t.Errorf("hitless status does not list operation %s of NodeRoll %s:\n%s", nr.Status.Operation, nr.Name, status)
	}
}

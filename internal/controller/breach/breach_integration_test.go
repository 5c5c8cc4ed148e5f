package breach_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

var env = clustertest.New(clustertest.Options{Workers: 3, Lab: localcluster.LabNetNS})

func TestMain(m *testing.M) {
	if os.Getenv(clustertest.EnvRunCLI) == "1" {
		os.Exit(app.Main())
	}
	os.Exit(env.Run(m))
}

// release puts a data plane's release at version into a ConfigMap bundle
// in hitless-system: a DaemonSet annotated as the data plane, on every
// node, 2 s grace period.
func bundle(t *testing.T, name, version string) {
	t.Helper()
	doc := strings.ReplaceAll(clustertest.DataPlaneRelease("plane"), "1.0.0", version)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: store.Namespace}, Data: map[string]string{"plane.yaml": doc}}
	cs := env.Client(t)
	if _, err := cs.CoreV1().ConfigMaps(store.Namespace).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func condition(comp *v1alpha1.Component, typ string) *metav1.Condition {
	for i := range comp.Status.Conditions {
		if c := &comp.Status.Conditions[i]; c.Type == typ && c.Status == metav1.ConditionTrue {
			return c
		}
	}
	return nil
}

// images returns the data plane's pods' images by node.
func images(t *testing.T) map[string]string {
	t.Helper()
	pods, err := env.Client(t).CoreV1().Pods("plane").List(context.Background(), metav1.ListOptions{LabelSelector: "app=plane"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out[p.Spec.NodeName] = p.Spec.Containers[0].Image
		}
	}
	return out
}

// A Component installed at 1.0.0, then edited to 2.0.0 under a 500 ms
// outage budget with rollbackOnBreach: the first node's data plane
// restart (2 s grace period, the link down meanwhile) exceeds the budget,
// so before the second node the controller stops the upgrade and rolls
// it back: revision 1 deployed again, every pod at 1.0.0, no node left
// cordoned, and the status, the Events and the metrics tell it. Edited
// to 3.0.0 without the rollback policy, the upgrade pauses before its
// second node instead, resumable.
func TestComponentBudgetBreach(t *testing.T) {
	env.InstallCRDs(t)
	env.StartLabAgents(t)
	c := env.APIClient(t)
	ctx := context.Background()
	cs := env.Client(t)
	bundle(t, "plane-1", "1.0.0")
	bundle(t, "plane-2", "2.0.0")
	bundle(t, "plane-3", "3.0.0")
	metrics := clustertest.FreeAddr(t)
	env.StartController(t, "--metrics-bind-address", metrics)

	comp := &v1alpha1.Component{
		ObjectMeta: metav1.ObjectMeta{Name: "plane"},
		Spec: v1alpha1.ComponentSpec{
			Source: v1alpha1.ComponentSource{ConfigMap: &v1alpha1.BundleRef{Name: "plane-1"}},
			Batch:  intstr.FromInt32(1),
		},
	}
	if err := c.Create(ctx, comp); err != nil {
		t.Fatal(err)
	}
	comp = env.WaitComponent(t, c, "plane", v1alpha1.PhaseReady, 2*time.Minute)
	time.Sleep(2 * time.Second) // a quiet network before the upgrade

	patch := client.MergeFrom(comp.DeepCopy())
	comp.Spec.Source.ConfigMap.Name = "plane-2"
	comp.Spec.Probe = &v1alpha1.ProbeBudget{Rate: 100, MaxOutage: &metav1.Duration{Duration: 500 * time.Millisecond}, Settle: &metav1.Duration{Duration: 2 * time.Second}}
	comp.Spec.RollbackOnBreach = true
	if err := c.Patch(ctx, comp, patch); err != nil {
		t.Fatal(err)
	}
	comp = env.WaitComponent(t, c, "plane", v1alpha1.PhaseRolledBack, 4*time.Minute)
	upgrade := comp.Status.Operation
	if f := condition(comp, v1alpha1.ConditionFailed); f != nil {
		t.Logf("%s: %s; disruption %+v", f.Reason, f.Message, comp.Status.Disruption)
	}

	t.Run("status", func(t *testing.T) {
		failed := condition(comp, v1alpha1.ConditionFailed)
		if failed == nil || failed.Reason != "RolledBack" || !strings.Contains(failed.Message, "exceeds `maxOutage` 500ms") || !strings.Contains(failed.Message, "revision 1 deployed again") {
			t.Errorf("Failed condition %+v, want RolledBack naming the budget and revision 1", failed)
		}
		if condition(comp, v1alpha1.ConditionRolledBack) == nil {
			t.Errorf("RolledBack is not True: %+v", comp.Status.Conditions)
		}
		if comp.Status.Revision != 1 {
			t.Errorf("status.revision %d, want 1", comp.Status.Revision)
		}
		d := comp.Status.Disruption
		if d == nil || d.MaxOutage.Duration <= 500*time.Millisecond || d.Windows == 0 || !strings.Contains(d.Breach, "disruption budget exceeded before node") {
			t.Errorf("disruption %+v, want the breach and an outage over 500ms", d)
		}
		h := comp.Status.History
		if len(h) != 2 || h[1].Operation != upgrade || h[1].Result != v1alpha1.PhaseAborted {
			t.Errorf("history %+v, want the install then the upgrade %s Aborted", h, upgrade)
		}
	})
	t.Run("rolled back in the cluster", func(t *testing.T) {
		raw, err := journal.NewStore(cs).Get(ctx, upgrade)
		if err != nil || raw.Status != journal.Aborted {
			t.Fatalf("the upgrade's journal: %+v, %v; want Aborted", raw, err)
		}
		revs, err := release.NewStore(cs).List(ctx, "plane")
		if err != nil {
			t.Fatal(err)
		}
		if cur := release.Current(revs); cur == nil || cur.Number != 1 {
			t.Errorf("deployed revision %+v, want 1 again", cur)
		}
		clustertest.Eventually(t, 2*time.Minute, func() error {
			for node, img := range images(t) {
				if !strings.HasSuffix(img, ":1.0.0") {
					return fmt.Errorf("node %s runs %s", node, img)
				}
			}
			return nil
		})
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes.Items {
			if n.Spec.Unschedulable {
				t.Errorf("node %s left cordoned", n.Name)
			}
		}
	})
	t.Run("events", func(t *testing.T) {
		evs := env.Events(t, "Component", "plane")
		for _, want := range []string{"Warning BudgetExceeded: operation " + upgrade, "Warning RolledBack: upgrade operation " + upgrade} {
			if !clustertest.HasEvent(evs, want) {
				t.Errorf("no Event %q in %v", want, evs)
			}
		}
	})
	t.Run("metrics", func(t *testing.T) {
		fams := clustertest.Scrape(t, metrics)
		if m := clustertest.Sample(fams, "hitless_budget_breaches_total", map[string]string{"kind": "upgrade", "then": "rolled-back"}); m == nil || m.GetCounter().GetValue() != 1 {
			t.Errorf("hitless_budget_breaches_total{upgrade,rolled-back} = %v, want 1", m)
		}
		if m := clustertest.Sample(fams, "hitless_probe_longest_outage_seconds", map[string]string{"kind": "upgrade"}); m == nil || m.GetGauge().GetValue() <= 0.5 {
			t.Errorf("hitless_probe_longest_outage_seconds{upgrade} = %v, want over 0.5 (the status says %s)", m, comp.Status.Disruption.MaxOutage)
		}
		if m := clustertest.Sample(fams, "hitless_operations_total", map[string]string{"kind": "upgrade", "result": "Aborted"}); m == nil || m.GetCounter().GetValue() != 1 {
			t.Errorf("hitless_operations_total{upgrade,Aborted} = %v, want 1", m)
		}
		if m := clustertest.Sample(fams, "hitless_operations_total", map[string]string{"kind": "install", "result": "Succeeded"}); m == nil || m.GetCounter().GetValue() != 1 {
			t.Errorf("hitless_operations_total{install,Succeeded} = %v, want 1", m)
		}
	})

	t.Run("without rollbackOnBreach the upgrade pauses", func(t *testing.T) {
		time.Sleep(2 * time.Second)
		patch := client.MergeFrom(comp.DeepCopy())
		comp.Spec.Source.ConfigMap.Name = "plane-3"
		comp.Spec.RollbackOnBreach = false
		if err := c.Patch(ctx, comp, patch); err != nil {
			t.Fatal(err)
		}
		comp = env.WaitComponent(t, c, "plane", v1alpha1.PhasePaused, 4*time.Minute)
		paused := condition(comp, v1alpha1.ConditionPaused)
		if paused == nil || paused.Reason != "BudgetExceeded" || !strings.Contains(paused.Message, "stopped before its next node") {
			t.Errorf("Paused condition %+v, want BudgetExceeded", paused)
		}
		raw, err := journal.NewStore(cs).Get(ctx, comp.Status.Operation)
		if err != nil || !raw.Status.Resumable() {
			t.Errorf("the paused upgrade's journal: %+v, %v; want resumable", raw, err)
		}
		imgs := images(t)
		at3 := 0
		for _, img := range imgs {
			if strings.HasSuffix(img, ":3.0.0") {
				at3++
			}
		}
		if at3 != 1 {
			t.Errorf("%d node(s) at 3.0.0 (%v), want the one before the budget stopped the upgrade", at3, imgs)
		}
		fams := clustertest.Scrape(t, metrics)
		if m := clustertest.Sample(fams, "hitless_budget_breaches_total", map[string]string{"kind": "upgrade", "then": "paused"}); m == nil || m.GetCounter().GetValue() != 1 {
			t.Errorf("hitless_budget_breaches_total{upgrade,paused} = %v, want 1", m)
		}
		// Leave the cluster clean: abort the paused upgrade.
		var out bytes.Buffer
		if code := app.Run(ctx, "hitless", []string{"--kubeconfig", env.Kubeconfig(t), "abort", comp.Status.Operation},
			genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out}); code != 0 {
			t.Errorf("abort: exit %d\n%s", code, out.String())
		}
	})
	t.Run("a NodeRoll under the same budget pauses, and a larger budget resumes it", func(t *testing.T) {
		nodeRollBudget(t, c, metrics)
	})
}

// nodeRollBudget rolls every node restarting the data plane on each under
// a 500 ms outage budget: it pauses before its second node; raised to
// 30 s, the budget lets the same operation finish.
func nodeRollBudget(t *testing.T, c client.Client, metrics string) {
	ctx := context.Background()
	time.Sleep(2 * time.Second)
	nr := &v1alpha1.NodeRoll{
		ObjectMeta: metav1.ObjectMeta{Name: "restart-plane"},
		Spec: v1alpha1.NodeRollSpec{
			NodeSelector: &metav1.LabelSelector{},
			Batch:        intstr.FromInt32(1),
			MaxFailures:  1,
			Actions:      []v1alpha1.NodeAction{{Name: "restart-daemonset", Params: &runtime.RawExtension{Raw: []byte(`{"daemonSet":"plane/plane"}`)}}},
			Probe:        &v1alpha1.ProbeBudget{Rate: 100, MaxOutage: &metav1.Duration{Duration: 500 * time.Millisecond}, Settle: &metav1.Duration{Duration: time.Second}},
		},
	}
	if err := c.Create(ctx, nr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), nr) })
	get := func(phase string) *v1alpha1.NodeRoll {
		t.Helper()
		clustertest.Eventually(t, 3*time.Minute, func() error {
			if err := c.Get(ctx, client.ObjectKey{Name: nr.Name}, nr); err != nil {
				return err
			}
			if nr.Status.Phase != phase || nr.Status.ObservedGeneration != nr.Generation {
				return fmt.Errorf("NodeRoll is %q, want %s; conditions %+v", nr.Status.Phase, phase, nr.Status.Conditions)
			}
			return nil
		})
		return nr
	}
	nr = get(v1alpha1.PhasePaused)
	var paused *metav1.Condition
	for i := range nr.Status.Conditions {
		if c := &nr.Status.Conditions[i]; c.Type == v1alpha1.ConditionPaused && c.Status == metav1.ConditionTrue {
			paused = c
		}
	}
	if paused == nil || paused.Reason != "BudgetExceeded" || !strings.Contains(paused.Message, "exceeds `maxOutage` 500ms") {
		t.Fatalf("Paused condition %+v, want BudgetExceeded", paused)
	}
	if nr.Status.Summary.Done != 1 {
		t.Errorf("%d node(s) done before the budget stopped the roll, want 1", nr.Status.Summary.Done)
	}
	if d := nr.Status.Disruption; d == nil || d.MaxOutage.Duration <= 500*time.Millisecond || !strings.Contains(d.Breach, "exceeds `maxOutage` 500ms") {
		t.Errorf("disruption %+v", nr.Status.Disruption)
	}
	fams := clustertest.Scrape(t, metrics)
	if m := clustertest.Sample(fams, "hitless_budget_breaches_total", map[string]string{"kind": "roll", "then": "paused"}); m == nil || m.GetCounter().GetValue() != 1 {
		t.Errorf("hitless_budget_breaches_total{roll,paused} = %v, want 1", m)
	}
	id := nr.Status.Operation
	// Stays paused: the same spec does not start it again.
	time.Sleep(3 * time.Second)
	if err := c.Get(ctx, client.ObjectKey{Name: nr.Name}, nr); err != nil {
		t.Fatal(err)
	}
	if raw, err := journal.NewStore(env.Client(t)).Get(ctx, id); err != nil || raw.Runs != 1 {
		t.Errorf("the paused roll ran again without a change: %+v %v", raw, err)
	}
	patch := client.MergeFrom(nr.DeepCopy())
	nr.Spec.Probe.MaxOutage = &metav1.Duration{Duration: 30 * time.Second}
	if err := c.Patch(ctx, nr, patch); err != nil {
		t.Fatal(err)
	}
	nr = get(v1alpha1.PhaseSucceeded)
	if nr.Status.Operation != id || nr.Status.Summary.Done != nr.Status.Summary.Total {
		t.Errorf("operation %s (%+v), want %s resumed to the end", nr.Status.Operation, nr.Status.Summary, id)
	}
	if raw, err := journal.NewStore(env.Client(t)).Get(ctx, id); err != nil || raw.Runs != 2 {
		t.Errorf("the resumed roll: %+v %v; want run 2", raw, err)
	}
}

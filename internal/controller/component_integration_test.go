package controller_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

const samplePlugin = "../../examples/sample-plugin"

// bundleConfigMap puts a release directory's files into a ConfigMap in
// hitless-system, as a user's GitOps tool would (kustomize's
// configMapGenerator), and deletes it when the test ends.
func bundleConfigMap(t *testing.T, name, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: store.Namespace}, Data: map[string]string{}}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		cm.Data[e.Name()] = string(b)
	}
	putConfigMap(t, cm)
}

func putConfigMap(t *testing.T, cm *corev1.ConfigMap) {
	t.Helper()
	cs := env.Client(t)
	ctx := context.Background()
	if _, err := cs.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().ConfigMaps(cm.Namespace).Delete(context.Background(), cm.Name, metav1.DeleteOptions{})
	})
}

// A Component installs v1 of the sample plugin from a ConfigMap bundle;
// the plugin is customized live as users do (kubectl patch, label); the
// Component is edited to v2's bundle, as a Git change would, and the
// controller upgrades it with the customizations carried, the vendor's
// changes applied and the data plane replaced node by node on drained
// nodes under the PDB; conditions, history and Events tell the story.
func TestComponentUpgradeCarriesCustomizations(t *testing.T) {
	env.InstallCRDs(t)
	c := env.APIClient(t)
	ctx := context.Background()
	cs := env.Client(t)
	_, nodes := pool(t, 3, 1, 1)
	bundleConfigMap(t, "contrail-v2", samplePlugin+"/v2")
	env.StartController(t)

	// Installed from the CLI: the release's files become a ConfigMap
	// bundle, the Component names it, the command follows it.
	code, out, errb := lifecycletest.Hitless(t, env, "install", "--in-cluster", "-f", samplePlugin+"/v1", "--name", "contrail", "--batch", "1")
	t.Cleanup(func() {
		_ = c.Delete(context.Background(), &v1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "contrail"}})
		if code, out, errb := lifecycletest.Hitless(t, env, "uninstall", "--name", "contrail"); code != 0 {
			t.Errorf("uninstall: exit %d\n%s\n%s", code, out, errb)
		}
	})
	if code != 0 || !strings.Contains(errb, "Component contrail created, source ConfigMap hitless-system/contrail-") || !strings.Contains(out, "Ready; revision 1 (release 1.0.0)") {
		t.Fatalf("install --in-cluster: exit %d\n%s\n%s", code, out, errb)
	}
	comp := env.WaitComponent(t, c, "contrail", v1alpha1.PhaseReady, time.Minute)
	if comp.Status.Revision != 1 || comp.Status.Release != "1.0.0" || conditionTrueOf(comp.Status.Conditions, v1alpha1.ConditionReady) == nil {
		t.Fatalf("after the install: revision %d release %q conditions %+v", comp.Status.Revision, comp.Status.Release, comp.Status.Conditions)
	}
	installOp := comp.Status.Operation

	// Live customizations, each through its own field manager as kubectl does.
	lifecycletest.Patch(t, env, "v1", "configmaps", "contrail", "contrail-settings", "kubectl-patch", types.MergePatchType, `{"data":{"VROUTER_MTU":"1400"}}`)
	lifecycletest.Patch(t, env, "apps/v1", "daemonsets", "contrail", "contrail-vrouter-nodes", "kubectl-label", types.MergePatchType, `{"metadata":{"labels":{"site.example/team":"network"}}}`)

	// The Git change: v2's bundle.
	patch := client.MergeFrom(comp.DeepCopy())
	comp.Spec.Source.ConfigMap.Name = "contrail-v2"
	if err := c.Patch(ctx, comp, patch); err != nil {
		t.Fatal(err)
	}
	upgradeStarted := time.Now()
	// Paused mid-upgrade, as an operator stops a change that looks wrong:
	// the upgrade stops before its next node, and goes on from its
	// journal once unpaused.
	clustertest.Eventually(t, 2*time.Minute, func() error {
		if err := c.Get(ctx, client.ObjectKey{Name: "contrail"}, comp); err != nil {
			return err
		}
		if comp.Status.Phase != v1alpha1.PhaseUpgrading || comp.Status.Operation == installOp || comp.Status.Operation == "" {
			return fmt.Errorf("Component is %q, operation %q", comp.Status.Phase, comp.Status.Operation)
		}
		return nil
	})
	upgradeOp := comp.Status.Operation
	setPaused := func(p bool) {
		t.Helper()
		patch := client.MergeFrom(comp.DeepCopy())
		comp.Spec.Paused = p
		if err := c.Patch(ctx, comp, patch); err != nil {
			t.Fatal(err)
		}
	}
	setPaused(true)
	comp = env.WaitComponent(t, c, "contrail", v1alpha1.PhasePaused, 3*time.Minute)
	if p := conditionTrueOf(comp.Status.Conditions, v1alpha1.ConditionPaused); p == nil || p.Reason != "Paused" || !strings.Contains(p.Message, upgradeOp+" stopped before its next node") {
		t.Errorf("Paused condition %+v, want the upgrade %s stopped by spec.paused", p, upgradeOp)
	}
	if got := cordoned(t, nodes); len(got) > 0 {
		t.Errorf("nodes left cordoned while paused: %v", got)
	}
	setPaused(false)
	comp = env.WaitComponent(t, c, "contrail", v1alpha1.PhaseReady, 5*time.Minute)
	if comp.Status.Operation != upgradeOp || comp.Status.Revision != 2 {
		t.Errorf("after the pause: operation %s revision %d, want %s resumed to revision 2", comp.Status.Operation, comp.Status.Revision, upgradeOp)
	}
	if raw, err := journal.NewStore(cs).Get(ctx, upgradeOp); err != nil || raw.Runs != 2 {
		t.Errorf("the resumed upgrade's journal: %+v, %v; want run 2", raw, err)
	}
	t.Logf("upgrade took %s", time.Since(upgradeStarted).Round(time.Second))

	t.Run("status", func(t *testing.T) {
		if comp.Status.Release != "1.1.0" {
			t.Errorf("release %q, want 1.1.0", comp.Status.Release)
		}
		ready := conditionTrueOf(comp.Status.Conditions, v1alpha1.ConditionReady)
		if ready == nil || ready.Reason != "Upgraded" || !strings.Contains(ready.Message, "revision 2 deployed (release 1.1.0)") || !strings.Contains(ready.Message, "customization(s) carried") {
			t.Errorf("Ready: %+v", ready)
		}
		for _, want := range []string{"ConfigMap/contrail/contrail-settings data.VROUTER_MTU", `DaemonSet/contrail/contrail-vrouter-nodes metadata.labels["site.example/team"]`} {
			if !slices.ContainsFunc(comp.Status.Carried, func(s string) bool { return strings.Contains(s, want) }) {
				t.Errorf("status.carried lacks %s: %v", want, comp.Status.Carried)
			}
		}
		if len(comp.Status.History) != 2 || comp.Status.History[0].Operation != installOp || comp.Status.History[1].Operation != comp.Status.Operation ||
			comp.Status.History[0].Result != v1alpha1.PhaseSucceeded || comp.Status.History[1].Result != v1alpha1.PhaseSucceeded {
			t.Errorf("history %+v, want the install %s and the upgrade %s, Succeeded", comp.Status.History, installOp, comp.Status.Operation)
		}
		raw, err := journal.NewStore(cs).Get(ctx, comp.Status.Operation)
		if err != nil || raw.Kind != "upgrade" || raw.Status != journal.Succeeded || !strings.Contains(raw.Command, "Component contrail") {
			t.Errorf("the journal of %s: %+v, %v", comp.Status.Operation, raw, err)
		}
	})
	t.Run("customizations carried, vendor changes applied", func(t *testing.T) {
		cm := lifecycletest.Get(t, env, "v1", "configmaps", "contrail", "contrail-settings")
		if v, _, _ := unstructured.NestedString(cm.Object, "data", "VROUTER_MTU"); v != "1400" {
			t.Errorf("VROUTER_MTU = %q after the upgrade, want the user's 1400", v)
		}
		if v, ok, _ := unstructured.NestedString(cm.Object, "data", "FLOW_EXPORT_RATE"); !ok || v != "0" {
			t.Errorf("FLOW_EXPORT_RATE = %q (%v), want v2's new key", v, ok)
		}
		ds := lifecycletest.Get(t, env, "apps/v1", "daemonsets", "contrail", "contrail-vrouter-nodes")
		if ds.GetLabels()["site.example/team"] != "network" {
			t.Errorf("the user's label is gone: %v", ds.GetLabels())
		}
		if s, _, _ := unstructured.NestedString(ds.Object, "spec", "updateStrategy", "type"); s != "RollingUpdate" {
			t.Errorf("the vRouter's update strategy %q after the upgrade, want the vendor's RollingUpdate back", s)
		}
		pods, err := cs.CoreV1().Pods("contrail").List(ctx, metav1.ListOptions{LabelSelector: "app=contrail-vrouter"})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) == 0 {
			t.Fatal("no vRouter pod")
		}
		for _, p := range pods.Items {
			if img := p.Spec.Containers[0].Image; !strings.HasSuffix(img, ":1.1.0") {
				t.Errorf("vRouter pod %s on %s runs %s", p.Name, p.Spec.NodeName, img)
			}
		}
		revs := lifecycletest.Revisions(t, env, "contrail")
		if cur := release.Current(revs); cur == nil || cur.Number != 2 {
			t.Errorf("deployed revision %+v, want 2", cur)
		}
	})
	t.Run("events", func(t *testing.T) {
		evs := env.Events(t, "Component", "contrail")
		for _, want := range []string{"Normal Started: install operation", "Normal Installed: install operation", "Normal Started: upgrade operation", "Normal Upgraded: upgrade operation " + comp.Status.Operation} {
			if !clustertest.HasEvent(evs, want) {
				t.Errorf("no Event %q in %v", want, evs)
			}
		}
	})
	if got := cordoned(t, nodes); len(got) > 0 {
		t.Errorf("nodes left cordoned: %v", got)
	}

	t.Run("the same release asked again from the CLI starts nothing", func(t *testing.T) {
		code, out, errb := lifecycletest.Hitless(t, env, "upgrade", "--in-cluster", "-f", samplePlugin+"/v2", "--name", "contrail", "--batch", "1")
		if code != 0 || !strings.Contains(errb, "Component contrail updated") || !strings.Contains(out, "Ready; revision 2 (release 1.1.0)") {
			t.Errorf("upgrade --in-cluster: exit %d\n%s\n%s", code, out, errb)
		}
		if err := c.Get(ctx, client.ObjectKey{Name: "contrail"}, comp); err != nil {
			t.Fatal(err)
		}
		if len(comp.Status.History) != 2 {
			t.Errorf("history %+v, want no new operation", comp.Status.History)
		}
	})
	t.Run("settled: a generation change that does not shape the release starts nothing", func(t *testing.T) {
		patch := client.MergeFrom(comp.DeepCopy())
		comp.Spec.Probe = nil
		comp.Spec.Wait = &metav1.Duration{Duration: 3 * time.Minute}
		if err := c.Patch(ctx, comp, patch); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		if err := c.Get(ctx, client.ObjectKey{Name: "contrail"}, comp); err != nil {
			t.Fatal(err)
		}
		if len(comp.Status.History) != 2 {
			t.Errorf("history %+v after a change of spec.wait, want no new operation", comp.Status.History)
		}
	})
}

func conditionTrueOf(conds []metav1.Condition, typ string) *metav1.Condition {
	cond := meta.FindStatusCondition(conds, typ)
	if cond == nil || cond.Status != metav1.ConditionTrue {
		return nil
	}
	return cond
}

// Bad Components: what admission can judge is refused with the field
// named; a source the controller cannot use becomes Failed naming the
// field, with a Warning Event, and nothing changes in the cluster.
func TestBadComponents(t *testing.T) {
	env.InstallCRDs(t)
	c := env.APIClient(t)
	ctx := context.Background()
	cm := func(name string) v1alpha1.ComponentSource {
		return v1alpha1.ComponentSource{ConfigMap: &v1alpha1.BundleRef{Name: name}}
	}
	t.Run("admission", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			comp  v1alpha1.Component
			field string
		}{
			{"no source", v1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "no-source"}}, "spec.source"},
			{"two sources", v1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "two"}, Spec: v1alpha1.ComponentSpec{Source: v1alpha1.ComponentSource{ConfigMap: &v1alpha1.BundleRef{Name: "a"}, Secret: &v1alpha1.BundleRef{Name: "b"}}}}, "spec.source"},
			{"name too long", v1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("a", 41)}, Spec: v1alpha1.ComponentSpec{Source: cm("a")}}, "metadata.name"},
			{"batch 0", v1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "batch"}, Spec: v1alpha1.ComponentSpec{Source: cm("a"), Batch: intstr.FromInt32(0)}}, "spec.batch"},
			{"batch 0%", v1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "batch"}, Spec: v1alpha1.ComponentSpec{Source: cm("a"), Batch: intstr.FromString("0%")}}, "spec.batch"},
			{"prefer", v1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "prefer"}, Spec: v1alpha1.ComponentSpec{Source: cm("a"), Prefer: "mine"}}, "spec.prefer"},
			{"data plane", v1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "dp"}, Spec: v1alpha1.ComponentSpec{Source: cm("a"), DataPlane: []string{"vrouter"}}}, "spec.dataPlane[0]"},
			{"max loss", v1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "loss"}, Spec: v1alpha1.ComponentSpec{Source: cm("a"), Probe: &v1alpha1.ProbeBudget{MaxLoss: "5"}}}, "spec.probe.maxLoss"},
			{"settle", v1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "settle"}, Spec: v1alpha1.ComponentSpec{Source: cm("a"), Probe: &v1alpha1.ProbeBudget{Settle: &metav1.Duration{Duration: time.Hour}}}}, "spec.probe.settle"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if tc.comp.Spec.Batch == (intstr.IntOrString{}) && tc.field != "spec.batch" {
					tc.comp.Spec.Batch = intstr.FromInt32(1)
				}
				err := c.Create(ctx, &tc.comp)
				if err == nil {
					_ = c.Delete(ctx, &tc.comp)
					t.Fatal("admitted")
				}
				if !strings.Contains(err.Error(), tc.field) {
					t.Errorf("refused without naming %s: %v", tc.field, err)
				}
			})
		}
	})

	env.StartController(t)
	parent := t // the missing source's Component lives on into the last subtest
	for _, tc := range []struct {
		name, reason, field, msg string
		data                     map[string]string
		values                   string
	}{
		{name: "missing", reason: "SourceNotFound", field: "spec.source.configMap.name", msg: "not found"},
		{name: "not-yaml", reason: "InvalidSource", field: "spec.source.configMap.name", msg: "no .yaml, .yml or .json key", data: map[string]string{"README": "hello"}},
		{name: "bad-manifest", reason: "InvalidSource", field: "spec.source.configMap.name", msg: "bad.yaml", data: map[string]string{"bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [x]}\n"}},
		{name: "unpacked-chart", reason: "InvalidSource", field: "spec.source.configMap.name", msg: "package it", data: map[string]string{"Chart.yaml": "apiVersion: v2\nname: x\nversion: 1.0.0\n", "values.yaml": "{}"}},
		{name: "values-for-manifests", reason: "InvalidSpec", field: "spec.values", msg: "values are for charts", data: map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n"}, values: `{"a":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "bad-" + tc.name
			if tc.data != nil {
				putConfigMap(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: src, Namespace: store.Namespace}, Data: tc.data})
			}
			comp := &v1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "bad-" + tc.name}, Spec: v1alpha1.ComponentSpec{Source: cm(src), Batch: intstr.FromInt32(1)}}
			if tc.values != "" {
				comp.Spec.Values = &runtime.RawExtension{Raw: []byte(tc.values)}
			}
			if err := c.Create(ctx, comp); err != nil {
				t.Fatal(err)
			}
			parent.Cleanup(func() { _ = c.Delete(context.Background(), comp) })
			comp = env.WaitComponent(t, c, comp.Name, v1alpha1.PhaseFailed, time.Minute)
			failed := conditionTrueOf(comp.Status.Conditions, v1alpha1.ConditionFailed)
			if failed == nil || failed.Reason != tc.reason || !strings.Contains(failed.Message, tc.field) || !strings.Contains(failed.Message, tc.msg) || !strings.Contains(failed.Message, "nothing was changed") {
				t.Errorf("Failed condition %+v, want reason %s naming %s and %q", failed, tc.reason, tc.field, tc.msg)
			}
			clustertest.Eventually(t, 30*time.Second, func() error {
				if evs := env.Events(t, "Component", comp.Name); !clustertest.HasEvent(evs, "Warning "+tc.reason+": "+tc.field) {
					return fmt.Errorf("no Warning %s Event naming %s: %v", tc.reason, tc.field, evs)
				}
				return nil
			})
			if comp.Status.Operation != "" || len(comp.Status.History) > 0 {
				t.Errorf("an operation ran: %q %+v", comp.Status.Operation, comp.Status.History)
			}
			if revs := lifecycletest.Revisions(t, env, comp.Name); len(revs) > 0 {
				t.Errorf("%d revisions recorded", len(revs))
			}
		})
	}
	t.Run("a missing source created later is installed", func(t *testing.T) {
		putConfigMap(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bad-missing", Namespace: store.Namespace},
			Data: map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late-component, namespace: default}\ndata: {k: v}\n"}})
		comp := env.WaitComponent(t, c, "bad-missing", v1alpha1.PhaseReady, time.Minute)
		t.Cleanup(func() {
			_ = c.Delete(context.Background(), comp)
			if code, out, errb := lifecycletest.Hitless(t, env, "uninstall", "--name", comp.Name); code != 0 {
				t.Errorf("uninstall: exit %d\n%s\n%s", code, out, errb)
			}
		})
		if comp.Status.Revision != 1 {
			t.Errorf("revision %d, want 1", comp.Status.Revision)
		}
		if _, err := env.Client(t).CoreV1().ConfigMaps("default").Get(ctx, "late-component", metav1.GetOptions{}); err != nil {
			t.Errorf("the late source's ConfigMap: %v", err)
		}
	})
}

package lifecycle_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
)

// Cilium's chart (two real releases) goes through the whole lifecycle: an
// install with values, a live edit, an upgrade to the next minor that
// keeps the install's values, takes a new one and carries the edit, a
// rollback to the first release's objects and values, and an uninstall
// that leaves nothing.
func TestCiliumChartLifecycle(t *testing.T) {
	v1, v2 := upstream.Path(t, "helm", "cilium", "cilium-1.18.12.tgz"), upstream.Path(t, "helm", "cilium", "cilium-1.19.6.tgz")
	values := lifecycletest.WriteFile(t, "values.yaml", "operator:\n  replicas: 1\nipam:\n  mode: kubernetes\n")
	in := mustHitless(t, "install", "-f", v1, "--name", "cilium", "-n", "kube-system", "--values", values, "--set", "debug.enabled=true", "--batch", "100%")
	if in.Chart == nil || in.Chart.Name != "cilium" || in.Chart.Version != "1.18.12" || in.Chart.Namespace != "kube-system" {
		t.Fatalf("install: chart %+v", in.Chart)
	}
	config := func() map[string]any {
		u := get(t, "v1", "configmaps", "kube-system", "cilium-config")
		data, _, _ := unstructured.NestedMap(u.Object, "data")
		return data
	}
	replicas := func() int64 {
		u := get(t, "apps/v1", "deployments", "kube-system", "cilium-operator")
		n, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
		return n
	}
	if c := config(); c["debug"] != "true" || c["ipam"] != "kubernetes" || replicas() != 1 {
		t.Fatalf("installed config debug=%v ipam=%v, operator replicas %d", c["debug"], c["ipam"], replicas())
	}
	before := daemonSet(t, "kube-system", "cilium")
	// A live edit, as kubectl patch makes it.
	patch(t, "v1", "configmaps", "kube-system", "cilium-config", "kubectl-patch", types.MergePatchType, `{"data":{"hitless-test-edit":"kept"}}`)

	up := mustHitless(t, "upgrade", "-f", v2, "--name", "cilium", "-n", "kube-system", "--set", "bpf.monitorAggregation=low", "--batch", "100%")
	if up.Chart == nil || up.Chart.Version != "1.19.6" {
		t.Fatalf("upgrade: chart %+v", up.Chart)
	}
	c := config()
	for k, want := range map[string]string{"debug": "true", "ipam": "kubernetes", "monitor-aggregation": "low", "hitless-test-edit": "kept"} {
		if c[k] != want {
			t.Errorf("after the upgrade cilium-config %s = %v, want %s (install values reused, new value taken, live edit carried)", k, c[k], want)
		}
	}
	if replicas() != 1 {
		t.Errorf("after the upgrade the operator has %d replicas, want the install's value 1", replicas())
	}
	if img := daemonSet(t, "kube-system", "cilium"); !strings.Contains(img, "v1.19.6") {
		t.Errorf("the agent DaemonSet is not at v1.19.6")
	}

	// The journal, which anyone who reads ConfigMaps sees, names the
	// values --set gave, never what they are; such a command is not run
	// again from the journal, the user runs it again.
	op, err := journal.NewStore(env.Client(t)).Get(context.Background(), up.Operation)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(op.Command, "--set=bpf.monitorAggregation=(redacted)") || strings.Contains(op.Command, "=low") {
		t.Errorf("journaled command %q: want the --set value redacted", op.Command)
	}
	now := time.Now()
	failed := &journal.Raw{Operation: journal.Operation{Format: journal.Format, ID: journal.NewID(op.Kind), Kind: op.Kind, Command: op.Command,
		SpecHash: "redacted-test", Spec: op.Spec, Status: journal.Failed, Started: now, Updated: now}}
	if err := journal.NewStore(env.Client(t)).Create(context.Background(), failed); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := hitless(t, "resume", failed.ID)
	if code != 2 || !strings.Contains(stderr, "held values hitless does not journal") {
		t.Errorf("resume of a command with redacted values: exit %d, want 2 asking for the command\n%s\n%s", code, out, stderr)
	}
	if _, err := journal.NewStore(env.Client(t)).Close(context.Background(), failed.ID, journal.Aborted, "test"); err != nil {
		t.Fatal(err)
	}

	code, hist, _ := hitless(t, "history", "--name", "cilium", "-o", "json")
	if code != 0 || !strings.Contains(hist, `"chart": "cilium 1.18.12"`) || !strings.Contains(hist, `"chart": "cilium 1.19.6"`) {
		t.Errorf("history: exit %d, want each revision's chart and version:\n%s", code, hist)
	}
	back := mustHitless(t, "rollback", "--name", "cilium", "--batch", "100%")
	if back.Chart == nil || back.Chart.Version != "1.18.12" {
		t.Errorf("rollback: chart %+v, want 1.18.12", back.Chart)
	}
	if after := daemonSet(t, "kube-system", "cilium"); after != before {
		t.Errorf("agent DaemonSet after the rollback:\n%s\nwant, as installed:\n%s", after, before)
	}
	if c := config(); c["monitor-aggregation"] == "low" || c["hitless-test-edit"] != "kept" {
		t.Errorf("after the rollback monitor-aggregation=%v (want the first release's), live edit %v (want kept)", c["monitor-aggregation"], c["hitless-test-edit"])
	}
	mustHitless(t, "uninstall", "--name", "cilium")
	if left := labelled(t, "hitless.dev/name=cilium"); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// daemonSet is a DaemonSet's spec, labels and annotations as the server
// holds them, less what the server manages.
func daemonSet(t *testing.T, ns, name string) string {
	t.Helper()
	u := get(t, "apps/v1", "daemonsets", ns, name)
	ann := u.GetAnnotations()
	delete(ann, "deprecated.daemonset.template.generation")
	delete(ann, "deployment.kubernetes.io/revision")
	return jsonOf(map[string]any{"spec": u.Object["spec"], "labels": u.GetLabels(), "annotations": ann})
}

// Bad chart input exits 2 naming the value, the hook or the file, and
// changes nothing.
func TestBadChartInputExitsTwo(t *testing.T) {
	chart := upstream.Path(t, "helm", "cilium", "cilium-1.18.12.tgz")
	plain := lifecycletest.WriteFile(t, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a value the schema refuses", []string{"-f", chart, "--set", "operator.replicas=many"}, "at '/operator/replicas': got string, want integer"},
		{"a hook hitless does not run", []string{"-f", chart, "--set", "hubble.tls.auto.method=cronJob"}, "Job/hubble-generate-certs"},
		{"a values file that is not there", []string{"-f", chart, "--values", "/nonexistent/values.yaml"}, "/nonexistent/values.yaml"},
		{"values for manifests", []string{"-f", plain, "--set", "a=b"}, "is not a Helm chart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := hitless(t, append([]string{"install", "--name", "badchart", "-n", "kube-system"}, tc.args...)...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, want 2 naming %q\n%s\n%s", code, tc.want, out, stderr)
			}
			if left := labelled(t, "hitless.dev/name=badchart"); len(left) > 0 {
				t.Fatalf("bad input left %v", left)
			}
		})
	}
}

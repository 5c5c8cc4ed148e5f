package migrate_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

var env = clustertest.New(clustertest.Options{Workers: 1})

func TestMain(m *testing.M) { os.Exit(env.Run(m)) }

func hitless(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"--kubeconfig", env.Kubeconfig(t)}, args...)
	code := app.Run(context.Background(), "hitless", args, genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	return code, out.String(), errOut.String()
}

func writePlan(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const head = "apiVersion: hitless.dev/v1alpha1\nkind: MigrationPlan\nmetadata: {name: cli}\nparameters: [{name: value, default: new}]\nsteps:\n"

func TestBadInputExitsTwo(t *testing.T) {
	cm := "- name: p\n  patch: {object: {apiVersion: v1, kind: ConfigMap, namespace: default, name: x}, patch: {data: {a: b}}}\n"
	tests := []struct {
		name string
		args func(t *testing.T) []string
		want string
	}{
		{name: "invalid YAML", args: func(t *testing.T) []string { return []string{"-f", writePlan(t, "steps: [")} }, want: "not valid YAML"},
		{name: "unknown step type", args: func(t *testing.T) []string {
			return []string{"-f", writePlan(t, head+"- name: r\n  reboot: {}\n")}
		}, want: "step \"r\": field reboot: unknown field or step type"},
		{name: "CEL that does not compile", args: func(t *testing.T) []string {
			return []string{"-f", writePlan(t, head+"- name: w\n  wait: {for: {apiVersion: v1, kind: Node}, condition: \"object.status ==\"}\n")}
		}, want: "step \"w\": field wait.condition"},
		{name: "field the schema lacks", args: func(t *testing.T) []string {
			return []string{"-f", writePlan(t, head+"- name: w\n  wait: {for: {apiVersion: v1, kind: Node}, condition: \"object.spec.unschedulabel\"}\n")}
		}, want: "undefined field 'unschedulabel'"},
		{name: "missing parameter", args: func(t *testing.T) []string {
			return []string{"-f", writePlan(t, head+"- name: p\n  pause: {message: \"${nope}\"}\n")}
		}, want: "${nope} names no parameter"},
		{name: "unknown --set", args: func(t *testing.T) []string { return []string{"-f", writePlan(t, head+cm), "--set", "valu=1"} }, want: `"valu" is no parameter of plan cli`},
		{name: "bad --set", args: func(t *testing.T) []string { return []string{"-f", writePlan(t, head+cm), "--set", "value"} }, want: "want name=value"},
		{name: "unknown built-in", args: func(*testing.T) []string { return []string{"no-such-plan"} }, want: "is no built-in plan"},
		{name: "missing file", args: func(*testing.T) []string { return []string{"-f", "/nonexistent/plan.yaml"} }, want: "/nonexistent/plan.yaml"},
		{name: "a network parameter the checks cannot read", args: func(*testing.T) []string {
			return []string{"openshift-sdn-to-ovn", "--set", "v4InternalSubnet=100.64.0.1/16"}
		}, want: `field network.internalSubnet: "100.64.0.1/16" has host bits set`},
		{name: "negative --agent-timeout", args: func(t *testing.T) []string { return []string{"-f", writePlan(t, head+cm), "--agent-timeout", "-1s"} }, want: "--agent-timeout: must not be negative"},
	}
	cs := env.Client(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := journal.NewStore(cs).List(context.Background())
			code, _, stderr := hitless(t, append([]string{"migrate", "run"}, tc.args(t)...)...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
			after, _ := journal.NewStore(cs).List(context.Background())
			if len(after) != len(before) {
				t.Errorf("journals %d -> %d: bad input must change nothing", len(before), len(after))
			}
		})
	}
}

func TestDryRunRunStatusRollback(t *testing.T) {
	cs := env.Client(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: ns}, Data: map[string]string{"a": "old"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	path := writePlan(t, head+"- name: set-a\n  description: set a\n  patch: {object: {apiVersion: v1, kind: ConfigMap, namespace: "+ns+", name: cfg}, patch: {data: {a: \"${value}\"}}}\n")

	code, out, stderr := hitless(t, "migrate", "run", "-f", path, "--dry-run")
	if code != 0 || !strings.Contains(out, "Dry run: nothing was changed") || !strings.Contains(out, "restore data.a of ConfigMap "+ns+"/cfg") {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, stderr)
	}
	if cm, _ := cs.CoreV1().ConfigMaps(ns).Get(ctx, "cfg", metav1.GetOptions{}); cm.Data["a"] != "old" {
		t.Fatalf("the dry run changed cfg: %v", cm.Data)
	}

	backups := t.TempDir()
	code, out, stderr = hitless(t, "migrate", "run", "-f", path, "--set", "value=newer", "--backup-dir", backups)
	if code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, stderr)
	}
	if cm, _ := cs.CoreV1().ConfigMaps(ns).Get(ctx, "cfg", metav1.GetOptions{}); cm.Data["a"] != "newer" {
		t.Fatalf("cfg after the run: %v", cm.Data)
	}
	files, _ := filepath.Glob(filepath.Join(backups, "cli-set-a-*.yaml"))
	if len(files) != 1 {
		t.Fatalf("backup files %v, want one", files)
	}
	if st, err := os.Stat(files[0]); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	id := regexp.MustCompile(`migrate-\d{8}-\d{6}-[0-9a-f]{4}`).FindString(out)
	if id == "" {
		t.Fatalf("no operation id in %s", out)
	}
	code, out, _ = hitless(t, "status", id)
	if code != 0 || !strings.Contains(out, "set-a") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	code, out, stderr = hitless(t, "migrate", "rollback", id)
	if code != 0 || !strings.Contains(out, "rollback-set-a") {
		t.Fatalf("rollback: exit %d\n%s\n%s", code, out, stderr)
	}
	if cm, _ := cs.CoreV1().ConfigMaps(ns).Get(ctx, "cfg", metav1.GetOptions{}); cm.Data["a"] != "old" {
		t.Errorf("cfg after the rollback: %v", cm.Data)
	}
}

func TestPlansListsBuiltins(t *testing.T) {
	code, out, _ := hitless(t, "migrate", "plans")
	if code != 0 || !strings.Contains(out, "openshift-sdn-to-ovn") || !strings.Contains(out, "seed 002") {
		t.Errorf("exit %d\n%s", code, out)
	}
}

// A migration paused on a gate is continued by `hitless resume ID`, which
// needs neither the plan file nor the parameters: the journal holds both.
func TestResumeByID(t *testing.T) {
	cs := env.Client(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	for _, cm := range []*corev1.ConfigMap{
		{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: ns}, Data: map[string]string{"a": "old"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "gate", Namespace: ns}, Data: map[string]string{"open": "false"}},
	} {
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	plan := head + "- name: set-a\n  patch: {object: {apiVersion: v1, kind: ConfigMap, namespace: " + ns + ", name: cfg}, patch: {data: {a: \"${value}\"}}}\n" +
		"gates:\n- name: gate-open\n  for: {apiVersion: v1, kind: ConfigMap, namespace: " + ns + ", name: gate}\n  condition: \"object.data['open'] == 'true'\"\n  within: 1s\n"
	path := writePlan(t, plan)
	code, out, stderr := hitless(t, "migrate", "run", "-f", path, "--set", "value=resumed")
	if code == 0 || !strings.Contains(stderr, "paused before step set-a") {
		t.Fatalf("run: exit %d, want a pause before set-a\n%s\n%s", code, out, stderr)
	}
	id := regexp.MustCompile(`migrate-\d{8}-\d{6}-[0-9a-f]{4}`).FindString(out + stderr)
	if id == "" {
		t.Fatalf("no operation id in\n%s\n%s", out, stderr)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "gate", "application/merge-patch+json", []byte(`{"data":{"open":"true"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = hitless(t, "resume", id)
	if code != 0 {
		t.Fatalf("resume: exit %d\n%s\n%s", code, out, stderr)
	}
	if cm, _ := cs.CoreV1().ConfigMaps(ns).Get(ctx, "cfg", metav1.GetOptions{}); cm.Data["a"] != "resumed" {
		t.Errorf("cfg after the resume: %v, want a=resumed", cm.Data)
	}
	if raw, err := journal.NewStore(cs).Get(ctx, id); err != nil || raw.Status != journal.Succeeded || raw.Runs != 2 {
		t.Errorf("journal after the resume: %v, want Succeeded after 2 runs", err)
		if raw != nil {
			t.Errorf("status %s, runs %d", raw.Status, raw.Runs)
		}
	}
}

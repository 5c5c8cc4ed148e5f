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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

// testPlan patches a ConfigMap of namespace NS (saved first), asks for an
// approval, rolls the nodes of SELECTOR one by one and marks the
// ConfigMap done.
const testPlan = `apiVersion: hitless.dev/v1alpha1
kind: MigrationPlan
metadata: {name: controller-test}
parameters:
- {name: mode, default: fast}
steps:
- name: save
  backup:
    objects: [{apiVersion: v1, kind: ConfigMap, namespace: NS, name: cfg}]
- name: set-mode
  patch:
    object: {apiVersion: v1, kind: ConfigMap, namespace: NS, name: cfg}
    patch: {data: {mode: "${mode}"}}
- name: confirm
  pause: {message: "Check the new mode before the nodes roll"}
- name: roll-nodes
  roll:
    groups: [{name: pool, selector: "SELECTOR", batch: "1"}]
- name: done
  patch:
    object: {apiVersion: v1, kind: ConfigMap, namespace: NS, name: cfg}
    patch: {data: {done: "yes"}}
`

// inlinePlan is doc as a Migration's spec.inline.
func inlinePlan(t *testing.T, doc string) *runtime.RawExtension {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return &runtime.RawExtension{Raw: js}
}

// migrationSetup makes the namespace with the ConfigMap cfg the plan
// patches, and returns the plan for the pool's nodes.
func migrationSetup(t *testing.T, sel map[string]string) (ns, doc string) {
	t.Helper()
	ns = env.Namespace(t)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: ns}, Data: map[string]string{"mode": "slow"}}
	if _, err := env.Client(t).CoreV1().ConfigMaps(ns).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var selector []string
	for k, v := range sel {
		selector = append(selector, k+"="+v)
	}
	return ns, strings.NewReplacer("NS", ns, "SELECTOR", strings.Join(selector, ",")).Replace(testPlan)
}

func configData(t *testing.T, ns string) map[string]string {
	t.Helper()
	cm, err := env.Client(t).CoreV1().ConfigMaps(ns).Get(context.Background(), "cfg", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data
}

// waitMigration waits until the Migration's status says phase, about its
// generation, and returns it.
func waitMigration(t testing.TB, c client.Client, name, phase string, within time.Duration) *v1alpha1.Migration {
	t.Helper()
	m := &v1alpha1.Migration{}
	clustertest.Eventually(t, within, func() error {
		if err := c.Get(context.Background(), client.ObjectKey{Name: name}, m); err != nil {
			return err
		}
		if m.Status.Phase != phase || m.Status.ObservedGeneration != m.Generation {
			return fmt.Errorf("Migration %s is %q (generation %d observed of %d), want %s; conditions %+v", name, m.Status.Phase, m.Status.ObservedGeneration, m.Generation, phase, m.Status.Conditions)
		}
		return nil
	})
	return m
}

func stepPhases(m *v1alpha1.Migration) string {
	var out []string
	for _, s := range m.Status.Steps {
		out = append(out, s.Name+"="+s.Phase)
	}
	return strings.Join(out, " ")
}

// A Migration runs an inline plan: it stops at the pause step until
// spec.approve names it, then rolls the nodes under the PDB guard and
// finishes; spec.rollback undoes every step newest first. The status
// shows each step; conditions, Events and the journal tell the story;
// what defines the migration is immutable and rollback cannot be
// cleared.
func TestMigrationApprovedThenRolledBack(t *testing.T) {
	env.InstallCRDs(t)
	c := env.APIClient(t)
	ctx := context.Background()
	cs := env.Client(t)
	sel, nodes := pool(t, 3, 1, 1)
	ns, doc := migrationSetup(t, sel)
	env.StartController(t)

	m := &v1alpha1.Migration{ObjectMeta: metav1.ObjectMeta{Name: "approved"}, Spec: v1alpha1.MigrationSpec{Inline: inlinePlan(t, doc)}}
	if err := c.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), m) })
	m = waitMigration(t, c, m.Name, v1alpha1.PhasePaused, 2*time.Minute)
	if cond := conditionTrueOf(m.Status.Conditions, v1alpha1.ConditionPaused); cond == nil || cond.Reason != "AwaitingApproval" || !strings.Contains(cond.Message, "spec.approve") {
		t.Errorf("Paused condition %+v, want AwaitingApproval naming spec.approve", cond)
	}
	if m.Status.Step != "confirm" || stepPhases(m) != "save=Done set-mode=Done confirm=Paused roll-nodes=Pending done=Pending" {
		t.Errorf("status while waiting: step %q, steps %s", m.Status.Step, stepPhases(m))
	}
	if d := configData(t, ns); d["mode"] != "fast" || d["done"] != "" {
		t.Errorf("cfg while waiting: %v, want mode fast and no done", d)
	}
	if got := cordoned(t, nodes); len(got) > 0 {
		t.Errorf("nodes cordoned before the approval: %v", got)
	}
	id := m.Status.Operation
	// Still waiting after a resync: nothing runs without the approval.
	time.Sleep(3 * time.Second)
	if raw, err := journal.NewStore(cs).Get(ctx, id); err != nil || raw.Runs != 1 {
		t.Fatalf("operation %s before the approval: %+v, %v; want one run", id, raw, err)
	}

	patch := client.MergeFrom(m.DeepCopy())
	m.Spec.Approve = []string{"confirm"}
	if err := c.Patch(ctx, m, patch); err != nil {
		t.Fatal(err)
	}
	m = waitMigration(t, c, m.Name, v1alpha1.PhaseSucceeded, 3*time.Minute)
	if m.Status.Operation != id || m.Status.Plan != "controller-test" || stepPhases(m) != "save=Done set-mode=Done confirm=Done roll-nodes=Done done=Done" {
		t.Errorf("status after the approval: operation %s (want %s), plan %q, steps %s", m.Status.Operation, id, m.Status.Plan, stepPhases(m))
	}
	if d := configData(t, ns); d["mode"] != "fast" || d["done"] != "yes" {
		t.Errorf("cfg after the migration: %v", d)
	}
	if got := cordoned(t, nodes); len(got) > 0 {
		t.Errorf("nodes left cordoned: %v", got)
	}
	raw, err := journal.NewStore(cs).Get(ctx, id)
	if err != nil || raw.Status != journal.Succeeded || raw.Runs != 2 {
		t.Fatalf("operation %s: %+v, %v; want Succeeded in 2 runs", id, raw, err)
	}
	op, err := journal.Decode[migrate.Record](raw)
	if err != nil || len(op.Record.Rolls["roll-nodes"]) != 1 {
		t.Fatalf("the migration's rolls: %+v, %v", op.Record.Rolls, err)
	}
	rollRaw, err := journal.NewStore(cs).Get(ctx, op.Record.Rolls["roll-nodes"][0])
	if err != nil || rollRaw.Status != journal.Succeeded {
		t.Fatalf("the roll step's roll: %+v, %v", rollRaw, err)
	}

	// What defines the migration is immutable; the rollback cannot be
	// taken back once asked for.
	patch = client.MergeFrom(m.DeepCopy())
	m.Spec.Parameters = map[string]string{"mode": "other"}
	if err := c.Patch(ctx, m, patch); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "immutable") {
		t.Errorf("changing the parameters: %v, want refused as immutable", err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(m), m); err != nil {
		t.Fatal(err)
	}
	patch = client.MergeFrom(m.DeepCopy())
	m.Spec.Rollback = true
	if err := c.Patch(ctx, m, patch); err != nil {
		t.Fatal(err)
	}
	m = waitMigration(t, c, m.Name, v1alpha1.PhaseRolledBack, 3*time.Minute)
	if d := configData(t, ns); d["mode"] != "slow" || d["done"] != "" {
		t.Errorf("cfg after the rollback: %v, want mode slow and no done", d)
	}
	if got := stepPhases(m); got != "save=Undone set-mode=Undone confirm=Undone roll-nodes=Undone done=Undone" {
		t.Errorf("steps after the rollback: %s", got)
	}
	if cond := conditionTrueOf(m.Status.Conditions, v1alpha1.ConditionRolledBack); cond == nil {
		t.Errorf("no RolledBack condition: %+v", m.Status.Conditions)
	}
	if raw, err := journal.NewStore(cs).Get(ctx, id); err != nil || raw.Status != journal.Aborted {
		t.Errorf("operation %s after the rollback: %+v, %v; want Aborted (rolled back)", id, raw, err)
	}
	patch = client.MergeFrom(m.DeepCopy())
	m.Spec.Rollback = false
	if err := c.Patch(ctx, m, patch); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "rollback cannot be cleared") {
		t.Errorf("clearing spec.rollback: %v, want refused", err)
	}

	evs := env.Events(t, "Migration", m.Name)
	for _, want := range []string{
		"Normal Started: migration of operation " + id + " started",
		"Normal Started: migration of operation " + id + " resumed (run 2)",
		"Normal Migrated: migration " + id + ": every step done",
		"Normal RolledBack: migration " + id + " rolled back (spec.rollback)",
	} {
		if !clustertest.HasEvent(evs, want) {
			t.Errorf("no Event %q among %v", want, evs)
		}
	}
	if len(m.Status.History) != 1 || m.Status.History[0].Operation != id || m.Status.History[0].Result != v1alpha1.PhaseAborted {
		t.Errorf("history %+v, want operation %s, rolled back", m.Status.History, id)
	}
}

// Deleting a Migration mid-roll aborts it as `hitless abort` does: the
// roll in flight stops with its nodes uncordoned, the started steps are
// rolled back newest first, the lock is released and an Event says so.
func TestDeleteMigrationMidRoll(t *testing.T) {
	env.InstallCRDs(t)
	c := env.APIClient(t)
	ctx := context.Background()
	cs := env.Client(t)
	sel, nodes := pool(t, 3, 1, 8)
	ns, doc := migrationSetup(t, sel)
	env.StartController(t)

	m := &v1alpha1.Migration{ObjectMeta: metav1.ObjectMeta{Name: "deleted-mid-roll"},
		Spec: v1alpha1.MigrationSpec{Inline: inlinePlan(t, doc), Approve: []string{"confirm"}, Parameters: map[string]string{"mode": "deleted"}}}
	if err := c.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 2*time.Minute, func() error {
		if got := cordoned(t, nodes); len(got) == 0 {
			return fmt.Errorf("no node cordoned yet")
		}
		return c.Get(ctx, client.ObjectKeyFromObject(m), m)
	})
	if d := configData(t, ns); d["mode"] != "deleted" {
		t.Fatalf("cfg mid-roll: %v", d)
	}
	if err := c.Delete(ctx, m); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 3*time.Minute, func() error {
		err := c.Get(ctx, client.ObjectKeyFromObject(m), &v1alpha1.Migration{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("Migration %s still there: %w", m.Name, err)
	})
	if got := cordoned(t, nodes); len(got) > 0 {
		t.Errorf("cordoned after the delete: %v", got)
	}
	if d := configData(t, ns); d["mode"] != "slow" || d["done"] != "" {
		t.Errorf("cfg after the delete: %v, want mode slow again", d)
	}
	id := m.Status.Operation
	if id == "" {
		t.Fatalf("no operation in the status before the delete: %+v", m.Status)
	}
	if raw, err := journal.NewStore(cs).Get(ctx, id); err != nil || raw.Status != journal.Aborted {
		t.Errorf("operation %s: %+v, %v; want Aborted", id, raw, err)
	}
	if holder, err := lock.Current(ctx, cs); err != nil || holder != nil {
		t.Errorf("lock after the delete: %v, %v; want released", holder, err)
	}
	if evs := env.Events(t, "Migration", m.Name); !clustertest.HasEvent(evs, "Normal Aborted: Migration deleted: operation "+id+" aborted") {
		t.Errorf("no Event of the abort among %v", evs)
	}
}

// Bad Migrations are refused at admission with the field named; what
// admission cannot judge becomes a Failed condition naming the field,
// with nothing changed.
func TestBadMigrations(t *testing.T) {
	env.InstallCRDs(t)
	c := env.APIClient(t)
	ctx := context.Background()
	cs := env.Client(t)
	sel, _ := pool(t, 1, 1, 1)
	_, doc := migrationSetup(t, sel)
	inline := inlinePlan(t, doc)

	admission := []struct {
		name string
		spec v1alpha1.MigrationSpec
		want string
	}{
		{"plan and inline", v1alpha1.MigrationSpec{Plan: "cni-node-by-node", Inline: inline}, "give plan"},
		{"neither", v1alpha1.MigrationSpec{}, "give plan"},
		{"plan name", v1alpha1.MigrationSpec{Plan: "Not_A_Name"}, "spec.plan"},
		{"probe loss", v1alpha1.MigrationSpec{Inline: inline, Probe: &v1alpha1.ProbeBudget{MaxLoss: "lots"}}, "spec.probe.maxLoss"},
	}
	for _, tc := range admission {
		t.Run("admission/"+tc.name, func(t *testing.T) {
			m := &v1alpha1.Migration{ObjectMeta: metav1.ObjectMeta{Name: "bad-" + strings.ReplaceAll(tc.name, " ", "-")}, Spec: tc.spec}
			err := c.Create(ctx, m)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("created: %v, want refused naming %s", err, tc.want)
			}
		})
	}

	env.StartController(t)
	before, err := journal.NewStore(cs).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name, reason, field string
		spec                v1alpha1.MigrationSpec
	}{
		{"unknown-plan", "InvalidSpec", "spec.plan", v1alpha1.MigrationSpec{Plan: "no-such-plan"}},
		{"bad-step", "InvalidSpec", "spec.inline (step set-mode)", v1alpha1.MigrationSpec{Inline: inlinePlan(t, strings.Replace(doc, "patch: {data:", "pach: {data:", 1))}},
		{"unknown-parameter", "InvalidSpec", "spec.parameters", v1alpha1.MigrationSpec{Inline: inline, Parameters: map[string]string{"speed": "x"}}},
		{"missing-parameter", "InvalidSpec", "spec.parameters", v1alpha1.MigrationSpec{Plan: "cni-node-by-node"}},
		{"exec-action", "InvalidSpec", "roll.actions", v1alpha1.MigrationSpec{Inline: inlinePlan(t, strings.Replace(doc, `batch: "1"}]`, `batch: "1"}]`+"\n    actions: [{name: exec, params: {command: \"true\"}}]", 1))}},
		{"missing-release", "SourceNotFound", "spec.releases.v2.configMap.name", v1alpha1.MigrationSpec{Inline: inline,
			Releases: map[string]v1alpha1.ComponentSource{"v2": {ConfigMap: &v1alpha1.BundleRef{Name: "no-such-bundle"}}}}},
	}
	for _, tc := range refused {
		t.Run("controller/"+tc.name, func(t *testing.T) {
			m := &v1alpha1.Migration{ObjectMeta: metav1.ObjectMeta{Name: tc.name}, Spec: tc.spec}
			if err := c.Create(ctx, m); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Delete(context.Background(), m) })
			m = waitMigration(t, c, m.Name, v1alpha1.PhaseFailed, time.Minute)
			cond := conditionTrueOf(m.Status.Conditions, v1alpha1.ConditionFailed)
			if cond == nil || cond.Reason != tc.reason || !strings.Contains(cond.Message, tc.field) || !strings.HasSuffix(cond.Message, "nothing was changed") {
				t.Errorf("Failed condition %+v, want %s naming %s and nothing changed", cond, tc.reason, tc.field)
			}
			if m.Status.Operation != "" {
				t.Errorf("an operation was started: %s", m.Status.Operation)
			}
			// The Event is recorded asynchronously: it may land after the
			// status.
			clustertest.Eventually(t, 10*time.Second, func() error {
				if ws := env.Events(t, "Migration", m.Name); !clustertest.HasEvent(ws, "Warning "+tc.reason+": ") {
					return fmt.Errorf("no Warning Event %s among %v", tc.reason, ws)
				}
				return nil
			})
		})
	}
	after, err := journal.NewStore(cs).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("journals: %d before, %d after the refused Migrations", len(before), len(after))
	}
}

// `hitless migrate run --in-cluster` creates the Migration of the plan
// file and --set, and follows it: at the pause step, without a terminal
// or --yes, it stops naming the step and how to approve it; the same
// command with --yes follows the same Migration, approves the step and
// ends on Succeeded. Bad input exits 2 with nothing created.
func TestMigrateInCluster(t *testing.T) {
	env.InstallCRDs(t)
	c := env.APIClient(t)
	ctx := context.Background()
	sel, nodes := pool(t, 2, 1, 1)
	ns, doc := migrationSetup(t, sel)
	file := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	env.StartController(t)

	args := []string{"migrate", "run", "-f", file, "--set", "mode=cli", "--in-cluster", "--agent-timeout", "0s"}
	migrations := func() int {
		t.Helper()
		list := &v1alpha1.MigrationList{}
		if err := c.List(ctx, list); err != nil {
			t.Fatal(err)
		}
		return len(list.Items)
	}
	before := migrations()
	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			extra []string
			want  string
		}{
			{[]string{"--backup-dir", t.TempDir()}, "--backup-dir"},
			{[]string{"--rollback-on-breach"}, "--rollback-on-breach"},
			{[]string{"--set", "speed=1"}, "--set"},
			{[]string{"--migration", "Not_A_Name"}, "--migration"},
			{[]string{"--release", "v2=/no/such/dir"}, "--release v2"},
			{[]string{"--probe", "--report", "x.html"}, "--report"},
		} {
			code, _, errb := lifecycletest.Hitless(t, env, append(slices.Clone(args), tc.extra...)...)
			if code != 2 || !strings.Contains(errb, tc.want) {
				t.Errorf("%v: exit %d, %s; want 2 naming %s", tc.extra, code, errb, tc.want)
			}
		}
		if n := migrations(); n != before {
			t.Errorf("Migrations after bad input: %d, before %d", n, before)
		}
		code, out, errb := lifecycletest.Hitless(t, env, append(slices.Clone(args), "--dry-run")...)
		if code != 0 || !strings.Contains(out, "kind: Migration") || !strings.Contains(out, "inline:") || !strings.Contains(out, "mode: cli") {
			t.Errorf("--dry-run: exit %d\n%s\n%s", code, out, errb)
		}
	})

	code, _, errb := lifecycletest.Hitless(t, env, args...)
	if code == 0 || !strings.Contains(errb, "waits before step confirm") || !strings.Contains(errb, `"approve":["confirm"]`) {
		t.Fatalf("without --yes: exit %d\n%s", code, errb)
	}
	code, out, errb := lifecycletest.Hitless(t, env, append(slices.Clone(args), "--yes")...)
	if code != 0 || !strings.Contains(errb, "exists; following it") || !strings.Contains(out, "Succeeded; 5/5 steps") {
		t.Fatalf("with --yes: exit %d\n%s\n%s", code, out, errb)
	}
	if d := configData(t, ns); d["mode"] != "cli" || d["done"] != "yes" {
		t.Errorf("cfg after the migration: %v", d)
	}
	if got := cordoned(t, nodes); len(got) > 0 {
		t.Errorf("nodes left cordoned: %v", got)
	}
	m := &v1alpha1.Migration{}
	for _, line := range strings.Split(errb, "\n") {
		if name, ok := strings.CutPrefix(line, "Migration "); ok && strings.Contains(name, " exists; following it") {
			m.Name, _, _ = strings.Cut(name, " ")
		}
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(m), m); err != nil {
		t.Fatalf("the Migration the command named (%q): %v\n%s", m.Name, err, errb)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), m) })
	if !slices.Equal(m.Spec.Approve, []string{"confirm"}) || m.Spec.Parameters["mode"] != "cli" || m.Spec.Inline == nil {
		t.Errorf("Migration spec %+v", m.Spec)
	}
	code, status, errb := lifecycletest.Hitless(t, env, "status")
	if code != 0 || !strings.Contains(status, m.Status.Operation) || !strings.Contains(status, "Migration "+m.Name+" (hitless controller)") {
		t.Errorf("hitless status does not list operation %s of Migration %s: exit %d\n%s\n%s", m.Status.Operation, m.Name, code, status, errb)
	}
}

package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	knode "github.com/hitless-dev/hitless/internal/kube/node"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

var env = clustertest.New(clustertest.Options{Workers: 2})

func TestMain(m *testing.M) { os.Exit(env.Run(m)) }

// small is a plan over ConfigMaps and Nodes in namespace NS: a backup, a
// gate, two patches, a typed wait and a delete.
const small = `apiVersion: hitless.dev/v1alpha1
kind: MigrationPlan
metadata: {name: small}
parameters:
- {name: mode, default: fast}
- {name: ns, required: true}
gates:
- name: gate-open
  for: {apiVersion: v1, kind: ConfigMap, namespace: "NS", selector: role=gate}
  condition: "object.data['open'] == 'true'"
  message: "'gate ' + object.metadata.name + ' is closed'"
  within: 1s
steps:
- name: save
  backup:
    objects: [{apiVersion: v1, kind: ConfigMap, namespace: "NS", name: cfg}]
- name: set-mode
  patch:
    object: {apiVersion: v1, kind: ConfigMap, namespace: "NS", name: cfg}
    patch: {data: {mode: "${mode}", added: "yes"}, metadata: {labels: {migrated: "true"}}}
- name: json-append
  patch:
    object: {apiVersion: v1, kind: ConfigMap, namespace: "NS", name: cfg}
    type: json
    patch: [{op: add, path: /data/list, value: a}]
- name: nodes-ready
  wait:
    for: {apiVersion: v1, kind: Node}
    condition: "object.status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')"
    timeout: 1m
- name: drop-other
  delete:
    objects: [{apiVersion: v1, kind: ConfigMap, namespace: "NS", name: other}]
`

func setup(t *testing.T) (operation.Cluster, kubernetes.Interface, string, *plan.Plan) {
	t.Helper()
	cs := env.Client(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	for _, cm := range []*corev1.ConfigMap{
		{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: ns}, Data: map[string]string{"mode": "slow", "keep": "1"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: ns, Labels: map[string]string{"x": "y"}}, Data: map[string]string{"k": "v"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "gate", Namespace: ns, Labels: map[string]string{"role": "gate"}}, Data: map[string]string{"open": "true"}},
	} {
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := plan.Parse("small.yaml", []byte(strings.ReplaceAll(small, `"NS"`, ns)))
	if err != nil {
		t.Fatal(err)
	}
	return operation.Cluster{Client: cs, Config: env.Config(t)}, cs, ns, p
}

func TestRunAndRollback(t *testing.T) {
	c, cs, ns, p := setup(t)
	ctx := context.Background()
	before, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "cfg", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := migrate.Run(ctx, c, migrate.Options{Plan: p, Set: map[string]string{"ns": ns}, Poll: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := cs.CoreV1().ConfigMaps(ns).Get(ctx, "cfg", metav1.GetOptions{})
	if after.Data["mode"] != "fast" || after.Data["added"] != "yes" || after.Data["list"] != "a" || after.Labels["migrated"] != "true" {
		t.Fatalf("cfg after the migration: data %v labels %v", after.Data, after.Labels)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "other", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("other was not deleted: %v", err)
	}
	rb, err := migrate.Rollback(ctx, c, res.Operation, migrate.RollbackOptions{Poll: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	restored, _ := cs.CoreV1().ConfigMaps(ns).Get(ctx, "cfg", metav1.GetOptions{})
	if fmt.Sprint(restored.Data) != fmt.Sprint(before.Data) || restored.Labels["migrated"] != "" {
		t.Errorf("cfg after the rollback: data %v labels %v, want data %v and no label", restored.Data, restored.Labels, before.Data)
	}
	other, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "other", metav1.GetOptions{})
	if err != nil || other.Data["k"] != "v" || other.Labels["x"] != "y" {
		t.Errorf("other after the rollback: %v %v", other, err)
	}
	var names []string
	for _, s := range rb.Steps {
		if strings.HasPrefix(s.Name, "rollback-") {
			names = append(names, s.Name)
		}
	}
	want := "rollback-drop-other rollback-nodes-ready rollback-json-append rollback-set-mode rollback-save"
	if strings.Join(names, " ") != want {
		t.Errorf("rollback steps %v, want newest first: %s", names, want)
	}
	op, err := journal.NewStore(cs).Get(ctx, res.Operation)
	if err != nil || op.Status != journal.Aborted {
		t.Errorf("journal after the rollback: %v %v", op.Status, err)
	}
}

func TestGatePausesAndRerunContinues(t *testing.T) {
	c, cs, ns, p := setup(t)
	ctx := context.Background()
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "gate", "application/merge-patch+json", []byte(`{"data":{"open":"false"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	opts := migrate.Options{Plan: p, Set: map[string]string{"ns": ns}, Poll: 100 * time.Millisecond}
	res, err := migrate.Run(ctx, c, opts)
	var paused *migrate.PausedError
	if !errors.As(err, &paused) || paused.Step != "save" || !strings.Contains(paused.Reason, "gate gate is closed") {
		t.Fatalf("err = %v, want a pause before save naming the gate", err)
	}
	op, _ := journal.NewStore(cs).Get(ctx, res.Operation)
	if op.Status != journal.Paused {
		t.Errorf("status %s, want Paused", op.Status)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "gate", "application/merge-patch+json", []byte(`{"data":{"open":"true"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	res2, err := migrate.Run(ctx, c, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Operation != res.Operation || !res2.Resumed {
		t.Errorf("re-run was operation %s (resumed %v), want %s resumed", res2.Operation, res2.Resumed, res.Operation)
	}
}

func TestBadPlansChangeNothing(t *testing.T) {
	c, cs, ns, _ := setup(t)
	ctx := context.Background()
	head := "apiVersion: hitless.dev/v1alpha1\nkind: MigrationPlan\nmetadata: {name: bad}\nsteps:\n"
	tests := []struct {
		name, steps, field string
	}{
		{name: "field the schema lacks", steps: "- name: w\n  wait: {for: {apiVersion: v1, kind: Node}, condition: \"object.status.readyness == 'x'\"}\n", field: "wait.condition"},
		{name: "object that does not exist", steps: "- name: p\n  patch: {object: {apiVersion: v1, kind: ConfigMap, namespace: " + ns + ", name: nope}, patch: {data: {a: b}}}\n", field: "patch.object.name"},
		{name: "kind not served", steps: "- name: b\n  backup: {objects: [{apiVersion: example.com/v1, kind: Widget, name: w}]}\n", field: "backup.objects[0].kind"},
		{name: "unknown action", steps: "- name: r\n  roll: {groups: [{selector: x=y}], actions: [{name: explode}]}\n", field: "roll.actions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := plan.Parse("bad.yaml", []byte(head+tc.steps))
			if err != nil {
				t.Fatal(err)
			}
			before, _ := journal.NewStore(cs).List(ctx)
			_, err = migrate.Run(ctx, c, migrate.Options{Plan: p})
			var pe *plan.Error
			if !errors.As(err, &pe) || !strings.HasPrefix(pe.Field, tc.field) {
				t.Fatalf("err = %v, want a plan error on %s", err, tc.field)
			}
			after, _ := journal.NewStore(cs).List(ctx)
			if len(after) != len(before) {
				t.Errorf("%d journals before, %d after: a bad plan must change nothing", len(before), len(after))
			}
		})
	}
}

func TestRebootRoll(t *testing.T) {
	cs := env.Client(t)
	ctx := context.Background()
	group := fmt.Sprintf("reboot-%d", time.Now().UnixNano()%100000)
	nodes := env.AddNodes(t, 2, map[string]string{"reboot-group": group})
	// An application on the rebooted nodes, with a PDB, and the guard:
	// drained before each reboot, one node at a time, the PDB held.
	apps := env.Namespace(t)
	env.Deployment(t, apps, "web", 2, clustertest.Workload{NodeSelector: map[string]string{"reboot-group": group}})
	env.PDB(t, apps, "web", ptr.To(intstr.FromInt32(1)), nil)
	env.WaitDeploymentAvailable(t, apps, "web", time.Minute)
	guard := clustertest.StartGuard(t, cs, apps, nodes, 1)
	boots := map[string]string{}
	for _, n := range nodes {
		node, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		boots[n] = node.Status.NodeInfo.BootID
	}
	doc := `apiVersion: hitless.dev/v1alpha1
kind: MigrationPlan
metadata: {name: reboots}
steps:
- name: reboot-nodes
  roll:
    groups: [{name: group, selector: reboot-group=` + group + `, batch: "1"}]
    actions: [{name: reboot}]
    actionTimeout: 1m
`
	p, err := plan.Parse("reboots.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	c := operation.Cluster{Client: cs, Config: env.Config(t)}
	stop := make(chan struct{})
	maxDown := make(chan int)
	go func() { maxDown <- watchNotReady(cs, nodes, stop) }()
	var downs []string
	res, err := migrate.Run(ctx, c, migrate.Options{Plan: p, Poll: 100 * time.Millisecond, RollProgress: func(e roll.Event) {
		downs = append(downs, e.Node+" "+e.Phase)
	}})
	close(stop)
	if most := <-maxDown; most != 1 {
		t.Errorf("at most %d node(s) NotReady at once, want exactly 1 (batch 1, every node rebooted)", most)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		node, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if node.Status.NodeInfo.BootID == boots[n] || node.Status.NodeInfo.BootID == "" {
			t.Errorf("node %s boot ID %q, was %q: not rebooted", n, node.Status.NodeInfo.BootID, boots[n])
		}
		if node.Spec.Unschedulable {
			t.Errorf("node %s left cordoned", n)
		}
	}
	if len(res.Steps) == 0 || res.Steps[0].Error != "" {
		t.Errorf("steps %+v", res.Steps)
	}
	if v := guard.Take(true); len(v) > 0 {
		t.Errorf("guard: %v", v)
	}
	t.Logf("events: %v", downs)
}

// watchNotReady polls the nodes until stop and returns the most that were
// NotReady at once.
func watchNotReady(cs kubernetes.Interface, nodes []string, stop chan struct{}) int {
	most := 0
	for {
		select {
		case <-stop:
			return most
		case <-time.After(100 * time.Millisecond):
		}
		down := 0
		for _, n := range nodes {
			node, err := cs.CoreV1().Nodes().Get(context.Background(), n, metav1.GetOptions{})
			if err == nil && !knode.Ready(node) {
				down++
			}
		}
		most = max(most, down)
	}
}

// The plan's network parameters go to its profile's preflight: a value
// the cluster cannot take stops the plan before its first step, naming
// the parameter and what it collides with.
func TestPlanPrechecksStopBeforeAnyChange(t *testing.T) {
	c, cs, ns, _ := setup(t)
	ctx := context.Background()
	// The generic preflight judges every pod of the cluster: an earlier
	// test's namespace still terminating (its PDB refusing evictions, new
	// pods forbidden) would be a finding about that test, not this plan.
	clustertest.Eventually(t, 2*time.Minute, func() error {
		list, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, n := range list.Items {
			if n.Status.Phase == corev1.NamespaceTerminating {
				return fmt.Errorf("namespace %s is still terminating", n.Name)
			}
		}
		return nil
	})
	doc := `apiVersion: hitless.dev/v1alpha1
kind: MigrationPlan
metadata: {name: prechecked}
profile: generic
network: {encapsulation: geneve, machineMTU: 1500, mtu: "${mtu}", internalSubnet: "${subnet}"}
parameters:
- {name: mtu, type: int, default: 1400}
- {name: subnet}
steps:
- name: set-mode
  patch:
    object: {apiVersion: v1, kind: ConfigMap, namespace: NS, name: cfg}
    patch: {data: {mode: migrated}}
`
	p, err := plan.Parse("prechecked.yaml", []byte(strings.ReplaceAll(doc, "NS", ns)))
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) == 0 {
		t.Fatalf("nodes: %v", err)
	}
	first := nodes.Items[0]
	var ip string
	for _, a := range first.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			ip = a.Address
		}
	}
	onNode := strings.Join(strings.Split(ip, ".")[:3], ".") + ".0/24"
	hook := "hitless-test-" + ns
	tests := []struct {
		name    string
		set     map[string]string
		webhook bool
		want    string
	}{
		{name: "overlay MTU over the nodes' less Geneve", set: map[string]string{"mtu": "1450"},
			want: "network.mtu: overlay mtu 1450 is larger than 1400: the smallest node MTU 1500 (machineMTU) minus 100 bytes of geneve overhead"},
		{name: "internal subnet over a node", set: map[string]string{"subnet": onNode},
			want: fmt.Sprintf("network.internal-subnet: internal subnet %s contains node %s's address %s", onNode, first.Name, ip)},
		{name: "a fail-closed webhook nobody serves", webhook: true,
			want: fmt.Sprintf("platform.webhooks: ValidatingWebhookConfiguration %s (webhook nothing.hitless.test) fails closed and its service %s/gone does not exist", hook, ns)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.webhook {
				createWebhook(t, cs, hook, ns)
			}
			_, err := migrate.Run(ctx, c, migrate.Options{Plan: p, Set: tc.set, Poll: 100 * time.Millisecond})
			if err == nil || !strings.Contains(err.Error(), "preflight generic failed") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want the preflight to fail with %q", err, tc.want)
			}
			cfg, _ := cs.CoreV1().ConfigMaps(ns).Get(ctx, "cfg", metav1.GetOptions{})
			if cfg.Data["mode"] != "slow" {
				t.Errorf("cfg mode %q after a failed preflight: the first step ran", cfg.Data["mode"])
			}
		})
	}
	t.Run("values the cluster takes", func(t *testing.T) {
		res, err := migrate.Run(ctx, c, migrate.Options{Plan: p, Set: map[string]string{"subnet": "100.64.0.0/16"}, Poll: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if pre := stepLines(res, "preflight"); !strings.Contains(pre, "0 fail") {
			t.Errorf("preflight: %s", pre)
		}
		cfg, _ := cs.CoreV1().ConfigMaps(ns).Get(ctx, "cfg", metav1.GetOptions{})
		if cfg.Data["mode"] != "migrated" {
			t.Errorf("cfg mode %q, want migrated", cfg.Data["mode"])
		}
	})
}

func stepLines(res *migrate.Result, name string) string {
	for _, s := range res.Steps {
		if s.Name == name {
			return strings.Join(s.Detail, "; ")
		}
	}
	return ""
}

// createWebhook registers a fail-closed webhook whose service does not
// exist, on a resource nothing writes, for the length of the test.
func createWebhook(t *testing.T, cs kubernetes.Interface, name, ns string) {
	t.Helper()
	fail, none, timeout := admissionv1.Fail, admissionv1.SideEffectClassNone, int32(5)
	cfg := &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name: "nothing.hitless.test", FailurePolicy: &fail, SideEffects: &none, TimeoutSeconds: &timeout,
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig:            admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: ns, Name: "gone"}},
			Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{APIGroups: []string{"hitless.test"}, APIVersions: []string{"v1"}, Resources: []string{"nothings"}}}},
		}}}
	if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(context.Background(), cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

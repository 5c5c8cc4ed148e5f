package lifecycle_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

var env = clustertest.New(clustertest.Options{Workers: 3})

// envRunCLI makes the test binary act as the hitless CLI, so tests can run
// and SIGKILL real processes.
const envRunCLI = "HITLESS_TEST_RUN_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(envRunCLI) == "1" {
		os.Exit(app.Main())
	}
	os.Exit(env.Run(m))
}

func hitless(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return lifecycletest.Hitless(t, env, args...)
}

func mustHitless(t *testing.T, args ...string) *lifecycle.Result {
	t.Helper()
	return lifecycletest.MustHitless(t, env, args...)
}

const (
	pluginV1 = "../../../examples/sample-plugin/v1"
	pluginV2 = "../../../examples/sample-plugin/v2"
)

// TestSamplePluginLifecycle is the whole life of the sample plugin: install
// v1, customize it live the way users do (kubectl patch, set, label), see a
// conflicting change stop the upgrade, upgrade to v2 keeping every
// customization and getting every vendor change with the data plane
// replaced node by node on drained nodes, roll back to exactly the state
// before, and uninstall exactly the inventory.
func TestSamplePluginLifecycle(t *testing.T) {
	ctx := context.Background()
	cs := env.Client(t)
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pool []string
	for _, n := range nodes.Items {
		pool = append(pool, n.Name)
	}
	// A protected application the drains must respect.
	apps := env.Namespace(t)
	env.Deployment(t, apps, "web", 6, clustertest.Workload{GracePeriod: 1})
	env.PDB(t, apps, "web", ptr.To(intstr.FromInt32(1)), nil)
	env.WaitDeploymentAvailable(t, apps, "web", time.Minute)
	bystander, err := cs.CoreV1().ConfigMaps("kube-system").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "not-the-plugins"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().ConfigMaps("kube-system").Delete(context.Background(), bystander.Name, metav1.DeleteOptions{})
	})

	res := mustHitless(t, "install", "-f", pluginV1, "--name", "contrail")
	if res.Revision != 1 || len(res.Applied) != 21 {
		t.Fatalf("install: revision %d, %d objects applied; want 1 and 21", res.Revision, len(res.Applied))
	}

	// Live customizations, each through its own field manager as kubectl does.
	patch(t, "v1", "configmaps", "contrail", "contrail-settings", "kubectl-patch", types.MergePatchType, `{"data":{"VROUTER_MTU":"1400"}}`)
	if _, err := cs.CoreV1().Secrets("contrail").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "site-registry"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{".dockerconfigjson": []byte(`{"auths":{"reg.site.example":{"auth":"c2l0ZTpzM2NyZXQ="}}}`)}}, metav1.CreateOptions{FieldManager: "kubectl-create"}); err != nil {
		t.Fatal(err)
	}
	patch(t, "apps/v1", "daemonsets", "contrail", "contrail-vrouter-nodes", "kubectl-patch", types.StrategicMergePatchType, `{"spec":{"template":{"spec":{"imagePullSecrets":[{"name":"site-registry"}]}}}}`)
	patch(t, "apps/v1", "deployments", "contrail", "contrail-controller", "kubectl-set", types.StrategicMergePatchType, `{"spec":{"template":{"spec":{"containers":[{"name":"controller","resources":{"limits":{"memory":"1Gi"}}}]}}}}`)
	patch(t, "apps/v1", "daemonsets", "contrail", "contrail-vrouter-nodes", "kubectl-label", types.MergePatchType, `{"metadata":{"labels":{"site.example/team":"network"}}}`)
	waitSettled(t, "contrail", "contrail-vrouter-nodes")

	t.Run("a conflicting change stops the upgrade", func(t *testing.T) {
		mirror := "registry.site.example/mirror/contrail-controller:1.0.0"
		patch(t, "apps/v1", "deployments", "contrail", "contrail-controller", "kubectl-edit", types.StrategicMergePatchType, `{"spec":{"template":{"spec":{"containers":[{"name":"controller","image":"`+mirror+`"}]}}}}`)
		code, out, errOut := hitless(t, "upgrade", "-f", pluginV2, "--name", "contrail")
		want := `Deployment/contrail/contrail-controller spec.template.spec.containers[name=controller].image: user "` + mirror + `", vendor "registry.example.com/sample-cni/contrail-controller:1.1.0"`
		if code != exitcode.Failed || !strings.Contains(errOut, want) || !strings.Contains(errOut, "nothing was changed") {
			t.Fatalf("exit %d; want 1 and the conflict %s\n%s\n%s", code, want, out, errOut)
		}
		if revs := revisions(t, "contrail"); len(revs) != 1 {
			t.Fatalf("a refused upgrade recorded revision(s): %d", len(revs))
		}
		if img := deploymentImage(t, "contrail", "contrail-controller"); img != mirror {
			t.Fatalf("a refused upgrade changed the image to %s", img)
		}
		patch(t, "apps/v1", "deployments", "contrail", "contrail-controller", "kubectl-edit", types.StrategicMergePatchType, `{"spec":{"template":{"spec":{"containers":[{"name":"controller","image":"registry.example.com/sample-cni/contrail-controller:1.0.0"}]}}}}`)
		env.WaitDeploymentAvailable(t, "contrail", "contrail-controller", time.Minute)
	})

	t.Run("diff shows exactly what the upgrade changes, no secret value", func(t *testing.T) {
		code, out, errOut := hitless(t, "diff", "-f", pluginV2, "--name", "contrail")
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		for _, want := range []string{"CONFIGURED ConfigMap/contrail/contrail-settings", `+  FLOW_EXPORT_RATE: "0"`, "-        image: registry.example.com/sample-cni/contrail-controller:1.0.0",
			"+        image: registry.example.com/sample-cni/contrail-controller:1.1.0", "CUSTOMIZATIONS CARRIED (4)"} {
			if !strings.Contains(out, want) {
				t.Errorf("diff lacks %q:\n%s", want, out)
			}
		}
		for _, never := range []string{"VROUTER_MTU: \"1500\"", "c2FtcGxlOmNoYW5nZS1tZQ", "c2l0ZTpzM2NyZXQ", "CONFIGURED Secret/", "CREATED"} {
			if strings.Contains(out, never) {
				t.Errorf("diff shows %q:\n%s", never, out)
			}
		}
		if revs := revisions(t, "contrail"); len(revs) != 1 {
			t.Errorf("diff recorded a revision")
		}
	})

	before := snapshot(t, "contrail")
	guard := clustertest.StartDataPlaneGuard(t, cs, apps, pool, 1, "contrail", "contrail-vrouter-nodes")
	backups := t.TempDir()
	up := mustHitless(t, "upgrade", "-f", pluginV2, "--name", "contrail", "--backup-dir", backups, "--node-selector", "node-role.kubernetes.io/control-plane")

	t.Run("upgrade keeps every customization", func(t *testing.T) {
		var paths []string
		for _, c := range up.Carried {
			paths = append(paths, c.Object+" "+c.Path)
		}
		for _, want := range []string{
			"ConfigMap/contrail/contrail-settings data.VROUTER_MTU",
			"Deployment/contrail/contrail-controller spec.template.spec.containers[name=controller].resources.limits.memory",
			`DaemonSet/contrail/contrail-vrouter-nodes metadata.labels["site.example/team"]`,
			"DaemonSet/contrail/contrail-vrouter-nodes spec.template.spec.imagePullSecrets[name=site-registry].name",
		} {
			if !slices.Contains(paths, want) {
				t.Errorf("not carried: %s (carried: %v)", want, paths)
			}
		}
		cm := get(t, "v1", "configmaps", "contrail", "contrail-settings")
		if v, _, _ := unstructured.NestedString(cm.Object, "data", "VROUTER_MTU"); v != "1400" {
			t.Errorf("VROUTER_MTU = %q after the upgrade, want the user's 1400", v)
		}
		ds := get(t, "apps/v1", "daemonsets", "contrail", "contrail-vrouter-nodes")
		if ds.GetLabels()["site.example/team"] != "network" {
			t.Errorf("the user's label is gone: %v", ds.GetLabels())
		}
		secrets, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "imagePullSecrets")
		if !strings.Contains(jsonOf(secrets), "site-registry") || !strings.Contains(jsonOf(secrets), "contrail-registry-credentials") {
			t.Errorf("image pull secrets %s: want the vendor's and the user's", jsonOf(secrets))
		}
		d := get(t, "apps/v1", "deployments", "contrail", "contrail-controller")
		if !strings.Contains(jsonOf(d.Object["spec"]), `"limits":{"memory":"1Gi"}`) {
			t.Errorf("the user's memory limit is gone")
		}
	})
	t.Run("upgrade gets every vendor change", func(t *testing.T) {
		cm := get(t, "v1", "configmaps", "contrail", "contrail-settings")
		if v, ok, _ := unstructured.NestedString(cm.Object, "data", "FLOW_EXPORT_RATE"); !ok || v != "0" {
			t.Errorf("FLOW_EXPORT_RATE missing after the upgrade")
		}
		for _, d := range []string{"contrail-controller"} {
			if img := deploymentImage(t, "contrail", d); !strings.HasSuffix(img, ":1.1.0") {
				t.Errorf("%s runs %s, want 1.1.0", d, img)
			}
		}
		gvc := get(t, "dataplane.sample.hitless.dev/v1alpha1", "globalvrouterconfigs", "", "default-global-vrouter-config")
		if _, ok, _ := unstructured.NestedBool(gvc.Object, "spec", "fastConvergence", "enable"); !ok {
			t.Errorf("GlobalVrouterConfig lacks the new fastConvergence")
		}
		pods, err := cs.CoreV1().Pods("contrail").List(ctx, metav1.ListOptions{LabelSelector: "app=contrail-vrouter"})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if img := p.Spec.Containers[0].Image; !strings.HasSuffix(img, ":1.1.0") {
				t.Errorf("vRouter pod %s on %s runs %s", p.Name, p.Spec.NodeName, img)
			}
		}
	})
	t.Run("data plane replaced node by node on drained nodes", func(t *testing.T) {
		if v := guard.Take(true); len(v) > 0 {
			t.Fatalf("guard: %v", v)
		}
		if got := guard.Replaced(); got != len(pool) {
			t.Errorf("%d vRouter pods replaced on drained nodes, want one per node (%d)", got, len(pool))
		}
		if got := guard.MaxUnavailable(); got != 1 {
			t.Errorf("at most %d nodes cordoned at once, want exactly the batch (1)", got)
		}
		if len(up.Rolls) != 2 || len(up.Rolls[0].Nodes) != 1 || !strings.Contains(up.Rolls[0].Nodes[0], "control-plane") || len(up.Rolls[1].Nodes) != len(pool)-1 {
			t.Errorf("rolls %+v, want the control-plane group, then the other nodes", up.Rolls)
		}
	})
	t.Run("backup before the change, owner-only file", func(t *testing.T) {
		st, err := os.Stat(up.Backup)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("backup file mode %v, want 0600", st.Mode().Perm())
		}
		b, _ := os.ReadFile(up.Backup)
		if !strings.Contains(string(b), "VROUTER_MTU: \"1400\"") || !strings.Contains(string(b), "contrail-controller:1.0.0") {
			t.Errorf("the backup does not hold the objects as they were before the upgrade")
		}
		objs, err := release.NewStore(cs).Backups(ctx, "contrail", 2)
		if err != nil || len(objs) != 21 {
			t.Errorf("in-cluster backup: %d objects, %v; want 21", len(objs), err)
		}
	})

	// The rollback replaces the data plane node by node too, under a
	// fresh guard.
	guard = clustertest.StartDataPlaneGuard(t, cs, apps, pool, 1, "contrail", "contrail-vrouter-nodes")
	back := mustHitless(t, "rollback", "--name", "contrail")
	t.Run("rollback replaces the data plane node by node on drained nodes", func(t *testing.T) {
		if v := guard.Take(true); len(v) > 0 {
			t.Fatalf("guard: %v", v)
		}
		if got := guard.Replaced(); got != len(pool) {
			t.Errorf("%d vRouter pods replaced on drained nodes, want one per node (%d)", got, len(pool))
		}
	})
	t.Run("rollback restores the objects exactly", func(t *testing.T) {
		if back.Revision != 3 || back.Previous != 2 {
			t.Fatalf("rollback: revision %d from %d, want 3 from 2", back.Revision, back.Previous)
		}
		sameObjects(t, "after the rollback", before, snapshot(t, "contrail"), "contrail")
		code, out, _ := hitless(t, "history", "--name", "contrail")
		if code != 0 || !strings.Contains(out, "rollback to 1") || !strings.Contains(out, "superseded") {
			t.Errorf("history:\n%s", out)
		}
	})

	// Uninstalling deletes the data plane everywhere, as it must; the
	// application's PDB and the nodes stay guarded.
	clustertest.StartGuard(t, cs, apps, pool, 1)
	t.Run("uninstall refuses namespaces holding the user's objects", func(t *testing.T) {
		code, out, errOut := hitless(t, "uninstall", "--name", "contrail")
		if code != exitcode.Failed || !strings.Contains(out+errOut, "Secret/contrail/site-registry") {
			t.Fatalf("exit %d; want 1 naming Secret/contrail/site-registry\n%s\n%s", code, out, errOut)
		}
		get(t, "v1", "configmaps", "contrail", "contrail-settings") // still there
	})
	gone := mustHitless(t, "uninstall", "--name", "contrail", "--force-namespaces")
	t.Run("uninstall leaves nothing of the component and nothing else", func(t *testing.T) {
		if len(gone.Remaining) > 0 {
			t.Fatalf("remaining: %v", gone.Remaining)
		}
		if left := labelled(t, "hitless.dev/name=contrail"); len(left) > 0 {
			t.Errorf("objects of the component left: %v", left)
		}
		if _, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, bystander.Name, metav1.GetOptions{}); err != nil {
			t.Errorf("uninstall touched an unrelated ConfigMap: %v", err)
		}
		if d, err := cs.AppsV1().Deployments(apps).Get(ctx, "web", metav1.GetOptions{}); err != nil || d.Status.AvailableReplicas != 6 {
			t.Errorf("uninstall touched the application: %v", err)
		}
		code, out, _ := hitless(t, "history", "--name", "contrail")
		if code != 0 || strings.Count(out, "uninstalled") != 2 {
			t.Errorf("history after uninstall:\n%s", out)
		}
	})
}

func patch(t *testing.T, apiVersion, resource, ns, name, manager string, pt types.PatchType, body string) {
	t.Helper()
	lifecycletest.Patch(t, env, apiVersion, resource, ns, name, manager, pt, body)
}

func get(t *testing.T, apiVersion, resource, ns, name string) *unstructured.Unstructured {
	t.Helper()
	return lifecycletest.Get(t, env, apiVersion, resource, ns, name)
}

func deploymentImage(t *testing.T, ns, name string) string {
	t.Helper()
	d, err := env.Client(t).AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Spec.Containers[0].Image
}

func waitSettled(t *testing.T, ns, name string) {
	t.Helper()
	lifecycletest.WaitSettled(t, env, ns, name)
}

func revisions(t *testing.T, name string) []*release.Revision {
	t.Helper()
	return lifecycletest.Revisions(t, env, name)
}

func labelled(t *testing.T, selector string) []string {
	t.Helper()
	return lifecycletest.Labelled(t, env, selector)
}

func jsonOf(v any) string { return lifecycletest.JSON(v) }

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// snapshot is the component's current objects, whole (lifecycletest.Snapshot).
func snapshot(t *testing.T, component string) map[string]string {
	t.Helper()
	return lifecycletest.Snapshot(t, env, component)
}

// sameObjects reports what differs between two snapshots.
func sameObjects(t *testing.T, when string, before, after map[string]string, component string) {
	t.Helper()
	lifecycletest.SameObjects(t, env, when, before, after, component)
}

package lifecycle_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

// Bad manifests exit 2 naming the place, and change nothing: no object, no
// revision, no journal entry, no lock.
func TestBadManifests(t *testing.T) {
	ns := env.Namespace(t)
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good, namespace: " + ns + "}\ndata: {a: b}\n"
	cases := []struct{ name, content, want string }{
		{"broken YAML", cm + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: [broken\n", "document 2"},
		{"missing kind", cm + "---\napiVersion: v1\nmetadata: {name: nokind, namespace: " + ns + "}\n", "document 2"},
		{"duplicate object", cm + "---\n" + cm, "document 2 (ConfigMap/" + ns + "/good): field metadata.name: duplicate object"},
		{"unknown namespace", cm + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: " + ns + "-missing}\n", "document 2 (ConfigMap/" + ns + "-missing/x): field metadata.namespace"},
	}
	cs := env.Client(t)
	ctx := context.Background()
	ops := func() int {
		list, err := journal.NewStore(cs).List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}
	before := ops()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := hitless(t, "install", "-f", path, "--name", "bad")
			if code != exitcode.Usage || !strings.Contains(errOut, path) || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d; want 2 naming %s and %q\n%s\n%s", code, path, tc.want, out, errOut)
			}
			if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "good", metav1.GetOptions{}); err == nil {
				t.Errorf("the valid object of a refused manifest was created")
			}
			if revs := revisions(t, "bad"); len(revs) > 0 {
				t.Errorf("%d revisions recorded", len(revs))
			}
			if n := ops(); n != before {
				t.Errorf("%d journal entries, %d before", n, before)
			}
			if h, err := lock.Current(ctx, cs); err != nil || (h != nil && h.Operation != "") {
				t.Errorf("lock held after a refused install: %+v %v", h, err)
			}
		})
	}
	t.Run("bad flags", func(t *testing.T) {
		good := filepath.Join(t.TempDir(), "good.yaml")
		if err := os.WriteFile(good, []byte(cm), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"--name", "Bad_Name"}, {"--name", "bad", "--node-selector", "a in (b"}, {"--name", "bad", "--batch", "0"},
		} {
			code, out, errOut := hitless(t, append([]string{"install", "-f", good}, args...)...)
			if code != exitcode.Usage || !strings.Contains(errOut, args[len(args)-2]) {
				t.Errorf("install %v: exit %d, want 2 naming %s\n%s\n%s", args, code, args[len(args)-2], out, errOut)
			}
		}
		if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "good", metav1.GetOptions{}); err == nil {
			t.Errorf("a refused install created its object")
		}
	})
}

// TestCrashResumeUpgrade kills `hitless upgrade` with SIGKILL in the middle
// of its data-plane roll, runs the same command again, and checks that the
// upgrade finished with the inventory exact: every object of the new
// revision there and labelled, nothing else labelled, every agent pod at
// the new version, no node left cordoned, one operation run twice.
func TestCrashResumeUpgrade(t *testing.T) {
	cs := env.Client(t)
	ctx := context.Background()
	name := "crashy"
	v1, v2 := writeComponent(t, name, "1.0.0", 2, 2), writeComponent(t, name, "1.1.0", 2, 2)
	apps := env.Namespace(t)
	env.Deployment(t, apps, "web", 4, clustertest.Workload{GracePeriod: 1})
	env.PDB(t, apps, "web", ptr.To(intstr.FromInt32(1)), nil)
	env.WaitDeploymentAvailable(t, apps, "web", time.Minute)
	mustHitless(t, "install", "-f", v1, "--name", name)
	t.Cleanup(func() { hitless(t, "uninstall", "--name", name, "--force-namespaces") })
	pool := env.NodeNames(t)
	guard := clustertest.StartDataPlaneGuard(t, cs, apps, pool, 1, name, name+"-agent")

	killMidRoll(t, "upgrade", "-f", v2, "--name", name)

	res := mustHitless(t, "upgrade", "-f", v2, "--name", name)
	if !res.Resumed || res.Revision != 2 || !slices.Contains(res.Deleted, "ConfigMap/"+name+"/settings-1") {
		t.Fatalf("second run: resumed %v revision %d, deleted %v; want the killed upgrade resumed and settings-1 pruned", res.Resumed, res.Revision, res.Deleted)
	}
	op, err := journal.NewStore(cs).Get(ctx, res.Operation)
	if err != nil || op.Status != journal.Succeeded || op.Runs != 2 {
		t.Fatalf("operation %s: %+v %v; want succeeded after 2 runs", res.Operation, op, err)
	}
	revs := revisions(t, name)
	if cur := release.Current(revs); cur == nil || cur.Number != 2 || len(revs) != 2 {
		t.Fatalf("revisions %d, current %v", len(revs), cur)
	}
	var want []string
	for _, o := range release.Objects(release.Current(revs).Applied) {
		want = append(want, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
		get(t, o.GetAPIVersion(), strings.ToLower(o.GetKind())+"s", o.GetNamespace(), o.GetName())
	}
	got := labelled(t, "hitless.dev/name="+name)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("labelled objects %v\nwant exactly the inventory %v", got, want)
	}
	pods, err := cs.CoreV1().Pods(name).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name + "-agent"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && !strings.HasSuffix(p.Spec.Containers[0].Image, ":1.1.0") {
			t.Errorf("agent pod %s on %s runs %s", p.Name, p.Spec.NodeName, p.Spec.Containers[0].Image)
		}
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable {
			t.Errorf("node %s left cordoned", n.Name)
		}
	}
	ds, err := cs.AppsV1().DaemonSets(name).Get(ctx, name+"-agent", metav1.GetOptions{})
	if err != nil || ds.Spec.UpdateStrategy.Type != "RollingUpdate" {
		t.Errorf("DaemonSet strategy not restored: %v %v", ds.Spec.UpdateStrategy, err)
	}
	// Across the kill and the re-run: the application's PDB held, one node
	// at a time, and every agent pod replaced on a drained node (a pod the
	// killed run deleted is not deleted again).
	if v := guard.Take(true); len(v) > 0 {
		t.Errorf("guard: %v", v)
	}
	if got := guard.Replaced(); got != len(pool) {
		t.Errorf("%d agent pods replaced on drained nodes, want one per node (%d)", got, len(pool))
	}
}

// A node without a free pod slot refuses an install before any change:
// its pods could not be drained anywhere and the new pods may not fit.
func TestFullNodeRefused(t *testing.T) {
	ns := env.Namespace(t)
	nodes := env.AddNodesWithCapacity(t, 1, map[string]string{"full": "yes"}, corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")})
	env.Deployment(t, ns, "filler", 1, clustertest.Workload{NodeSelector: map[string]string{"full": "yes"}})
	env.WaitDeploymentAvailable(t, ns, "filler", time.Minute)
	v1 := writeComponent(t, "fits", "1.0.0", 0, 1)
	code, out, errOut := hitless(t, "install", "-f", v1, "--name", "fits")
	if code != exitcode.Failed || !strings.Contains(errOut, "no free pod slot on node(s) "+nodes[0]+" (1/1 pods)") {
		t.Fatalf("exit %d; want 1 naming %s\n%s\n%s", code, nodes[0], out, errOut)
	}
	if revs := revisions(t, "fits"); len(revs) > 0 {
		t.Errorf("a refused install recorded %d revisions", len(revs))
	}
	if _, err := env.Client(t).CoreV1().Namespaces().Get(context.Background(), "fits", metav1.GetOptions{}); err == nil {
		t.Errorf("a refused install created its namespace")
	}
}

// A custom resource whose finalizer nobody removes holds the uninstall:
// it waits up to --finalizer-timeout, names the stuck object and its
// finalizer, exits 1, and the same command finishes once it is released.
func TestUninstallStuckFinalizer(t *testing.T) {
	name := "sticky"
	mustHitless(t, "install", "-f", writeComponent(t, name, "1.0.0", 1, 1), "--name", name)
	gvr := "sticky.bench.hitless.dev/v1"
	patch(t, gvr, "kind0s", "", "default", "test", types.MergePatchType, `{"metadata":{"finalizers":["example.com/stuck"]}}`)
	code, out, errOut := hitless(t, "uninstall", "--name", name, "--finalizer-timeout", "3s")
	if code != exitcode.Failed || !strings.Contains(errOut, "Kind0/default: waiting on finalizers example.com/stuck") {
		t.Fatalf("exit %d; want 1 naming the stuck custom resource\n%s\n%s", code, out, errOut)
	}
	patch(t, gvr, "kind0s", "", "default", "test", types.MergePatchType, `{"metadata":{"finalizers":null}}`)
	res := mustHitless(t, "uninstall", "--name", name)
	if !res.Resumed || len(res.Remaining) > 0 {
		t.Fatalf("second run: resumed %v, remaining %v", res.Resumed, res.Remaining)
	}
	if left := labelled(t, "hitless.dev/name="+name); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// --from gives the customizations as the user's edited copy of the old
// release: they are carried against the recorded vendor manifests, even
// ones made before anything was applied, removals included.
func TestUpgradeFrom(t *testing.T) {
	name := "fromcopy"
	v1, v2 := writeComponent(t, name, "1.0.0", 0, 2), writeComponent(t, name, "1.1.0", 0, 2)
	mustHitless(t, "install", "-f", v1, "--name", name)
	t.Cleanup(func() { hitless(t, "uninstall", "--name", name) })
	b, err := os.ReadFile(v1)
	if err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(t.TempDir(), "mine.yaml")
	edited := strings.Replace(string(b), "MTU: \"1500\"\n  INDEX: \"0\"", "MTU: \"9000\"", 1) // MTU changed, INDEX removed
	if err := os.WriteFile(mine, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	res := mustHitless(t, "upgrade", "-f", v2, "--name", name, "--from", mine)
	var carried []string
	for _, c := range res.Carried {
		carried = append(carried, c.String())
	}
	want := []string{"ConfigMap/" + name + "/settings-0 data.INDEX removed", "ConfigMap/" + name + `/settings-0 data.MTU = "9000"`}
	if !slices.Equal(carried, want) {
		t.Fatalf("carried %v, want %v", carried, want)
	}
	cm := get(t, "v1", "configmaps", name, "settings-0")
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	if data["MTU"] != "9000" || data["FLOW_EXPORT"] != "off" || data["INDEX"] != "" {
		t.Errorf("settings-0 %v: want MTU 9000 and FLOW_EXPORT from v2, no INDEX", data)
	}
}

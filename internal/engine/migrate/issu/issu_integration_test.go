package issu_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/cutover"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	engine "github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

var env = clustertest.New(clustertest.Options{Workers: 3})

func TestMain(m *testing.M) {
	if os.Getenv(clustertest.EnvRunCLI) == "1" {
		os.Exit(app.Main())
	}
	os.Exit(env.Run(m))
}

const (
	v2 = "../../../../examples/sample-plugin/v2"
	v3 = "../../../../examples/sample-plugin/v3"
	// The plan's default label values.
	oldPlane = "contrail-1"
	newPlane = "contrail-2"
)

var (
	vrouterConfigs = schema.GroupVersionResource{Group: "contrail2.sample.hitless.dev", Version: "v1", Resource: "vrouterconfigs"}
	systemConfigs  = schema.GroupVersionResource{Group: "contrail2.sample.hitless.dev", Version: "v1", Resource: "systemconfigs"}
	globalVrouter  = schema.GroupVersionResource{Group: "dataplane.sample.hitless.dev", Version: "v1alpha1", Resource: "globalvrouterconfigs"}
)

// issu runs the built-in plan as the CLI does; ctx cancelled interrupts it.
func issu(ctx context.Context, t *testing.T) (int, *engine.Result, string) {
	args := []string{"--kubeconfig", env.Kubeconfig(t), "migrate", "run", "sample-plugin-issu", "--yes", "-o", "json",
		"--set", "from=contrail", "--set", "to=contrail2", "--set", "skipVerify=true", "--set", "syncInterval=1s",
		"--release", "to=" + v3}
	var out, errOut bytes.Buffer
	code := app.Run(ctx, "hitless", args, genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	var res engine.Result
	_ = json.Unmarshal(out.Bytes(), &res)
	return code, &res, out.String() + "\n" + errOut.String()
}

// The sample plugin's ISSU (seed 004) on a 4-node cluster with an
// application under a PDB. Interrupted once two nodes are on the new
// release and rolled back, the old release is again the only one, its
// every object as it was, byte for byte. Run to the end, a change made
// on the old configuration while the nodes move is on the new before the
// last node has moved (the run-sync); every node ends on the new vRouter,
// none cordoned, and nothing of the old release remains.
func TestISSU(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local cluster (skipped under -short)")
	}
	ctx := context.Background()
	cs := env.Client(t)
	dc := dynamic.NewForConfigOrDie(env.Config(t))
	nodes := env.NodeNames(t)
	lifecycletest.MustHitless(t, env, "install", "-f", v2, "--name", "contrail")
	ns := env.Namespace(t)
	env.Deployment(t, ns, "web", 8, clustertest.Workload{GracePeriod: 1})
	env.PDB(t, ns, "web", ptr.To(intstr.FromInt32(1)), nil)
	env.WaitDeploymentAvailable(t, ns, "web", 2*time.Minute)
	before := lifecycletest.Snapshot(t, env, "contrail")

	onPlane := func(value string) (moved []string) {
		l, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range l.Items {
			if n.Labels[cutover.DefaultLabel] == value && !n.Spec.Unschedulable {
				moved = append(moved, n.Name)
			}
		}
		return moved
	}
	uncordoned := func(t *testing.T) {
		t.Helper()
		l, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range l.Items {
			if n.Spec.Unschedulable {
				t.Errorf("node %s is left cordoned", n.Name)
			}
		}
	}

	ok := t.Run("rolled back from the middle", func(t *testing.T) {
		g := clustertest.StartDataPlaneGuard(t, cs, ns, nodes, 1, "contrail", "contrail-vrouter-nodes")
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan *engine.Result, 1)
		go func() {
			_, res, _ := issu(rctx, t)
			done <- res
		}()
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
			return len(onPlane(newPlane)) >= 2, nil
		})
		cancel()
		res := <-done
		if err != nil {
			t.Fatalf("two nodes never moved: %v", err)
		}
		code, out, errOut := lifecycletest.Hitless(t, env, "migrate", "rollback", res.Operation)
		if code != 0 {
			t.Fatalf("migrate rollback: exit %d\n%s\n%s", code, out, errOut)
		}
		lifecycletest.SameObjects(t, env, "after the rollback", before, lifecycletest.Snapshot(t, env, "contrail"), "contrail")
		if cur := release.Current(lifecycletest.Revisions(t, env, "contrail2")); cur != nil {
			t.Errorf("the new release is still deployed (revision %d)", cur.Number)
		}
		for _, n := range []string{"contrail2", "contrail2-system"} {
			if _, err := cs.CoreV1().Namespaces().Get(ctx, n, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("namespace %s of the new release is still there (%v)", n, err)
			}
		}
		if moved := onPlane(newPlane); len(moved) > 0 {
			t.Errorf("nodes still on the new vRouter: %v", moved)
		}
		uncordoned(t)
		ds, err := cs.AppsV1().DaemonSets("contrail").Get(ctx, "contrail-vrouter-nodes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			ds, err = cs.AppsV1().DaemonSets("contrail").Get(ctx, "contrail-vrouter-nodes", metav1.GetOptions{})
			return err == nil && ds.Status.NumberAvailable == int32(len(nodes)), err
		}); err != nil {
			t.Errorf("the old vRouter is available on %d of %d nodes: %v", ds.Status.NumberAvailable, len(nodes), err)
		}
		if v := g.Take(true); len(v) > 0 {
			t.Errorf("guard: %s", strings.Join(v, "\n"))
		}
		if g.MaxUnavailable() > 1 {
			t.Errorf("%d nodes were unavailable at once, want 1", g.MaxUnavailable())
		}
	})
	if !ok {
		t.FailNow()
	}

	t.Run("to the end, the old configuration changed during the move", func(t *testing.T) {
		g := clustertest.StartDataPlaneGuard(t, cs, ns, nodes, 1, "contrail", "contrail-vrouter-nodes")
		type ended struct {
			code int
			res  *engine.Result
			text string
		}
		done := make(chan ended, 1)
		go func() {
			code, res, text := issu(ctx, t)
			done <- ended{code, res, text}
		}()
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
			return len(onPlane(newPlane)) >= 1, nil
		}); err != nil {
			t.Fatalf("no node moved: %v", err)
		}
		// A change on the old controller's configuration mid-move.
		if _, err := dc.Resource(globalVrouter).Patch(ctx, "default-global-vrouter-config", types.MergePatchType,
			[]byte(`{"spec":{"flowAging":240}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().ConfigMaps("contrail").Patch(ctx, "contrail-settings", types.MergePatchType,
			[]byte(`{"data":{"LOG_LEVEL":"SYS_DEBUG"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatal(err)
		}
		var movedWhenSeen []string
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			vc, err := dc.Resource(vrouterConfigs).Namespace("contrail2").Get(ctx, "default-global-vrouter-config", metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			aging, _, _ := unstructured.NestedInt64(vc.Object, "spec", "flowAgingSeconds")
			cm, err := cs.CoreV1().ConfigMaps("contrail2").Get(ctx, "contrail-settings", metav1.GetOptions{})
			if err != nil || aging != 240 || cm.Data["LOG_LEVEL"] != "SYS_DEBUG" {
				return false, nil
			}
			movedWhenSeen = onPlane(newPlane)
			return true, nil
		})
		if err != nil {
			t.Errorf("the change on the old configuration never reached the new: %v", err)
		} else if len(movedWhenSeen) == len(nodes) {
			t.Errorf("the change reached the new only once every node had moved: the run-sync did not carry it")
		} else {
			t.Logf("the change reached the new release with %d of %d nodes moved", len(movedWhenSeen), len(nodes))
		}
		end := <-done
		if end.code != 0 {
			t.Fatalf("the ISSU: exit %d\n%s", end.code, end.text)
		}
		if !strings.Contains(fmt.Sprint(stepDetail(t, end.res.Operation, "post-sync")), "run-sync configuration stopped") {
			t.Errorf("post-sync did not end the run-sync: %v", stepDetail(t, end.res.Operation, "post-sync"))
		}
		newReleaseConfigured(t, dc, 240)
		oldReleaseGone(t)
		if moved := onPlane(newPlane); len(moved) != len(nodes) {
			t.Errorf("nodes on the new vRouter: %v, want all %d", moved, len(nodes))
		}
		uncordoned(t)
		km, err := cs.AppsV1().Deployments("contrail2").Get(ctx, "contrail-kube-manager", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if km.Status.AvailableReplicas != 1 {
			t.Errorf("the new kube-manager has %d replicas available, want 1", km.Status.AvailableReplicas)
		}
		ds, err := cs.AppsV1().DaemonSets("contrail2").Get(ctx, "contrail-vrouter-nodes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, pinned := ds.Spec.Template.Spec.NodeSelector[cutover.DefaultLabel]; pinned || ds.Status.NumberAvailable != int32(len(nodes)) {
			t.Errorf("the new vRouter: node selector %v, %d of %d available", ds.Spec.Template.Spec.NodeSelector, ds.Status.NumberAvailable, len(nodes))
		}
		if v := g.Take(true); len(v) > 0 {
			t.Errorf("guard: %s", strings.Join(v, "\n"))
		}
		if n := g.Replaced(); n != len(nodes) {
			t.Errorf("%d old vRouter pods were deleted on drained nodes, want %d (one per node)", n, len(nodes))
		}
	})
}

// newReleaseConfigured checks the new release's configuration, translated
// from the old's, whose flowAging was aging.
func newReleaseConfigured(t *testing.T, dc dynamic.Interface, aging int64) {
	t.Helper()
	ctx := context.Background()
	vc, err := dc.Resource(vrouterConfigs).Namespace("contrail2").Get(ctx, "default-global-vrouter-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	prio, _, _ := unstructured.NestedStringSlice(vc.Object, "spec", "encapsulation", "priorities")
	got, _, _ := unstructured.NestedInt64(vc.Object, "spec", "flowAgingSeconds")
	fc, _, _ := unstructured.NestedBool(vc.Object, "spec", "fastConvergence", "enable")
	if !slices.Equal(prio, []string{"MPLSoUDP", "MPLSoGRE", "VXLAN"}) || got != aging || !fc {
		t.Errorf("VrouterConfig: priorities %v, flowAgingSeconds %d, fastConvergence %v; want the old's, with flowAging %d", prio, got, fc, aging)
	}
	sc, err := dc.Resource(systemConfigs).Namespace("contrail2").Get(ctx, "default-global-system-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	asn, _, _ := unstructured.NestedInt64(sc.Object, "spec", "bgp", "asn")
	hold, _, _ := unstructured.NestedInt64(sc.Object, "spec", "bgp", "holdTimeSeconds")
	if asn != 64512 || hold != 90 {
		t.Errorf("SystemConfig: asn %d, holdTimeSeconds %d; want 64512 and 90", asn, hold)
	}
}

// oldReleaseGone checks that nothing of the old release remains.
func oldReleaseGone(t *testing.T) {
	t.Helper()
	if cur := release.Current(lifecycletest.Revisions(t, env, "contrail")); cur != nil {
		t.Errorf("the old release is still deployed (revision %d)", cur.Number)
	}
	if left := lifecycletest.Labelled(t, env, "hitless.dev/name=contrail"); len(left) > 0 {
		t.Errorf("objects of the old release remain: %v", left)
	}
	cs := env.Client(t)
	for _, n := range []string{"contrail", "contrail-system", "contrail-deploy"} {
		if _, err := cs.CoreV1().Namespaces().Get(context.Background(), n, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s of the old release remains (%v)", n, err)
		}
	}
}

// stepDetail is what a step of the migration journaled.
func stepDetail(t *testing.T, id, step string) []string {
	t.Helper()
	raw, err := journal.NewStore(env.Client(t)).Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if s := raw.StepByName(step); s != nil {
		return s.Detail
	}
	return nil
}

package demo_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/demo"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
	"github.com/hitless-dev/hitless/internal/localcluster/kubelet"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

func TestMain(m *testing.M) {
	// The real data plane's lab kubelet and agents run this binary as
	// the CLI.
	if os.Getenv(clustertest.EnvRunCLI) == "1" {
		os.Exit(app.Main())
	}
	ctrllog.SetLogger(klog.NewKlogr())
	os.Exit(m.Run())
}

// TestDemoFromNothingThenAgain runs the demo on a machine with no cluster,
// checks what it installed in the cluster itself, then runs it again and
// expects the cluster reused and nothing changed.
func TestDemoFromNothingThenAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a local cluster")
	}
	home := t.TempDir()
	t.Setenv(localcluster.EnvHome, home)
	const name = "demo-test"
	t.Cleanup(func() {
		_ = localcluster.Down(context.Background(), home, name)
		_ = localcluster.Down(context.Background(), home, demo.RealName(name))
	})
	ctx := context.Background()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(clustertest.EnvRunCLI, "1")

	// The applications' PDBs and the nodes are guarded from the moment
	// the applications run, through the plugin's upgrade.
	guard := &guardFrom{t: t, home: home, name: name, step: "] node agents ..."}
	res, err := demo.Run(ctx, demo.Options{Cluster: name, Nodes: 3, Progress: guard, Binary: self, LabImages: []kubelet.Image{clustertest.HitlessImage(self)}})
	if err != nil {
		t.Fatal(err)
	}
	if guard.g == nil {
		t.Fatal("the guard never started: no step began with " + guard.step)
	}
	if len(res.Steps) < 4 || !strings.Contains(res.Steps[0].Detail, "started cluster") {
		t.Fatalf("steps = %+v", res.Steps)
	}
	c, err := localcluster.Get(home, name)
	if err != nil {
		t.Fatal(err)
	}
	cs, cfg, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the data plane runs on every node", func(t *testing.T) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ds, err := cs.AppsV1().DaemonSets("contrail").Get(ctx, "contrail-vrouter-nodes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if int(ds.Status.NumberReady) != len(nodes.Items) {
			t.Errorf("vRouter ready on %d of %d nodes", ds.Status.NumberReady, len(nodes.Items))
		}
	})
	t.Run("controllers, config store and applications are available", func(t *testing.T) {
		for _, d := range []struct{ ns, name string }{{"contrail", "contrail-controller"}, {"contrail-deploy", "contrail-k8s-deployer"}, {"shop", "frontend"}, {"shop", "checkout"}, {"shop", "reports"}} {
			got, err := cs.AppsV1().Deployments(d.ns).Get(ctx, d.name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Status.AvailableReplicas != *got.Spec.Replicas {
				t.Errorf("deployment %s/%s: %d of %d available", d.ns, d.name, got.Status.AvailableReplicas, *got.Spec.Replicas)
			}
		}
		for _, s := range []struct{ ns, name string }{{"contrail-system", "contrail-config"}, {"shop", "orders-db"}} {
			got, err := cs.AppsV1().StatefulSets(s.ns).Get(ctx, s.name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Status.ReadyReplicas != *got.Spec.Replicas {
				t.Errorf("statefulset %s/%s: %d of %d ready", s.ns, s.name, got.Status.ReadyReplicas, *got.Spec.Replicas)
			}
		}
	})
	t.Run("global config objects exist", func(t *testing.T) {
		dyn, err := dynamic.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range []struct {
			gvr  schema.GroupVersionResource
			name string
		}{
			{schema.GroupVersionResource{Group: "dataplane.sample.hitless.dev", Version: "v1alpha1", Resource: "globalvrouterconfigs"}, "default-global-vrouter-config"},
			{schema.GroupVersionResource{Group: "core.sample.hitless.dev", Version: "v1alpha1", Resource: "globalsystemconfigs"}, "default-global-system-config"},
		} {
			if _, err := dyn.Resource(g.gvr).Get(ctx, g.name, metav1.GetOptions{}); err != nil {
				t.Errorf("%s %s: %v", g.gvr.Resource, g.name, err)
			}
		}
	})

	t.Run("preflight refuses the planted pod, passes once it is gone, postflight passes", func(t *testing.T) {
		detail := map[string]string{}
		for _, st := range res.Steps {
			detail[st.Name] = st.Detail
		}
		if d := detail["preflight with a planted problem"]; !strings.HasPrefix(d, "NOT OK") || !strings.Contains(d, "drain.unmanaged-pods") {
			t.Errorf("planted problem: %q", d)
		}
		if d := detail["preflight"]; !strings.HasPrefix(d, "OK:") {
			t.Errorf("preflight after the fix: %q", d)
		}
		if d := detail["postflight"]; !strings.HasPrefix(d, "OK:") || !strings.Contains(d, "node pairs reach each other over TCP and UDP") {
			t.Errorf("postflight: %q", d)
		}
		runs, err := check.NewStore(cs).List(ctx)
		if err != nil || len(runs) != 3 || runs[0].Kind != "postflight" || runs[2].Summary.OK {
			t.Fatalf("history: %d runs (%v), want preflight (not OK), preflight, postflight", len(runs), err)
		}
		reports, _, err := agent.Reports(ctx, cs)
		if err != nil || len(reports) != 0 {
			t.Errorf("the demo's agents left %d reports behind (%v)", len(reports), err)
		}
	})

	t.Run("the plugin is upgraded with the live customization, the data plane node by node, measured", func(t *testing.T) {
		var detail string
		for _, st := range res.Steps {
			if strings.HasPrefix(st.Name, "upgrade the plugin") {
				detail = st.Detail
			}
		}
		if !strings.Contains(detail, `revision 2: carried ConfigMap/contrail/contrail-settings data.VROUTER_MTU = "1400"`) {
			t.Fatalf("upgrade step: %q", detail)
		}
		settings, err := cs.CoreV1().ConfigMaps("contrail").Get(ctx, "contrail-settings", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if settings.Data["VROUTER_MTU"] != "1400" || settings.Data["FLOW_EXPORT_RATE"] != "0" {
			t.Errorf("settings after the upgrade %v: want the user's MTU and the vendor's new key", settings.Data)
		}
		pods, err := cs.CoreV1().Pods("contrail").List(ctx, metav1.ListOptions{LabelSelector: "app=contrail-vrouter"})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) != 4 {
			t.Errorf("%d vRouter pods, want one on each of the 4 nodes", len(pods.Items))
		}
		for _, p := range pods.Items {
			if !strings.HasSuffix(p.Spec.Containers[0].Image, ":1.1.0") {
				t.Errorf("vRouter on %s runs %s", p.Spec.NodeName, p.Spec.Containers[0].Image)
			}
		}
		nodes := rolledOneAtATime(t, cs)
		if len(nodes) != 4 {
			t.Errorf("the journals show %d nodes rolled (%v), want the 4", len(nodes), nodes)
		}
		if v := guard.g.Take(true); len(v) > 0 {
			t.Errorf("guard: %v", v)
		}
		if got := guard.g.Replaced(); got != 4 {
			t.Errorf("%d vRouter pods replaced on drained nodes, want the 4", got)
		}
		page, err := os.ReadFile(res.Report)
		if err != nil {
			t.Fatal(err)
		}
		// The plugin's registry credentials went through the upgrade: the
		// report shows none of them, plain or base64.
		creds, err := cs.CoreV1().Secrets("contrail").Get(ctx, "contrail-registry-credentials", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range creds.Data {
			for _, s := range []string{string(v), base64.StdEncoding.EncodeToString(v), "c2FtcGxlOmNoYW5nZS1tZQ", "sample:change-me"} {
				if strings.Contains(string(page), s) {
					t.Errorf("the report shows the registry credentials (%q)", s)
				}
			}
		}
		// In the lab the vRouter's outage is the lab's model: the report
		// says so.
		if said := strings.Contains(string(page), "Model: the data plane of "); said != (c.Lab != nil) {
			t.Errorf("the report calls the data plane a model: %v, the cluster has a lab: %v", said, c.Lab != nil)
		}
		// The report draws every node's steps, as the journal has them,
		// root or not.
		for _, n := range nodes {
			for _, phase := range []string{"drain", "action"} {
				if !strings.Contains(string(page), n+": "+phase+" ") {
					t.Errorf("the report does not show the %s of %s", phase, n)
				}
			}
			if c.Lab != nil && !strings.Contains(string(page), "action of "+n) {
				// In the lab each vRouter restart takes its node's link
				// down: the report ties the outage to that node's action.
				t.Errorf("the report does not tie an outage to the action of %s", n)
			}
		}
	})

	t.Run("as root, the last steps run on a real data plane: flannel upgraded node by node, its device deleted on one node", func(t *testing.T) {
		detail := map[string]string{}
		for _, st := range res.Steps {
			detail[st.Name] = st.Detail
		}
		steps := []string{"a real data plane: flannel on a lab of its own", "upgrade flannel node by node, measured on the real data plane",
			"a fault on the real data plane: flannel's VXLAN device deleted on one node"}
		if os.Geteuid() != 0 {
			for _, st := range steps {
				if !strings.HasPrefix(detail[st], "skipped: a real data plane needs root") {
					t.Errorf("%s without root: %q", st, detail[st])
				}
			}
			return
		}
		if d := detail[steps[0]]; !strings.Contains(d, "flannel installed by hitless (flanneld v0.27.4, the real daemon, VXLAN)") || !strings.Contains(d, "3 agents probing pod to pod") {
			t.Errorf("real lab: %q", d)
		}
		if d := detail[steps[1]]; !strings.Contains(d, "revision 2: flanneld --iptables-resync=10; 3 nodes rolled one at a time") || res.RealReport == "" {
			t.Errorf("flannel upgrade: %q (report %q)", d, res.RealReport)
		}
		rc, err := localcluster.Get(home, demo.RealName(name))
		if err != nil {
			t.Fatal(err)
		}
		rcs, _, err := rc.Client()
		if err != nil {
			t.Fatal(err)
		}
		ds, err := rcs.AppsV1().DaemonSets("kube-flannel").Get(ctx, "kube-flannel-ds", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if args := strings.Join(ds.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--iptables-resync=10") || ds.Status.UpdatedNumberScheduled != 3 {
			t.Errorf("flanneld after the demo's upgrade: %s, %d of 3 pods updated", args, ds.Status.UpdatedNumberScheduled)
		}
		// The outage is seconds long on the node's paths (3.2 s here); a
		// second is far above any noise.
		target := rc.Lab.Nodes[len(rc.Lab.Nodes)-1].Name
		var through float64
		if _, err := fmt.Sscanf(strings.TrimPrefix(detail[steps[2]], "flannel.1 deleted on "+target+": "), "%f s without reach", &through); err != nil || through < 1 {
			t.Errorf("VXLAN device deleted on %s: %q", target, detail[steps[2]])
		}
	})

	// The second run reuses the cluster and changes nothing in it: every
	// object but the new check runs' records is as the first run left it.
	before := clustertest.Snapshot(t, cfg, checkRuns)
	again, err := demo.Run(ctx, demo.Options{Cluster: name, Binary: self, LabImages: []kubelet.Image{clustertest.HitlessImage(self)}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(again.Steps[0].Detail, "reused running cluster") {
		t.Errorf("second run did not reuse the cluster: %s", again.Steps[0].Detail)
	}
	if diff := before.Diff(clustertest.Snapshot(t, cfg, checkRuns)); len(diff) > 0 {
		t.Errorf("the second run changed the cluster:\n%s", strings.Join(diff, "\n"))
	}
}

// guardFrom is the demo's progress output: when the step named starts, it
// starts a guard on the applications (namespace shop) and the vRouter.
type guardFrom struct {
	t          *testing.T
	home, name string
	step       string
	g          *clustertest.Guard
}

func (w *guardFrom) Write(b []byte) (int, error) {
	if w.g != nil || !strings.Contains(string(b), w.step) {
		return len(b), nil
	}
	c, err := localcluster.Get(w.home, w.name)
	if err != nil {
		w.t.Fatal(err)
	}
	cs, _, err := c.Client()
	if err != nil {
		w.t.Fatal(err)
	}
	nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	var pool []string
	for _, n := range nodes.Items {
		pool = append(pool, n.Name)
	}
	w.g = clustertest.StartDataPlaneGuard(w.t, cs, "shop", pool, 1, "contrail", "contrail-vrouter-nodes")
	return len(b), nil
}

// checkRuns leaves out what every checks run writes: its record, and its
// request for the agents' fresh results.
func checkRuns(gr schema.GroupResource, obj *unstructured.Unstructured) bool {
	_, record := obj.GetLabels()[check.LabelRun]
	request := obj.GetNamespace() == store.Namespace && obj.GetName() == agent.RequestName
	return gr == schema.GroupResource{Resource: "configmaps"} && (record || request)
}

// rolledOneAtATime reads the data-plane rolls from the journals, checks
// that every node ran drain and action and finished before the next
// started, and returns the nodes in order.
func rolledOneAtATime(t *testing.T, cs kubernetes.Interface) []string {
	t.Helper()
	ops, err := journal.NewStore(cs).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var nodes []roll.Node
	for _, op := range ops {
		if op.Kind != roll.Kind {
			continue
		}
		e, err := journal.Decode[roll.Record](op)
		if err != nil {
			t.Fatal(err)
		}
		if e.Status != journal.Succeeded {
			t.Errorf("roll %s: %s (%s)", e.ID, e.Status, e.Message)
		}
		nodes = append(nodes, e.Record.Nodes...)
	}
	slices.SortFunc(nodes, func(a, b roll.Node) int { return a.StartedAt.Compare(*b.StartedAt) })
	var names []string
	for i, n := range nodes {
		names = append(names, n.Name)
		var phases []string
		for _, p := range n.Phases {
			phases = append(phases, p.Name)
		}
		if n.Phase != roll.PhaseDone || !slices.Contains(phases, roll.PhaseDrain) || !slices.Contains(phases, roll.PhaseAction) {
			t.Errorf("node %s: phase %s after %v, want done after a drain and an action", n.Name, n.Phase, phases)
		}
		if i > 0 && n.StartedAt.Before(*nodes[i-1].CompletedAt) {
			t.Errorf("node %s started at %s, before %s finished at %s", n.Name, n.StartedAt, nodes[i-1].Name, nodes[i-1].CompletedAt)
		}
	}
	return names
}

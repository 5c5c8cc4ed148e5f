package demo_test

import (
	"context"
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/demo"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

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
	t.Cleanup(func() { _ = localcluster.Down(context.Background(), home, name) })
	ctx := context.Background()

	res, err := demo.Run(ctx, demo.Options{Cluster: name, Nodes: 3})
	if err != nil {
		t.Fatal(err)
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
		if !strings.Contains(detail, "4 nodes drained and upgraded one at a time") || !strings.Contains(detail, "loss windows") ||
			!strings.Contains(detail, `revision 2: carried ConfigMap/contrail/contrail-settings data.VROUTER_MTU = "1400"`) {
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
		page, err := os.ReadFile(res.Report)
		if err != nil {
			t.Fatal(err)
		}
		if c.Lab != nil {
			// In the lab each vRouter restart takes its node's link down:
			// the report ties the outage to that node's action.
			for _, n := range []string{"worker-1", "worker-2", "worker-3", "control-plane-1"} {
				if !strings.Contains(string(page), "action of "+name+"-"+n) {
					t.Errorf("the report does not tie an outage to the action of %s", n)
				}
			}
		}
	})

	again, err := demo.Run(ctx, demo.Options{Cluster: name})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(again.Steps[0].Detail, "reused running cluster") {
		t.Errorf("second run did not reuse the cluster: %s", again.Steps[0].Detail)
	}
	for _, s := range again.Steps[1:3] {
		if strings.Contains(s.Detail, "created") || strings.Contains(s.Detail, "configured") {
			t.Errorf("second run changed objects: %s: %s", s.Name, s.Detail)
		}
	}
}

package demo_test

import (
	"context"
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hitless-dev/hitless/internal/demo"
	"github.com/hitless-dev/hitless/internal/engine/cutover"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
	"github.com/hitless-dev/hitless/internal/localcluster/kubelet"
)

// hitless demo cutover, as root: the lab moves from kube-router to
// flannel, interrupted, one node rolled back alone and moved again, and
// the loss is said per node.
func TestCutoverDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a local cluster")
	}
	if os.Geteuid() != 0 {
		_, err := demo.RunCutover(context.Background(), demo.CutoverOptions{})
		if err == nil || !strings.Contains(err.Error(), "run it as root") {
			t.Fatalf("without root: %v, want the demo to say it needs root", err)
		}
		return
	}
	home := t.TempDir()
	t.Setenv(localcluster.EnvHome, home)
	const name = "cutover-test"
	t.Cleanup(func() { _ = localcluster.Down(context.Background(), home, name) })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(clustertest.EnvRunCLI, "1")
	res, err := demo.RunCutover(context.Background(), demo.CutoverOptions{Cluster: name, Binary: self, LabImages: []kubelet.Image{clustertest.HitlessImage(self)},
		Progress: func(line string) { t.Log(line) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 5 {
		t.Fatalf("steps = %+v", res.Steps)
	}
	for i, want := range []string{"kube-router v2.1.0 installed by hitless", "interrupted with", "back on kube-router", "3 nodes on flannel", "lost, longest"} {
		if !strings.Contains(res.Steps[i].Detail, want) {
			t.Errorf("step %d %q: %q, want %q in it", i+1, res.Steps[i].Name, res.Steps[i].Detail, want)
		}
	}
	if !strings.Contains(res.Steps[3].Detail, "moved again (journaled") {
		t.Errorf("the second move of the node rolled back is not said with its reason: %q", res.Steps[3].Detail)
	}
	c, err := localcluster.Get(home, name)
	if err != nil {
		t.Fatal(err)
	}
	cs, _, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if n.Labels[cutover.DefaultLabel] != "flannel" || n.Spec.Unschedulable {
			t.Errorf("node %s: %s=%q, cordoned %v; want on flannel, schedulable", n.Name, cutover.DefaultLabel, n.Labels[cutover.DefaultLabel], n.Spec.Unschedulable)
		}
		if !strings.Contains(res.Steps[4].Detail, n.Name+" ") {
			t.Errorf("the per-node loss does not name node %s: %q", n.Name, res.Steps[4].Detail)
		}
	}
	if _, err := cs.AppsV1().DaemonSets("kube-system").Get(context.Background(), "kube-router", metav1.GetOptions{}); err == nil {
		t.Error("kube-router's DaemonSet is still there")
	}
}

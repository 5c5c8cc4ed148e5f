package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"testing"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/engine/cutover"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

var env = clustertest.New(clustertest.Options{Workers: 1})

// TestMain starts the cluster only for the benchmark: the package has no
// test, and CI's go test runs it without -bench.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run())
	}
	os.Exit(env.Run(m))
}

const (
	workloadGrace = 1 // s, the workload pods'
	planeGrace    = 1 // s, the data-plane pods'
	podsPerNode   = 4
)

// BenchmarkCutover moves 20 and 200 nodes, one at a time, from one
// data-plane DaemonSet to another with the cutover action (no agent: no
// clean-up, no pod-to-pod verification), and compares each node's time
// with its floor: the drain (the longest grace period of its pods) plus
// the old data-plane pod's grace period and the new one's start, as the
// cluster itself takes them (measured once on a node hitless does not
// touch). Run:
//
//	bash hack/bench.sh Cutover
func BenchmarkCutover(b *testing.B) {
	var rows []string
	for _, nodes := range []int{20, 200} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			rows = append(rows, benchCutover(b, nodes))
		})
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "\nnodes\ts/node\tfloor s/node\toverhead s/node\tcutover action s/node\trequests/node\tpods/node")
	for _, r := range rows {
		_, _ = fmt.Fprintln(tw, r)
	}
	_ = tw.Flush()
}

func benchCutover(b *testing.B, nodes int) string {
	ctx := context.Background()
	label := fmt.Sprintf("cut%d", nodes)
	names := env.AddNodes(b, nodes, map[string]string{"bench": label, cutover.DefaultLabel: label + "-a"})
	ns := env.Namespace(b)
	for _, plane := range []string{"a", "b"} {
		env.DaemonSet(b, ns, label+"-"+plane, clustertest.Workload{GracePeriod: planeGrace, NodeSelector: map[string]string{cutover.DefaultLabel: label + "-" + plane}})
	}
	for i := range 2 {
		app := fmt.Sprintf("%s-app%d", label, i)
		env.Deployment(b, ns, app, int32(nodes*podsPerNode/2), clustertest.Workload{GracePeriod: workloadGrace, NodeSelector: map[string]string{"bench": label}})
		env.PDB(b, ns, app, ptr.To(intstr.FromString("10%")), nil)
		env.WaitDeploymentAvailable(b, ns, app, 10*time.Minute)
	}
	cfg, requests := env.CountingConfig(b)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	waitPlane(b, cs, ns, label+"-a", nodes)
	start := planeStart(b, cs, ns, label, names[0])

	actions := roll.DefaultActions()
	if err := actions.Register(cutover.Type()); err != nil {
		b.Fatal(err)
	}
	params, _ := json.Marshal(cutover.Params{SkipVerify: true,
		From: cutover.DataPlane{DaemonSet: ns + "/" + label + "-a", Value: label + "-a"},
		To:   cutover.DataPlane{DaemonSet: ns + "/" + label + "-b", Value: label + "-b"}})
	var row string
	for b.Loop() {
		requests.Store(0)
		t0 := time.Now()
		res, err := roll.Run(ctx, cs, roll.Options{Spec: roll.Spec{Nodes: names[1:], Batch: "1", EvictRetryDelay: time.Second,
			Actions: []roll.ActionSpec{{Name: cutover.ActionName, Params: params}}}, Command: "bench", Actions: actions})
		if err != nil {
			b.Fatal(err)
		}
		moved := float64(nodes - 1)
		total := time.Since(t0)
		var action time.Duration
		for _, n := range res.Operation.Record.Nodes {
			for _, p := range n.Phases {
				if p.Name == "action" && p.Finished != nil {
					action += p.Finished.Sub(p.Started)
				}
			}
		}
		floor := time.Duration(workloadGrace)*time.Second + start
		perNode := total.Seconds() / moved
		b.ReportMetric(perNode, "s/node")
		b.ReportMetric(floor.Seconds(), "s-floor/node")
		b.ReportMetric(perNode-floor.Seconds(), "s-overhead/node")
		b.ReportMetric(action.Seconds()/moved, "s-action/node")
		b.ReportMetric(float64(requests.Load())/moved, "requests/node")
		row = fmt.Sprintf("%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%d", nodes, perNode, floor.Seconds(), perNode-floor.Seconds(), action.Seconds()/moved, float64(requests.Load())/moved, podsPerNode)
	}
	return row
}

// planeStart is how long the cluster takes, on a node hitless does not
// touch, from a label switch to the new data-plane pod Ready with the
// old one gone: the cutover's own floor.
func planeStart(b *testing.B, cs kubernetes.Interface, ns, label, node string) time.Duration {
	ctx := context.Background()
	t0 := time.Now()
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, cutover.DefaultLabel, label+"-b")
	if _, err := cs.CoreV1().Nodes().Patch(ctx, node, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
		b.Fatal(err)
	}
	for {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
		if err != nil {
			b.Fatal(err)
		}
		oldGone, newReady := true, false
		for _, p := range pods.Items {
			switch p.Labels["app"] {
			case label + "-a":
				oldGone = false
			case label + "-b":
				newReady = newReady || clustertest.PodReady(&p)
			}
		}
		if oldGone && newReady {
			return time.Since(t0)
		}
		if time.Since(t0) > 2*time.Minute {
			b.Fatalf("the data plane never switched on node %s", node)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitPlane waits until DaemonSet name runs Ready on n nodes.
func waitPlane(b *testing.B, cs kubernetes.Interface, ns, name string, n int) {
	for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		ds, err := cs.AppsV1().DaemonSets(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if int(ds.Status.NumberReady) >= n {
			return
		}
	}
	b.Fatalf("DaemonSet %s never ran on %d nodes", name, n)
}

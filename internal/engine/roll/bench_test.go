package roll_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/localcluster/binaries"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

// countingClient returns a clientset that counts its requests.
func countingClient(b *testing.B) (kubernetes.Interface, *atomic.Int64) {
	cfg, n := env.CountingConfig(b)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return cs, n
}

// benchPool adds nodes with podsPerNode pods each, in four Deployments with
// PDBs (maxUnavailable as given) and grace periods of 1 and 2 s.
func benchPool(b *testing.B, label string, nodes, podsPerNode, maxUnavailable int) (string, []string) {
	names := env.AddNodes(b, nodes, map[string]string{"bench": label})
	ns := env.Namespace(b)
	perApp := int32(nodes * podsPerNode / 4)
	for i, grace := range []int64{1, 1, 2, 2} {
		app := fmt.Sprintf("app%d", i)
		env.Deployment(b, ns, app, perApp, clustertest.Workload{GracePeriod: grace, NodeSelector: map[string]string{"bench": label}})
		env.PDB(b, ns, app, ptr.To(intstr.FromInt32(int32(maxUnavailable))), nil)
	}
	for i := range 4 {
		env.WaitDeploymentAvailable(b, ns, fmt.Sprintf("app%d", i), 5*time.Minute)
	}
	return ns, names
}

// termination is the time pods need to go on each node: the longest grace
// period among its pods (they terminate side by side).
func termination(b *testing.B, cs kubernetes.Interface, ns string, nodes []string) time.Duration {
	var total time.Duration
	for _, n := range nodes {
		list, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + n})
		if err != nil {
			b.Fatal(err)
		}
		var longest int64
		for _, p := range list.Items {
			longest = max(longest, ptr.Deref(p.Spec.TerminationGracePeriodSeconds, 30))
		}
		total += time.Duration(longest) * time.Second
	}
	return total
}

func settle(b *testing.B, ns string) {
	for i := range 4 {
		env.WaitDeploymentAvailable(b, ns, fmt.Sprintf("app%d", i), 5*time.Minute)
	}
}

// BenchmarkRollVsKubectlLoop compares, on the same 20 nodes with 20 pods
// each, `hitless roll --batch 1` with the loop the vendor runbooks use:
// kubectl drain --ignore-daemonsets --delete-emptydir-data NODE && kubectl
// uncordon NODE, at PDB maxUnavailable 1 and 5, and prints a table. Run:
//
//	bash hack/bench.sh RollVsKubectlLoop
func BenchmarkRollVsKubectlLoop(b *testing.B) {
	var rows []rollRow
	// With maxUnavailable 1 each budget lets one pod go at a time, so a
	// drain waits for replacements; with 5 a node's five pods of each
	// Deployment may go at once, which isolates each tool's own overhead.
	for _, maxUnavailable := range []int{1, 5} {
		b.Run(fmt.Sprintf("pdb-max-unavailable=%d", maxUnavailable), func(b *testing.B) {
			rows = append(rows, benchRollVsKubectl(b, maxUnavailable)...)
		})
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "\nPDB maxUnavailable\ttool\ts/node\tfloor s/node\toverhead s/node\tdrain s/node\trequests/node\tbeyond pods/node\t")
	for _, r := range rows {
		_, _ = fmt.Fprintf(tw, "%d\t%s\t%.2f\t%.2f\t%.2f\t%s\t%.1f\t%.1f\t\n", r.maxUnavailable, r.tool, r.perNode, r.floor, r.perNode-r.floor, r.drain, r.requests, r.requests-r.pods)
	}
	_ = tw.Flush()
}

// rollRow is one line of BenchmarkRollVsKubectlLoop's table, per node.
type rollRow struct {
	maxUnavailable                 int
	tool, drain                    string
	perNode, floor, requests, pods float64
}

func benchRollVsKubectl(b *testing.B, maxUnavailable int) []rollRow {
	const nodes, podsPerNode = 20, 20
	label := fmt.Sprintf("vs%d", maxUnavailable)
	ns, names := benchPool(b, label, nodes, podsPerNode, maxUnavailable)
	cs, requests := countingClient(b)
	selector := "bench=" + label
	var rows []rollRow

	b.Run("tool=hitless-roll", func(b *testing.B) {
		for b.Loop() {
			settle(b, ns)
			term := termination(b, cs, ns, names)
			requests.Store(0)
			start := time.Now()
			res, err := roll.Run(context.Background(), cs, roll.Options{Spec: roll.Spec{Selector: selector, Batch: "1", EvictRetryDelay: time.Second}, Command: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			total := time.Since(start)
			phases, inNodes, pods := phaseMetrics(b, res, nodes)
			b.ReportMetric((total-inNodes).Seconds()/nodes, "s-between-nodes/node")
			report(b, total, term, nodes, pods)
			b.ReportMetric(float64(requests.Load())/nodes, "requests/node")
			b.ReportMetric(float64(requests.Load())/nodes-float64(pods)/nodes, "requests-beyond-pods/node")
			rows = append(rows, rollRow{maxUnavailable: maxUnavailable, tool: "hitless roll --batch 1", drain: fmt.Sprintf("%.2f", phases["drain"].Seconds()/nodes),
				perNode: total.Seconds() / nodes, floor: term.Seconds() / nodes, requests: float64(requests.Load()) / nodes, pods: float64(pods) / nodes})
		}
	})

	b.Run("tool=kubectl-loop", func(b *testing.B) {
		resolver, err := binaries.NewResolver(nil) // the cache, or HITLESS_BIN_DIR
		if err != nil {
			b.Fatal(err)
		}
		kubectl, err := resolver.Path(context.Background(), binaries.Kubectl)
		if err != nil {
			b.Fatal(err)
		}
		// The evictions kubectl -v=6 saw accepted.
		accepted := regexp.MustCompile(`"Response" verb="POST" url="[^"]*/eviction" status="20[01] `)
		for b.Loop() {
			settle(b, ns)
			term := termination(b, cs, ns, names)
			var kubectlRequests, pods int
			start := time.Now()
			for _, n := range names {
				for _, args := range [][]string{
					{"drain", "--ignore-daemonsets", "--delete-emptydir-data", n},
					{"uncordon", n},
				} {
					cmd := exec.Command(kubectl, append([]string{"--kubeconfig", env.Kubeconfig(b), "-v=6"}, args...)...)
					out, err := cmd.CombinedOutput()
					if err != nil {
						b.Fatalf("kubectl %v: %v\n%s", args, err, out)
					}
					kubectlRequests += strings.Count(string(out), `"Response"`)
					pods += len(accepted.FindAllIndex(out, -1))
				}
			}
			total := time.Since(start)
			if pods == 0 {
				b.Fatal("no accepted eviction in kubectl's -v=6 log: its format changed")
			}
			report(b, total, term, nodes, pods)
			b.ReportMetric(float64(kubectlRequests)/nodes, "requests/node")
			b.ReportMetric(float64(kubectlRequests)/nodes-float64(pods)/nodes, "requests-beyond-pods/node")
			rows = append(rows, rollRow{maxUnavailable: maxUnavailable, tool: "kubectl drain && uncordon", drain: "",
				perNode: total.Seconds() / nodes, floor: term.Seconds() / nodes, requests: float64(kubectlRequests) / nodes, pods: float64(pods) / nodes})
		}
	})
	return rows
}

// phaseMetrics reports each phase's mean time per node and returns the
// phases' totals, the time spent inside nodes and the pods evicted
// (replacements land on nodes rolled later, so more than were there).
func phaseMetrics(b *testing.B, res *roll.Result, nodes int) (map[string]time.Duration, time.Duration, int) {
	phases := map[string]time.Duration{}
	var inNodes time.Duration
	pods := 0
	for _, n := range res.Operation.Record.Nodes {
		pods += len(n.Evicted) + len(n.Deleted)
		for _, p := range n.Phases {
			if p.Finished != nil {
				phases[p.Name] += p.Finished.Sub(p.Started)
			}
		}
		if n.StartedAt != nil && n.CompletedAt != nil {
			inNodes += n.CompletedAt.Sub(*n.StartedAt)
		}
	}
	for name, d := range phases {
		b.ReportMetric(d.Seconds()/float64(nodes), "s-"+name+"/node")
	}
	return phases, inNodes, pods
}

func report(b *testing.B, total, term time.Duration, nodes, pods int) {
	b.ReportMetric(total.Seconds(), "s-total")
	b.ReportMetric(total.Seconds()/float64(nodes), "s/node")
	b.ReportMetric((total-term).Seconds()/float64(nodes), "s-overhead/node")
	b.ReportMetric(float64(pods)/float64(nodes), "pods/node")
}

// BenchmarkRoll500NodesBatch10Percent measures a 500-node roll with
// --batch 10%, two pods a node.
func BenchmarkRoll500NodesBatch10Percent(b *testing.B) {
	ns, _ := benchPool(b, "big", 500, 2, 10)
	cs, requests := countingClient(b)
	for b.Loop() {
		settle(b, ns)
		requests.Store(0)
		start := time.Now()
		res, err := roll.Run(context.Background(), cs, roll.Options{Spec: roll.Spec{Selector: "bench=big", Batch: "10%", EvictRetryDelay: time.Second}, Command: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s-total")
		b.ReportMetric(float64(requests.Load())/500, "requests/node")
		_, _, pods := phaseMetrics(b, res, 500)
		b.ReportMetric(float64(requests.Load()-int64(pods))/500, "requests-beyond-pods/node")
	}
}

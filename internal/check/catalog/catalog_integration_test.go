package catalog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/check/catalog"
	"github.com/hitless-dev/hitless/internal/check/profile"
	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

var env = clustertest.New(clustertest.Options{Workers: 3})

func TestMain(m *testing.M) { os.Exit(env.Run(m)) }

// agents runs one in-process agent per node of the package's cluster, for
// the whole package: started once, like the DaemonSet would be.
var agents struct {
	once sync.Once
	err  error
}

func startAgents(t *testing.T) {
	t.Helper()
	cs := env.Client(t)
	agents.once.Do(func() {
		nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		if err != nil {
			agents.err = err
			return
		}
		for _, n := range nodes.Items {
			if agents.err = startAgent(t, context.Background(), n.Name); agents.err != nil {
				return
			}
		}
	})
	if agents.err != nil {
		t.Fatal(agents.err)
	}
}

func startAgent(t *testing.T, ctx context.Context, node string) error {
	cs := env.Client(t)
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- agent.Run(ctx, cs, agent.Options{Node: node, Listen: "127.0.0.1", Advertise: "127.0.0.1", Ready: ready})
	}()
	select {
	case <-ready:
		return nil
	case err := <-errc:
		return fmt.Errorf("agent of %s: %w", node, err)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("agent of %s did not publish its first report", node)
	}
}

func hitless(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	args = append(args, "--kubeconfig", env.Kubeconfig(t))
	code = app.Run(context.Background(), "hitless", args, genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb})
	return code, out.String(), errb.String()
}

func run(t *testing.T, opts catalog.Options) *check.Report {
	t.Helper()
	if opts.Kind == "" {
		opts.Kind = profile.Preflight
	}
	switch {
	case opts.AgentTimeout == 0:
		opts.AgentTimeout = 5 * time.Second
	case opts.AgentTimeout < 0: // without the agents
		opts.AgentTimeout = 0
	}
	opts.NoRecord = true
	prep, err := catalog.Prepare(opts)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(env.Config(t))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := prep.Run(context.Background(), env.Client(t), dyn)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// expect finds the cluster-level result id and checks its status,
// severity and that it names object.
func expect(t *testing.T, rep *check.Report, id string, status check.Status, sev check.Severity, object string) check.Result {
	t.Helper()
	for _, r := range rep.Find(id) {
		if r.Node != "" {
			continue
		}
		if r.Status != status || r.Severity != sev || (object != "" && !slices.Contains(r.Objects, object)) {
			t.Fatalf("%s: %s/%s %q objects %v; want %s/%s naming %s", id, r.Status, r.Severity, r.Message, r.Objects, status, sev, object)
		}
		return r
	}
	t.Fatalf("no result %s in %+v", id, rep.Results)
	return check.Result{}
}

func writeParams(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "params.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A clean cluster passes through the real command with exit 0, the JSON
// has its documented shape, and the run is in the history.
func TestPreflightCleanCluster(t *testing.T) {
	startAgents(t)
	code, out, errOut := hitless(t, "preflight", "-o", "json", "--agent-timeout", "20s")
	if code != 0 {
		t.Fatalf("exit %d on a clean cluster:\n%s\n%s", code, out, errOut)
	}
	var doc struct {
		ID      string           `json:"id"`
		Profile string           `json:"profile"`
		Results []map[string]any `json:"results"`
		Summary map[string]any   `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	if doc.Profile != "generic" || len(doc.Results) == 0 || doc.Summary["ok"] != true {
		t.Fatalf("JSON shape: profile %q, %d results, summary %v", doc.Profile, len(doc.Results), doc.Summary)
	}
	for _, key := range []string{"id", "status", "severity", "message", "objects"} {
		if _, ok := doc.Results[0][key]; !ok {
			t.Fatalf("result lacks %q: %v", key, doc.Results[0])
		}
	}
	nodeResults := 0
	for _, r := range doc.Results {
		if r["node"] != nil && r["node"] != "" {
			nodeResults++
		}
		if r["status"] == "fail" || r["status"] == "error" {
			t.Fatalf("a clean cluster has a failing result: %v", r)
		}
	}
	if nodeResults < 4*len(agent.NodeChecks())/2 {
		t.Fatalf("only %d node-level results folded in from 4 agents", nodeResults)
	}
	code, out, _ = hitless(t, "checks", "history")
	if code != 0 || !strings.Contains(out, doc.ID) {
		t.Fatalf("history (exit %d) does not list run %s:\n%s", code, doc.ID, out)
	}
}

// Seed 000 warns that its results keep showing errors after they are
// fixed. Here a fixed problem is gone from the next run, and the history
// keeps both.
func TestFreshResultsAfterFix(t *testing.T) {
	ns := env.Namespace(t)
	pod := env.UnmanagedPod(t, ns, "stray", clustertest.Workload{})
	code, out, _ := hitless(t, "preflight", "--agent-timeout", "0")
	if code != 1 || !strings.Contains(out, "Non managed pod exists [") || !strings.Contains(out, "stray in "+ns) {
		t.Fatalf("exit %d, want 1 naming the stray pod:\n%s", code, out)
	}
	cs := env.Client(t)
	if err := cs.CoreV1().Pods(ns).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 30*time.Second, func() error {
		_, err := cs.CoreV1().Pods(ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
		if err == nil {
			return fmt.Errorf("pod still there")
		}
		return nil
	})
	code, out, _ = hitless(t, "preflight", "--agent-timeout", "0")
	if code != 0 || strings.Contains(out, "stray") {
		t.Fatalf("after the fix: exit %d, want 0 without the stray pod:\n%s", code, out)
	}
	runs, err := check.NewStore(cs).List(context.Background())
	if err != nil || len(runs) < 2 || runs[0].Summary.OK != true || runs[1].Summary.OK != false {
		t.Fatalf("history: %d runs (err %v); want the newest OK and the one before not", len(runs), err)
	}
}

func TestPlantedProblems(t *testing.T) {
	startAgents(t)
	cs := env.Client(t)
	t.Run("unmanaged pod", func(t *testing.T) {
		ns := env.Namespace(t)
		env.UnmanagedPod(t, ns, "lonely", clustertest.Workload{})
		r := expect(t, run(t, catalog.Options{}), "drain.unmanaged-pods", check.Fail, check.Hard, "Pod/"+ns+"/lonely")
		if !strings.HasPrefix(r.Message, "Non managed pod exists [") || !strings.Contains(r.Message, "lonely in "+ns) {
			t.Fatalf("message %q", r.Message)
		}
	})
	t.Run("pinned pod", func(t *testing.T) {
		ns := env.Namespace(t)
		node := localWorker(t, 1)
		env.Deployment(t, ns, "pinned", 1, clustertest.Workload{NodeSelector: map[string]string{corev1.LabelHostname: node}})
		env.WaitDeploymentAvailable(t, ns, "pinned", time.Minute)
		pods := podsOf(t, ns, "pinned")
		r := expect(t, run(t, catalog.Options{}), "drain.pinned-pods", check.Fail, check.Hard, "Pod/"+ns+"/"+pods[0])
		if !strings.Contains(r.Message, corev1.LabelHostname+"="+node) {
			t.Fatalf("message %q does not say why", r.Message)
		}
	})
	t.Run("PDB allowing no disruption", func(t *testing.T) {
		ns := env.Namespace(t)
		env.Deployment(t, ns, "guarded", 2, clustertest.Workload{})
		env.WaitDeploymentAvailable(t, ns, "guarded", time.Minute)
		env.PDB(t, ns, "guarded", ptr.To(intstr.FromInt32(0)), nil)
		clustertest.Eventually(t, 30*time.Second, func() error {
			p, err := cs.PolicyV1().PodDisruptionBudgets(ns).Get(context.Background(), "guarded", metav1.GetOptions{})
			if err != nil || p.Status.ExpectedPods != 2 {
				return fmt.Errorf("PDB status not computed yet (%w)", err)
			}
			return nil
		})
		rep := run(t, catalog.Options{})
		r := expect(t, rep, "drain.pdb", check.Fail, check.Hard, "PodDisruptionBudget/"+ns+"/guarded")
		if !strings.Contains(r.Message, "can never allow a disruption (maxUnavailable 0)") {
			t.Fatalf("message %q", r.Message)
		}
		dry := expect(t, rep, "drain.dry-run", check.Fail, check.Hard, "")
		pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if !slices.Contains(dry.Objects, "Node/"+p.Spec.NodeName) || !strings.Contains(dry.Message, ns+"/"+p.Name) {
				t.Fatalf("dry run does not predict the drain of %s blocking on %s: %s %v", p.Spec.NodeName, p.Name, dry.Message, dry.Objects)
			}
		}
	})
	t.Run("full node", func(t *testing.T) {
		ns := env.Namespace(t)
		capacity := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("2")}
		node := env.AddNodesWithCapacity(t, 1, nil, capacity)[0]
		env.Deployment(t, ns, "filler", 2, clustertest.Workload{NodeSelector: map[string]string{corev1.LabelHostname: node}})
		env.WaitDeploymentAvailable(t, ns, "filler", time.Minute)
		r := expect(t, run(t, catalog.Options{}), "capacity.pod-slots", check.Fail, check.Hard, "Node/"+node)
		if !strings.Contains(r.Message, node+": 2/2 pods") {
			t.Fatalf("message %q", r.Message)
		}
	})
	t.Run("overlapping CIDRs", func(t *testing.T) {
		f := writeParams(t, "clusterNetwork: [{cidr: 10.128.0.0/9, hostPrefix: 24}]\nserviceNetwork: [10.130.0.0/16]\n")
		r := expect(t, run(t, catalog.Options{NetworkFile: f}), "network.overlap", check.Fail, check.Hard, "Parameter/serviceNetwork[0]")
		if !strings.Contains(r.Message, "clusterNetwork[0] 10.128.0.0/9 overlaps serviceNetwork[0] 10.130.0.0/16") {
			t.Fatalf("message %q", r.Message)
		}
	})
	t.Run("VIP outside the machine network", func(t *testing.T) {
		f := writeParams(t, "machineNetwork: [172.30.0.0/16]\napiVIP: 172.31.0.10\ningressVIP: 172.30.200.1\n")
		r := expect(t, run(t, catalog.Options{NetworkFile: f}), "network.vips", check.Fail, check.Hard, "Parameter/apiVIP")
		if !strings.Contains(r.Message, "apiVIP 172.31.0.10 is outside the machine network") || strings.Contains(r.Message, "ingressVIP") {
			t.Fatalf("message %q", r.Message)
		}
	})
	t.Run("MTU too large for the nodes the agents measured", func(t *testing.T) {
		reports, _, err := agent.Reports(context.Background(), cs)
		if err != nil || len(reports) == 0 {
			t.Fatalf("no agent reports: %v", err)
		}
		smallest := 0
		for _, r := range reports {
			if r.MTU > 0 && (smallest == 0 || r.MTU < smallest) {
				smallest = r.MTU
			}
		}
		f := writeParams(t, fmt.Sprintf("mtu: %d\nencapsulation: vxlan\n", smallest-49))
		r := expect(t, run(t, catalog.Options{NetworkFile: f}), "network.mtu", check.Fail, check.Hard, "Parameter/mtu")
		if !strings.Contains(r.Message, fmt.Sprintf("larger than %d", smallest-50)) {
			t.Fatalf("message %q", r.Message)
		}
		f = writeParams(t, fmt.Sprintf("mtu: %d\nencapsulation: vxlan\n", smallest-50))
		expect(t, run(t, catalog.Options{NetworkFile: f}), "network.mtu", check.Pass, check.Hard, "")
	})
	t.Run("unsupported versions and kernels", func(t *testing.T) {
		ns := env.Namespace(t)
		env.Deployment(t, ns, "controller", 2, clustertest.Workload{Image: "example.com/tf/controller:2011.1"})
		env.DaemonSet(t, ns, "vrouter", clustertest.Workload{Image: "example.com/tf/vrouter-agent:2011.2"})
		env.WaitDeploymentAvailable(t, ns, "controller", time.Minute)
		matrix := func(agentTags, kernels string) string {
			return writeParams(t, `
components:
  controller: example.com/tf/controller
  agent: example.com/tf/vrouter-agent
releases:
- name: "2008"
  versions: {controller: ["2008.*"], agent: ["2008.*"]}
- name: "2011"
  versions: {controller: ["2011.*"], agent: [`+agentTags+`]}
  kernels: [`+kernels+`]
`)
		}
		r := expect(t, run(t, catalog.Options{MatrixFile: matrix(`"2011.1"`, `"6.1.*"`)}), "versions.matrix", check.Fail, check.Hard, "")
		if !strings.Contains(r.Message, "no release in the matrix supports the running combination agent 2011.2; controller 2011.1") {
			t.Fatalf("message %q", r.Message)
		}
		r = expect(t, run(t, catalog.Options{MatrixFile: matrix(`"2011.*"`, `"5.4.*"`)}), "versions.matrix", check.Fail, check.Hard, "Node/"+localWorker(t, 1))
		if !strings.Contains(r.Message, "6.1.0-28-amd64") || !strings.Contains(r.Message, "release 2011") {
			t.Fatalf("message %q", r.Message)
		}
		r = expect(t, run(t, catalog.Options{MatrixFile: matrix(`"2011.*"`, `"6.1.*"`)}), "versions.matrix", check.Pass, check.Hard, "")
		if !strings.Contains(r.Message, "release 2011") {
			t.Fatalf("message %q", r.Message)
		}
	})
	t.Run("Pending pod", func(t *testing.T) {
		ns := env.Namespace(t)
		env.Deployment(t, ns, "nowhere", 1, clustertest.Workload{NodeSelector: map[string]string{"no-such-label": "x"}})
		var pod string
		clustertest.Eventually(t, 30*time.Second, func() error {
			pods := podsOf(t, ns, "nowhere")
			if len(pods) == 0 {
				return fmt.Errorf("no pod yet")
			}
			p, err := cs.CoreV1().Pods(ns).Get(context.Background(), pods[0], metav1.GetOptions{})
			if err != nil || len(p.Status.Conditions) == 0 {
				return fmt.Errorf("pod not marked unschedulable yet")
			}
			pod = pods[0]
			return nil
		})
		rep := run(t, catalog.Options{})
		r := expect(t, rep, "workloads.pods", check.Fail, check.Soft, "Pod/"+ns+"/"+pod)
		if !strings.Contains(r.Message, "Pending: Unschedulable") {
			t.Fatalf("message %q", r.Message)
		}
		if slices.ContainsFunc(rep.Results, func(r check.Result) bool { return r.ID == "workloads.pods" && r.Blocking() }) {
			t.Fatal("a Pending pod blocks the generic preflight; it is soft there")
		}
		post := run(t, catalog.Options{Kind: profile.Postflight})
		expect(t, post, "workloads.pods", check.Fail, check.Hard, "Pod/"+ns+"/"+pod)
	})
}

func localWorker(t *testing.T, i int) string {
	t.Helper()
	return env.Cluster(t).Name + "-worker-" + fmt.Sprint(i)
}

func podsOf(t *testing.T, ns, app string) []string {
	t.Helper()
	l, err := env.Client(t).CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range l.Items {
		out = append(out, p.Name)
	}
	return out
}

// Bad parameter files exit 2 naming file and field, and change nothing:
// no run recorded, no agent asked.
func TestBadParamsExit2(t *testing.T) {
	cs := env.Client(t)
	before, err := cs.CoreV1().ConfigMaps(store.Namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, content, want string }{
		{"invalid YAML", "clusterNetwork: [\n", "params.yaml: "},
		{"invalid CIDR", "serviceNetwork: [10.300.0.0/16]\n", "params.yaml: serviceNetwork[0]: invalid CIDR"},
		{"unknown field", "mtu: 1400\ngenevPort: 6081\n", "params.yaml: genevPort: unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := writeParams(t, tt.content)
			code, _, errOut := hitless(t, "preflight", "-f", f)
			if code != 2 || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errOut, tt.want)
			}
		})
	}
	code, _, errOut := hitless(t, "preflight", "--profile", "nope")
	if code != 2 || !strings.Contains(errOut, "--profile") {
		t.Fatalf("unknown profile: exit %d %q", code, errOut)
	}
	after, err := cs.CoreV1().ConfigMaps(store.Namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Items) != len(before.Items) {
		t.Fatalf("bad input changed hitless-system: %d ConfigMaps before, %d after", len(before.Items), len(after.Items))
	}
	for i := range after.Items {
		if after.Items[i].ResourceVersion != before.Items[i].ResourceVersion {
			t.Fatalf("bad input changed ConfigMap %s", after.Items[i].Name)
		}
	}
}

// A dead agent: its endpoint stops answering and it does not report.
// Postflight fails, naming it in the connectivity matrix and as silent.
func TestPostflightDeadAgent(t *testing.T) {
	startAgents(t)
	rep := run(t, catalog.Options{Kind: profile.Postflight})
	expect(t, rep, "agents.connectivity", check.Pass, check.Hard, "")
	expect(t, rep, "agents.apiserver", check.Pass, check.Hard, "")
	expect(t, rep, "agents.reported", check.Pass, check.Hard, "")
	expect(t, rep, "agents.dns", check.Skip, check.Hard, "")

	// What a crashed agent leaves behind: its last report, naming an
	// endpoint nothing answers on any more.
	node := env.AddNodes(t, 1, nil)[0]
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	stale := &agent.Report{Node: node, Request: "before-the-crash", Profile: "generic", Time: time.Now(),
		Endpoint: agent.Endpoint{Address: "127.0.0.1", TCPPort: port, UDPPort: port}}
	if err := agent.Publish(context.Background(), env.Client(t), stale); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client(t).CoreV1().ConfigMaps(store.Namespace).Delete(context.Background(), "hitless-agent-"+node, metav1.DeleteOptions{})
	})
	rep = run(t, catalog.Options{Kind: profile.Postflight, AgentTimeout: 3 * time.Second})
	r := expect(t, rep, "agents.connectivity", check.Fail, check.Hard, "Node/"+node)
	if !strings.Contains(r.Message, "-> "+node+": tcp:") || !strings.Contains(r.Message, "X") {
		t.Fatalf("matrix does not show the dead agent:\n%s", r.Message)
	}
	r = expect(t, rep, "agents.reported", check.Fail, check.Hard, "Node/"+node)
	if !strings.Contains(r.Message, "silent") {
		t.Fatalf("message %q", r.Message)
	}
}

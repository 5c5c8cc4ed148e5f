package flannel_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/check/profile"
	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
	"github.com/hitless-dev/hitless/internal/localcluster/lab"
	"github.com/hitless-dev/hitless/internal/measure"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

// Two workers and the control-plane node, each with flanneld.
var env = clustertest.New(clustertest.Options{Workers: 2, Lab: localcluster.LabCNI})

func TestMain(m *testing.M) {
	if os.Getenv(clustertest.EnvRunCLI) == "1" {
		os.Exit(app.Main())
	}
	os.Exit(env.Run(m))
}

const (
	manifest  = "../../../../examples/flannel-lab/kube-flannel.yaml"
	daemonSet = "kube-flannel/kube-flannel-ds"
	device    = "flannel.1"
	// quiet is far above the idle floor and far below an outage.
	quiet = 500.0 // ms
)

// flannel, installed by hitless from the lab's DaemonSet, runs the real
// flanneld in every node's namespace: VXLAN routes to every other node's
// pod subnet, pods reaching each other through them. A rolling upgrade
// node by node loses no probe (the kernel forwards while flanneld
// restarts); its VXLAN device deleted on one node is an outage on that
// node's paths, and the report says the loss was at that node; a route
// deleted from the device stays deleted (a blackhole while every pod is
// Ready): the overlay node check names it, and a restart of flannel on
// that node puts it back.
func TestFlannel(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local cluster (skipped under -short)")
	}
	ctx := context.Background()
	cs := env.Client(t)
	c := env.Cluster(t)
	workers := env.NodeNames(t)
	target := workers[len(workers)-1]
	var targetNS string
	for _, n := range c.Lab.Nodes {
		if n.Name == target {
			targetNS = n.Path()
		}
	}

	lifecycletest.MustHitless(t, env, "install", "-f", manifest, "--name", "flannel")
	env.WaitAgentPods(t)
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}

	ok := t.Run("flannel routes every other node's pod subnet over its VXLAN device", func(t *testing.T) {
		var missing []string
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			missing = nil
			for _, n := range c.Lab.Nodes {
				missing = append(missing, missingRoutes(t, n, nodes.Items)...)
			}
			return len(missing) == 0, nil
		})
		if err != nil {
			t.Fatalf("routes missing after a minute:\n%s", strings.Join(missing, "\n"))
		}
	})
	if !ok {
		t.FailNow()
	}

	var floor measure.Report
	ok = t.Run("pods on different nodes reach each other (the noise floor, idle)", func(t *testing.T) {
		lifecycletest.HitlessJSON(t, env, &floor, "probe", "run", "--duration", "5s")
		paths := measure.PathsOf("udp", &floor)
		if len(paths) != len(c.Lab.Nodes)*(len(c.Lab.Nodes)-1) {
			t.Fatalf("%d pod-to-pod paths probed, want every pair of %d nodes", len(paths), len(c.Lab.Nodes))
		}
		for _, p := range paths {
			if p.Received == 0 || p.LongestOutageMs >= quiet {
				t.Errorf("idle path %s -> %s: sent %d, received %d, longest gap %.0f ms", p.From, p.To, p.Sent, p.Received, p.LongestOutageMs)
			}
			t.Logf("idle %s -> %s: %d sent, %d lost, longest gap %.0f ms", p.From, p.To, p.Sent, p.Lost, p.LongestOutageMs)
		}
	})
	if !ok {
		t.FailNow()
	}

	t.Run("a rolling upgrade node by node loses no probe", func(t *testing.T) {
		v2 := strings.Replace(readFile(t, manifest), "--iface=eth0]", "--iface=eth0, --iptables-resync=10]", 1)
		var out struct {
			Probe []*measure.Report `json:"probe"`
		}
		lifecycletest.HitlessJSON(t, env, &out, "upgrade", "-f", lifecycletest.WriteFile(t, "kube-flannel.yaml", v2), "--name", "flannel", "--probe")
		if len(out.Probe) == 0 || len(measure.PathsOf("udp", out.Probe[0])) == 0 {
			t.Fatalf("the upgrade has no probe report: %+v", out.Probe)
		}
		ds, err := cs.AppsV1().DaemonSets("kube-flannel").Get(ctx, "kube-flannel-ds", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if args := strings.Join(ds.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--iptables-resync=10") || ds.Status.UpdatedNumberScheduled != int32(len(c.Lab.Nodes)) {
			t.Fatalf("after the upgrade flanneld runs with %s, %d of %d pods updated", args, ds.Status.UpdatedNumberScheduled, len(c.Lab.Nodes))
		}
		for _, p := range measure.PathsOf("udp", out.Probe[0]) {
			if p.Lost > 0 {
				t.Errorf("path %s -> %s lost %d probes (longest outage %.0f ms) in a rolling upgrade of flannel", p.From, p.To, p.Lost, p.LongestOutageMs)
			}
		}
		s := out.Probe[0].Summary
		t.Logf("rolling upgrade of flannel: %d of %d probes lost, longest outage %.0f ms", s.Lost, s.Sent, s.LongestOutageMs)
		env.WaitAgentPods(t)
	})

	t.Run("its VXLAN device deleted on one node is an outage on that node's paths, at that node", func(t *testing.T) {
		type result struct {
			code        int
			out, errOut string
		}
		done := make(chan result, 1)
		go func() {
			code, out, errOut := lifecycletest.Hitless(t, env, "probe", "run", "--duration", "12s", "-o", "json")
			done <- result{code, out, errOut}
		}()
		time.Sleep(3 * time.Second)
		if err := c.Inject(ctx, localcluster.Fault{Node: target, Kind: "delete-link", Link: device}); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.code != 0 {
			t.Fatalf("hitless probe run: exit %d\n%s\n%s", r.code, r.out, r.errOut)
		}
		var rep measure.Report
		if err := json.Unmarshal([]byte(r.out), &rep); err != nil {
			t.Fatal(err)
		}
		for _, p := range measure.PathsOf("udp", &rep) {
			through := p.From == target || p.To == target
			switch {
			case through && p.LongestOutageMs < 1000:
				t.Errorf("path %s -> %s through %s: outage %.0f ms with its VXLAN device deleted", p.From, p.To, target, p.LongestOutageMs)
			case !through && p.LongestOutageMs >= quiet:
				t.Errorf("path %s -> %s does not cross %s but lost %.0f ms", p.From, p.To, target, p.LongestOutageMs)
			}
			t.Logf("%s deleted on %s: %s -> %s lost %d, longest outage %.0f ms", device, target, p.From, p.To, p.Lost, p.LongestOutageMs)
		}
		if rep.Summary.LossAt != target {
			t.Errorf("the report says the loss was at %q, want %s", rep.Summary.LossAt, target)
		}
	})

	t.Run("a route lost from the device is named by the overlay check and back after a restart", func(t *testing.T) {
		// flanneld (v0.27.4) put its device and routes back above; wait
		// for them, then take one route away.
		overlay := func() check.Result {
			t.Helper()
			p, err := profile.Get("generic")
			if err != nil {
				t.Fatal(err)
			}
			var self *corev1.Node
			for i := range nodes.Items {
				if nodes.Items[i].Name == target {
					self = &nodes.Items[i]
				}
			}
			h := &agent.Host{Root: "/", Proc: "/proc", Node: self, Nodes: nodes.Items, Profile: p, NetNS: targetNS}
			for _, r := range agent.RunNodeChecks(ctx, h) {
				if r.ID == "node.overlay-routes" {
					return r
				}
			}
			t.Fatal("no node.overlay-routes result")
			return check.Result{}
		}
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			return overlay().Status == check.Pass, nil
		})
		if err != nil {
			t.Fatalf("the overlay check on %s after flanneld recreated its device: %+v", target, overlay())
		}
		other := nodes.Items[0]
		if other.Name == target {
			other = nodes.Items[1]
		}
		withNetlink(t, targetNS, func(h *netlink.Handle) {
			l, err := h.LinkByName(device)
			if err != nil {
				t.Fatal(err)
			}
			dst := mustCIDR(t, other.Spec.PodCIDR)
			if err := h.RouteDel(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst}); err != nil {
				t.Fatalf("deleting the route to %s: %v", other.Spec.PodCIDR, err)
			}
		})
		time.Sleep(3 * time.Second) // flanneld does not put it back
		if r := overlay(); r.Status != check.Fail || !strings.Contains(r.Message, other.Spec.PodCIDR+" (node "+other.Name+")") {
			t.Fatalf("the overlay check with the route to %s gone: %s %q", other.Spec.PodCIDR, r.Status, r.Message)
		}
		var out struct {
			Probe *measure.Report `json:"probe"`
		}
		lifecycletest.HitlessJSON(t, env, &out, "roll", "--nodes", target, "--restart-daemonset", daemonSet, "--probe", "--yes")
		err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			return overlay().Status == check.Pass, nil
		})
		if err != nil {
			t.Fatalf("the overlay check on %s after flannel restarted there: %+v", target, overlay())
		}
		if out.Probe != nil {
			lost := lostBetween(out.Probe, target, other.Name)
			t.Logf("route to %s deleted on %s, then flannel restarted there: %d probes lost between them, longest outage %.0f ms", other.Name, target, lost, out.Probe.Summary.LongestOutageMs)
			if lost == 0 {
				t.Errorf("no probe lost between %s and %s while the route was gone", target, other.Name)
			}
		}
	})
}

// lostBetween counts the probes lost between nodes a and b, both ways.
func lostBetween(r *measure.Report, a, b string) int64 {
	var n int64
	for _, p := range measure.PathsOf("udp", r) {
		if (p.From == a && p.To == b) || (p.From == b && p.To == a) {
			n += p.Lost
		}
	}
	return n
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withNetlink runs fn with netlink in the namespace at path.
func withNetlink(t *testing.T, path string, fn func(*netlink.Handle)) {
	t.Helper()
	h, err := lab.Netlink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fn(h)
}

// missingRoutes lists the other nodes' pod subnets that node n does not
// route over flannel's device.
func missingRoutes(t *testing.T, n lab.Node, nodes []corev1.Node) []string {
	var missing []string
	withNetlink(t, n.Path(), func(h *netlink.Handle) {
		l, err := h.LinkByName(device)
		if err != nil {
			missing = append(missing, "node "+n.Name+": no "+device)
			return
		}
		routes, err := h.RouteList(l, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, r := range routes {
			if r.Dst != nil {
				have[r.Dst.String()] = true
			}
		}
		for _, o := range nodes {
			if o.Name != n.Name && !have[o.Spec.PodCIDR] {
				missing = append(missing, "node "+n.Name+": no route to "+o.Spec.PodCIDR+" ("+o.Name+") over "+device)
			}
		}
	})
	return missing
}

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

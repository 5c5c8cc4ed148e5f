package kubelet_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
	"github.com/hitless-dev/hitless/internal/localcluster/lab"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
	"github.com/hitless-dev/hitless/internal/measure"
	"github.com/hitless-dev/hitless/internal/measure/probe"
)

// kubeRouterManifest is the real kube-router release's manifest.
func kubeRouterManifest(t *testing.T, version string) string {
	t.Helper()
	dir, err := upstream.Find()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "cni", "kube-router", "kubeadm-kuberouter-"+version+".yaml")
}

// kube-router, installed by hitless from its real release manifest, runs
// as its real binary in every node's namespace: it peers over BGP,
// installs routes to the other nodes' pod CIDRs, and the agents' pods,
// wired by the CNI plugins with its configuration, reach each other
// through them. A restart measured with the agents' probes loses nothing
// with BGP graceful restart (the release's setting) and is an outage of
// seconds on the restarted node's paths, and only those, without it.
func TestKubeRouter(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local cluster (skipped under -short)")
	}
	cs := env.Client(t)
	ctx := context.Background()
	c := env.Cluster(t)
	workers := env.NodeNames(t)
	target := workers[len(workers)-1]

	lifecycletest.MustHitless(t, env, "install", "-f", kubeRouterManifest(t, "v2.1.0"), "--name", "kube-router")
	env.WaitAgentPods(t)

	ok := t.Run("kube-router installs routes to every other node's pod CIDR", func(t *testing.T) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// BGP sessions take seconds to come up after the daemons start.
		var missing []string
		err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			missing = missingRoutes(t, c.Lab.Nodes, nodes.Items)
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
		if len(paths) == 0 {
			t.Fatal("no pod-to-pod paths were probed")
		}
		for _, p := range paths {
			if p.Sent == 0 || p.Received == 0 {
				t.Errorf("path %s -> %s: sent %d, received %d", p.From, p.To, p.Sent, p.Received)
			}
			t.Logf("idle %s -> %s: %d sent, %d lost, longest gap %.0f ms", p.From, p.To, p.Sent, p.Lost, p.LongestOutageMs)
		}
	})
	if !ok {
		t.FailNow()
	}
	quiet := 500.0 // ms: far above the idle floor, far below a BGP outage
	for _, p := range measure.PathsOf("udp", &floor) {
		if p.LongestOutageMs >= quiet {
			t.Fatalf("idle path %s -> %s lost %.0f ms at once: the lab is too loaded to measure", p.From, p.To, p.LongestOutageMs)
		}
	}

	restart := func(t *testing.T) *measure.Report {
		t.Helper()
		var out struct {
			Probe *measure.Report `json:"probe"`
		}
		lifecycletest.HitlessJSON(t, env, &out, "roll", "--nodes", target, "--restart-daemonset", "kube-system/kube-router", "--probe", "--yes")
		if out.Probe == nil {
			t.Fatal("the roll has no probe report")
		}
		return out.Probe
	}
	through := func(p probe.Path) bool { return p.From == target || p.To == target }

	t.Run("a restart with graceful restart loses nothing", func(t *testing.T) {
		r := restart(t)
		for _, p := range measure.PathsOf("udp", r) {
			if p.LongestOutageMs >= quiet {
				t.Errorf("path %s -> %s: outage %.0f ms during a graceful restart of %s", p.From, p.To, p.LongestOutageMs, target)
			}
		}
		t.Logf("graceful restart of %s: %d of %d probes lost, longest outage %.0f ms", target, r.Summary.Lost, r.Summary.Sent, r.Summary.LongestOutageMs)
	})

	noGR := strings.Replace(readFile(t, kubeRouterManifest(t, "v2.1.0")), "--bgp-graceful-restart=true", "--bgp-graceful-restart=false", 1)
	t.Run("an upgrade turns graceful restart off, node by node, measured", func(t *testing.T) {
		var out struct {
			Probe []*measure.Report `json:"probe"`
		}
		lifecycletest.HitlessJSON(t, env, &out, "upgrade", "-f", lifecycletest.WriteFile(t, "kube-router.yaml", noGR), "--name", "kube-router", "--probe")
		if len(out.Probe) == 0 || len(measure.PathsOf("udp", out.Probe[0])) == 0 {
			t.Fatalf("the upgrade has no probe report: %+v", out.Probe)
		}
		s := out.Probe[0].Summary
		t.Logf("upgrade to no graceful restart: %d of %d probes lost, longest outage %.0f ms (%s)", s.Lost, s.Sent, s.LongestOutageMs, s.WorstPath)
		env.WaitAgentPods(t)
	})

	t.Run("a restart without graceful restart is an outage on that node's paths only", func(t *testing.T) {
		r := restart(t)
		for _, p := range measure.PathsOf("udp", r) {
			switch {
			case through(p) && p.LongestOutageMs < 2000:
				t.Errorf("path %s -> %s through %s: outage %.0f ms; kube-router's peers withdraw its routes for seconds", p.From, p.To, target, p.LongestOutageMs)
			case !through(p) && p.LongestOutageMs >= quiet:
				t.Errorf("path %s -> %s does not cross %s but lost %.0f ms", p.From, p.To, target, p.LongestOutageMs)
			}
			t.Logf("restart of %s without graceful restart: %s -> %s lost %d, longest outage %.0f ms", target, p.From, p.To, p.Lost, p.LongestOutageMs)
		}
	})

	t.Run("a rollback brings graceful restart back", func(t *testing.T) {
		var out struct {
			Probe []*measure.Report `json:"probe"`
		}
		lifecycletest.HitlessJSON(t, env, &out, "rollback", "--name", "kube-router", "--probe")
		ds, err := cs.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-router", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if args := strings.Join(ds.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--bgp-graceful-restart=true") {
			t.Fatalf("after the rollback kube-router runs with %s", args)
		}
		if len(out.Probe) > 0 {
			s := out.Probe[0].Summary
			t.Logf("rollback: %d of %d probes lost, longest outage %.0f ms (%s)", s.Lost, s.Sent, s.LongestOutageMs, s.WorstPath)
		}
	})
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// missingRoutes lists, per lab node, the routes to other nodes' pod CIDRs
// via their addresses that its namespace lacks.
func missingRoutes(t *testing.T, labNodes []lab.Node, nodes []corev1.Node) []string {
	var missing []string
	for _, n := range labNodes {
		routes := nodeRoutes(t, n.Path())
		for _, other := range nodes {
			if other.Name == n.Name {
				continue
			}
			ip := ""
			for _, a := range other.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					ip = a.Address
				}
			}
			if gw := routes[other.Spec.PodCIDR]; gw != ip {
				missing = append(missing, fmt.Sprintf("node %s: route to %s (pod CIDR of %s) via %q, want via %s", n.Name, other.Spec.PodCIDR, other.Name, gw, ip))
			}
		}
	}
	return missing
}

// nodeRoutes maps each route's destination to its gateway in the
// namespace at path.
func nodeRoutes(t *testing.T, path string) map[string]string {
	t.Helper()
	h, err := lab.Netlink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range routes {
		if r.Dst != nil && r.Gw != nil {
			out[(&net.IPNet{IP: r.Dst.IP, Mask: r.Dst.Mask}).String()] = r.Gw.String()
		}
	}
	return out
}

package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/examples"
	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/binaries"
	"github.com/hitless-dev/hitless/internal/measure"
)

const (
	flannel       = "flannel"
	flannelDevice = "flannel.1"
	// notRoot is what the real data-plane steps say without root.
	notRoot = "skipped: a real data plane needs root (network namespaces); run the demo as root"
)

// realLab is the demo's second cluster, whose data plane is real: flannel,
// its flanneld run by the lab kubelet in every node's namespace.
type realLab struct {
	cluster *localcluster.Cluster
	client  kubernetes.Interface
	lc      lifecycle.Cluster
}

// RealName names the demo's real data-plane cluster beside cluster.
func RealName(cluster string) string {
	if len(cluster) > 36 {
		cluster = cluster[:36]
	}
	return strings.TrimSuffix(cluster, "-") + "-cni"
}

// startReal reuses or starts a 3-node lab with --dataplane cni and
// installs flannel on it with hitless: every number the next steps print
// is a real data plane's.
func startReal(ctx context.Context, s *state) (string, error) {
	if os.Geteuid() != 0 {
		return notRoot, nil
	}
	if s.opts.Binary == "" {
		return "", errors.New("the real data plane needs the hitless binary for its lab kubelet (Options.Binary)")
	}
	home, err := localcluster.Home()
	if err != nil {
		return "", err
	}
	name := RealName(s.opts.Cluster)
	c, err := localcluster.Get(home, name)
	how := "reused running cluster"
	switch {
	case err == nil && c.Running() && c.LabKubelet != nil:
	case err == nil || errors.Is(err, localcluster.ErrNotFound):
		if err == nil { // stopped, or not a real lab: start it afresh
			if err := localcluster.Down(ctx, home, name); err != nil {
				return "", err
			}
		}
		c, err = localcluster.Up(ctx, localcluster.Options{Name: name, Nodes: 2, ControlPlaneNodes: 1, Home: home, Progress: s.opts.Progress,
			Lab: localcluster.LabCNI, KubeletBinary: s.opts.Binary, LabImages: s.opts.LabImages})
		if err != nil {
			return "", err
		}
		how = "started cluster"
	default:
		return "", err
	}
	cs, cfg, err := c.Client()
	if err != nil {
		return "", err
	}
	s.real = &realLab{cluster: c, client: cs, lc: lifecycle.Cluster{Client: cs, Config: cfg}}
	revs, err := release.NewStore(cs).List(ctx, flannel)
	if err != nil {
		return "", err
	}
	installed := "installed earlier"
	if release.Current(revs) == nil {
		src, err := writeExample(c.Dir, examples.FlannelLab)
		if err != nil {
			return "", err
		}
		loaded, err := component.Load(src)
		if err != nil {
			return "", err
		}
		if _, err := lifecycle.Install(ctx, s.real.lc, lifecycle.Options{Name: flannel, Source: loaded, Command: "hitless demo", Wait: 3 * time.Minute}); err != nil {
			return "", err
		}
		installed = "installed by hitless"
	}
	if err := c.WaitAgents(ctx, 2*time.Minute); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %q: %d nodes; flannel %s (flanneld %s, the real daemon, VXLAN) in every node's namespace; pods wired by the CNI plugins; %d agents probing pod to pod over it",
		how, name, len(c.Lab.Nodes), installed, binaries.FlannelVersion, len(c.Lab.Nodes)), nil
}

// upgradeFlannel upgrades flannel (a change of flanneld's flags) node by
// node with the agents probing: the loss printed is the real data
// plane's.
func upgradeFlannel(ctx context.Context, s *state) (string, error) {
	if s.real == nil {
		return notRoot, nil
	}
	revs, err := release.NewStore(s.real.client).List(ctx, flannel)
	if err != nil {
		return "", err
	}
	if cur := release.Current(revs); cur != nil && cur.Number > 1 {
		return fmt.Sprintf("revision %d already deployed by an earlier run: left as is", cur.Number), nil
	}
	src, err := writeExample(s.real.cluster.Dir, examples.FlannelLab)
	if err != nil {
		return "", err
	}
	// The new release: flanneld re-checks its iptables rules every 10 s
	// instead of 5 s, so that every node's flanneld restarts.
	next := filepath.Join(s.real.cluster.Dir, "flannel-lab-next")
	if err := rewrite(src, next, "--iface=eth0]", "--iface=eth0, --iptables-resync=10]"); err != nil {
		return "", err
	}
	loaded, err := component.Load(next)
	if err != nil {
		return "", err
	}
	res, rep, nodes, err := s.measuredUpgrade(ctx, s.real.client, s.real.lc, flannel, loaded)
	if err != nil {
		return "", err
	}
	s.realReport = filepath.Join(s.real.cluster.Dir, "disruption-report.html")
	if err := s.writeReport(s.realReport, rep); err != nil {
		return "", err
	}
	sm := rep.Summary
	return fmt.Sprintf("revision %d: flanneld --iptables-resync=10; %d nodes rolled one at a time; %d of %d pod-to-pod probes lost, longest outage %.0f ms (measured, not modeled); report %s",
		res.Revision, nodes, sm.Lost, sm.Sent, sm.LongestOutageMs, s.realReport), nil
}

// flannelFault deletes flannel's VXLAN device on one node while the
// agents probe: an outage on that node's paths only, and the report names
// the node. flanneld (v0.27.4) recreates the device, routes and neighbours.
func flannelFault(ctx context.Context, s *state) (string, error) {
	if s.real == nil {
		return notRoot, nil
	}
	target := s.real.cluster.Lab.Nodes[len(s.real.cluster.Lab.Nodes)-1].Name
	type result struct {
		rep *measure.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := measure.Run(ctx, s.real.client, measure.Options{Rate: 100, Duration: 10 * time.Second})
		done <- result{rep, err}
	}()
	time.Sleep(3 * time.Second)
	if err := s.real.cluster.Inject(ctx, localcluster.Fault{Node: target, Kind: "delete-link", Link: flannelDevice}); err != nil {
		<-done
		return "", err
	}
	s.progressf("    %s deleted %s on %s (hitless cluster fault --node %s delete-link %s)", time.Now().Format("15:04:05.000"), flannelDevice, target, target, flannelDevice)
	r := <-done
	if r.err != nil {
		return "", r.err
	}
	if err := s.writeReport(filepath.Join(s.real.cluster.Dir, "fault-report.html"), r.rep); err != nil {
		return "", err
	}
	through, elsewhere, paths := 0.0, 0.0, 0
	for _, p := range measure.PathsOf("udp", r.rep) {
		if p.From == target || p.To == target {
			through = max(through, p.LongestOutageMs)
			paths++
		} else {
			elsewhere = max(elsewhere, p.LongestOutageMs)
		}
	}
	at := "no single node named"
	if r.rep.Summary.LossAt != "" {
		at = "the report: the loss was at node " + r.rep.Summary.LossAt
	}
	return fmt.Sprintf("%s deleted on %s: %.1f s without reach on its %d pod paths, longest gap elsewhere %.0f ms; %s; flanneld put the device back",
		flannelDevice, target, through/1000, paths, elsewhere, at), nil
}

// rewrite copies the manifests of dir into out with old replaced by new
// (once in all); it fails when old is nowhere.
func rewrite(dir, out, old, new string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	found := false
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name())) //nolint:gosec // the demo's own example
		if err != nil {
			return err
		}
		text := string(b)
		if !found && strings.Contains(text, old) {
			text, found = strings.Replace(text, old, new, 1), true
		}
		if err := os.WriteFile(filepath.Join(out, e.Name()), []byte(text), 0o600); err != nil {
			return err
		}
	}
	if !found {
		return fmt.Errorf("%s does not contain %q", dir, old)
	}
	return nil
}

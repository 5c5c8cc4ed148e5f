package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
	"github.com/hitless-dev/hitless/internal/localcluster/kubelet"
	"github.com/hitless-dev/hitless/internal/measure"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

var floorFor = flag.Duration("floor", 60*time.Second, "how long the idle noise floor is probed")

func TestMain(m *testing.M) {
	if os.Getenv(clustertest.EnvRunCLI) == "1" {
		os.Exit(app.Main())
	}
	os.Exit(m.Run())
}

const flannel = "../../../../examples/flannel-lab/kube-flannel.yaml"

// row is one lab measured.
type row struct {
	mode     string
	nodes    int
	up       time.Duration // cluster up returned
	probing  time.Duration // from the start until every agent reports (cni: on the pod network)
	rssMiB   float64       // every process of the cluster, control plane included
	labMiB   float64       // the lab kubelet and its containers (cni), or the agents (netns)
	procs    int
	sample   int // peers per agent; 0 for all
	sent     int64
	lost     int64
	longest  float64
	loadNote string
}

// BenchmarkLab starts labs of 3, 10 and 20 nodes (workers plus one
// control-plane node) with the modeled data plane and with flannel's real
// one, and prints side by side: start time, time until every agent
// probes, memory, and the idle noise floor over -floor (60 s): probes
// lost and the longest gap on any path. At 20 nodes every agent probing
// every peer at 100/s is 38,000 probes a second on the machine; a second
// floor there probes 4 peers per agent (--sample 4).
func BenchmarkLab(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the lab needs root")
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	// The cluster's processes (the lab kubelet, agents) run this binary
	// as the CLI.
	b.Setenv(clustertest.EnvRunCLI, "1")
	var rows []row
	for i := 0; i < b.N; i++ {
		for _, n := range []int{3, 10, 20} {
			for _, mode := range []string{localcluster.LabNetNS, localcluster.LabCNI} {
				rows = append(rows, measureLab(b, self, mode, n)...)
			}
		}
	}
	fmt.Printf("\nLAB (%d CPUs; idle floor over %s)\n", runtime.NumCPU(), *floorFor)
	fmt.Printf("%-32s %5s %8s %9s %8s %8s %6s %7s %9s %6s %7s %s\n", "DATA PLANE", "NODES", "UP", "PROBING", "RSS MiB", "LAB MiB", "PROCS", "PEERS", "SENT", "LOST", "GAP MS", "LOAD")
	for _, r := range rows {
		peers := "all"
		if r.sample > 0 {
			peers = strconv.Itoa(r.sample)
		}
		fmt.Printf("%-32s %5d %8s %9s %8.0f %8.0f %6d %7s %9d %6d %7.0f %s\n", r.mode, r.nodes, r.up.Round(100*time.Millisecond), r.probing.Round(100*time.Millisecond),
			r.rssMiB, r.labMiB, r.procs, peers, r.sent, r.lost, r.longest, r.loadNote)
	}
}

func measureLab(b *testing.B, self, mode string, nodes int) []row {
	b.Helper()
	ctx := context.Background()
	home := b.TempDir()
	name := fmt.Sprintf("b%d%s%d", os.Getpid()%10000, mode[:1], nodes)
	opts := localcluster.Options{Name: name, Nodes: nodes - 1, ControlPlaneNodes: 1, Home: home, Attached: true, Lab: mode}
	label := "netns (model: link follows pod)"
	if mode == localcluster.LabCNI {
		label = "cni + flannel (real)"
		opts.KubeletBinary = self
		opts.LabImages = []kubelet.Image{clustertest.HitlessImage(self)}
	} else {
		opts.AgentBinary = self
	}
	start := time.Now()
	c, err := localcluster.Up(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = localcluster.Down(ctx, home, name) }()
	r := row{mode: label, nodes: nodes, up: time.Since(start)}
	cli := func(out any, args ...string) {
		b.Helper()
		var stdout, stderr bytes.Buffer
		code := app.Run(ctx, "hitless", append([]string{"--kubeconfig", c.Kubeconfig}, args...), genericiooptions.IOStreams{In: strings.NewReader(""), Out: &stdout, ErrOut: &stderr})
		if code != 0 {
			b.Fatalf("hitless %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
		}
		if out != nil {
			if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
				b.Fatal(err)
			}
		}
	}
	if mode == localcluster.LabCNI {
		cli(nil, "install", "-f", flannel, "--name", "flannel", "-o", "json")
	}
	// Agents publish their report once they run (under cni, once
	// flannel wired their pods).
	if err := c.WaitAgents(ctx, 5*time.Minute); err != nil {
		b.Fatalf("%d agents probing: %v", nodes, err)
	}
	r.probing = time.Since(start)
	r.rssMiB, r.labMiB, r.procs = memory(b, mode)
	samples := []int{0}
	if nodes >= 20 {
		samples = append(samples, 4)
	}
	var out []row
	for _, sample := range samples {
		f := r
		f.sample = sample
		load := agent.LoadAverage("/proc")
		var rep measure.Report
		cli(&rep, "probe", "run", "--duration", floorFor.String(), "--sample", strconv.Itoa(sample), "-o", "json")
		for _, p := range measure.PathsOf("udp", &rep) {
			f.sent += p.Sent
			f.lost += p.Lost
			f.longest = max(f.longest, p.LongestOutageMs)
		}
		f.loadNote = fmt.Sprintf("load %.2f -> %.2f", load, agent.LoadAverage("/proc"))
		out = append(out, f)
	}
	return out
}

// memory sums the resident memory of this process's descendants (the
// cluster's processes: Attached), and of the lab's part of them: the lab
// kubelet's subtree (cni) or the agents (netns).
func memory(b *testing.B, mode string) (all, lab float64, procs int) {
	b.Helper()
	parent := map[int]int{}
	rss := map[int]float64{}
	cmd := map[int]string{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(st))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) >= 2 && f[0] == "PPid:":
				parent[pid], _ = strconv.Atoi(f[1])
			case len(f) >= 2 && f[0] == "VmRSS:":
				kb, _ := strconv.ParseFloat(f[1], 64)
				rss[pid] = kb / 1024
			}
		}
		c, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		cmd[pid] = strings.ReplaceAll(string(c), "\x00", " ")
	}
	self := os.Getpid()
	under := func(pid, root int) bool {
		for p := parent[pid]; p > 1; p = parent[p] {
			if p == root {
				return true
			}
		}
		return false
	}
	labRoots := map[int]bool{}
	for pid, c := range cmd {
		if under(pid, self) && ((mode == localcluster.LabCNI && strings.Contains(c, "cluster kubelet")) || (mode == localcluster.LabNetNS && strings.Contains(c, " agent "))) {
			labRoots[pid] = true
		}
	}
	for pid, m := range rss {
		if !under(pid, self) {
			continue
		}
		all += m
		procs++
		if labRoots[pid] {
			lab += m
			continue
		}
		for root := range labRoots {
			if under(pid, root) {
				lab += m
				break
			}
		}
	}
	return all, lab, procs
}

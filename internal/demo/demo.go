package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/hitless-dev/hitless/examples"
	"github.com/hitless-dev/hitless/internal/check/profile"
	"github.com/hitless-dev/hitless/internal/component/apply"
	"github.com/hitless-dev/hitless/internal/component/manifest"
	knode "github.com/hitless-dev/hitless/internal/kube/node"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/kubelet"
)

// Options configure a demo run.
type Options struct {
	Cluster string // local cluster name
	Nodes   int    // workers, when the cluster is created
	// Binary is the hitless binary the real data plane's lab kubelet
	// runs (as root: the demo's last steps); LabImages are added to its
	// table of images.
	Binary    string
	LabImages []kubelet.Image
	// Progress receives a line as each step starts and ends. May be nil.
	Progress io.Writer
}

// StepResult is one finished step.
type StepResult struct {
	Name     string        `json:"name"`
	Detail   string        `json:"detail"`
	Duration time.Duration `json:"durationNs"`
}

// Result is what the demo did and what to try next.
type Result struct {
	Cluster    string       `json:"cluster"`
	Kubeconfig string       `json:"kubeconfig"`
	Steps      []StepResult `json:"steps"`
	// Report is the disruption report of the data-plane upgrade (HTML).
	Report string `json:"report,omitempty"`
	// RealReport is the report of the real data plane's upgrade.
	RealReport string   `json:"realReport,omitempty"`
	Next       []string `json:"next"`
}

// state is what steps share.
type state struct {
	opts    Options
	cluster *localcluster.Cluster
	client  kubernetes.Interface
	config  *rest.Config
	// stopAgents stops the node agents the demo started.
	stopAgents func()
	report     string
	real       *realLab
	realReport string
}

// step is one stage of the demo. Later capabilities add steps here.
type step struct {
	name string
	run  func(ctx context.Context, s *state) (string, error)
}

func steps() []step {
	return []step{
		{"local cluster", ensureCluster},
		{"install sample network plugin 1.0.0", installPlugin},
		{"install sample applications", installSet("sample-apps", examples.Apps)},
		{"inventory", inventory},
		{"node agents", startAgents},
		{"preflight with a planted problem", plantAndPreflight},
		{"fix the problem", fixPlanted},
		{"preflight", runChecks(profile.Preflight)},
		{"postflight", runChecks(profile.Postflight)},
		{"upgrade the plugin to 1.1.0 with a live customization, data plane node by node, measured (the vRouter a model)", upgradePlugin},
		{"a real data plane: flannel on a lab of its own", startReal},
		{"upgrade flannel node by node, measured on the real data plane", upgradeFlannel},
		{"a fault on the real data plane: flannel's VXLAN device deleted on one node", flannelFault},
	}
}

// Run executes every step in order and stops at the first failure.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.Cluster == "" {
		opts.Cluster = localcluster.DefaultName
	}
	if err := localcluster.ValidateName(opts.Cluster); err != nil {
		return nil, err
	}
	s := &state{opts: opts}
	defer func() {
		if s.stopAgents != nil {
			s.stopAgents()
		}
	}()
	res := &Result{Cluster: opts.Cluster}
	for i, st := range steps() {
		s.progressf("[%d/%d] %s ...", i+1, len(steps()), st.name)
		start := time.Now()
		detail, err := st.run(ctx, s)
		if err != nil {
			return res, fmt.Errorf("demo step %q: %w", st.name, err)
		}
		d := time.Since(start)
		res.Steps = append(res.Steps, StepResult{Name: st.name, Detail: detail, Duration: d})
		s.progressf("[%d/%d] %s: %s (%s)", i+1, len(steps()), st.name, detail, d.Round(100*time.Millisecond))
	}
	res.Kubeconfig = s.cluster.Kubeconfig
	res.Report = s.report
	res.RealReport = s.realReport
	res.Next = []string{
		"export KUBECONFIG=" + s.cluster.Kubeconfig,
		"kubectl get pods -A -o wide",
		"kubectl get globalvrouterconfigs,globalsystemconfigs",
		"hitless checks history",
		"hitless agent --node-name " + localcluster.WorkerName(s.cluster.Name, 1) + " --listen 127.0.0.1 --advertise 127.0.0.1 &",
		"hitless checks profiles cn2",
		"hitless preflight --profile cn2",
		"hitless history --name contrail",
		"hitless diff -f " + filepath.Join(s.cluster.Dir, examples.PluginV1) + " --name contrail",
		"hitless rollback --name contrail --dry-run",
		"hitless uninstall --name contrail --dry-run",
		"hitless probe run --duration 30s   (with agents running: hitless cluster up --dataplane netns runs them)",
		"hitless status",
		"hitless cluster down --name " + s.cluster.Name,
	}
	if s.real != nil {
		res.Next = append(res.Next,
			"export KUBECONFIG="+s.real.cluster.Kubeconfig+"   (the real data plane: flannel)",
			"hitless probe run --duration 10s",
			"hitless cluster fault --name "+s.real.cluster.Name+" --node "+s.real.cluster.Lab.Nodes[0].Name+" delete-link flannel.1",
			"hitless cluster down --name "+s.real.cluster.Name)
	}
	return res, nil
}

func (s *state) progressf(format string, args ...any) {
	if s.opts.Progress != nil {
		_, _ = fmt.Fprintf(s.opts.Progress, format+"\n", args...)
	}
}

// afresh starts the cluster o names after taking down any of that name.
func afresh(ctx context.Context, o localcluster.Options) (*localcluster.Cluster, error) {
	home, err := localcluster.Home()
	if err != nil {
		return nil, err
	}
	if err := localcluster.Down(ctx, home, o.Name); err != nil && !errors.Is(err, localcluster.ErrNotFound) {
		return nil, err
	}
	o.Home = home
	return localcluster.Up(ctx, o)
}

// ensureCluster reuses a running local cluster of the name or starts one.
func ensureCluster(ctx context.Context, s *state) (string, error) {
	home, err := localcluster.Home()
	if err != nil {
		return "", err
	}
	c, err := localcluster.Get(home, s.opts.Cluster)
	detail := "reused running cluster %q"
	switch {
	case err == nil && c.Running():
	case err == nil || errors.Is(err, localcluster.ErrNotFound):
		dataplane := localcluster.LabNone
		if os.Geteuid() == 0 {
			// Network namespaces need root; without them the probes
			// still run, on loopback.
			dataplane = localcluster.LabNetNS
		}
		c, err = localcluster.Up(ctx, localcluster.Options{
			Name: s.opts.Cluster, Nodes: s.opts.Nodes, ControlPlaneNodes: 1, Home: home, Progress: s.opts.Progress,
			Lab: dataplane,
		})
		if err != nil {
			return "", err
		}
		detail = "started cluster %q"
	default:
		return "", err
	}
	s.cluster = c
	cs, cfg, err := c.Client()
	if err != nil {
		return "", err
	}
	s.client, s.config = cs, cfg
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("listing nodes: %w", err)
	}
	ready := 0
	for i := range nodes.Items {
		if knode.Ready(&nodes.Items[i]) {
			ready++
		}
	}
	lab := "no netns data plane (needs root): probes run on loopback"
	if c.Lab != nil {
		lab = "a network namespace per node on bridge " + c.Lab.Bridge + " (in namespace " + c.Lab.Switch + ")"
	}
	return fmt.Sprintf(detail+", %d of %d nodes Ready, %s", c.Name, ready, len(nodes.Items), lab), nil
}

func installSet(set, dir string) func(ctx context.Context, s *state) (string, error) {
	return func(ctx context.Context, s *state) (string, error) {
		objs, err := manifest.ReadDir(examples.FS(), dir)
		if err != nil {
			return "", err
		}
		a, err := apply.New(s.config)
		if err != nil {
			return "", err
		}
		entries, err := a.Apply(ctx, manifest.Unstructured(objs), apply.Options{Set: set, Wait: 3 * time.Minute})
		if err != nil {
			return "", err
		}
		counts := map[string]int{}
		for _, e := range entries {
			counts[e.Action]++
		}
		return fmt.Sprintf("%d objects applied (%s), all ready", len(entries), summarize(counts)), nil
	}
}

func summarize(counts map[string]int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := ""
	for i, k := range keys {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%d %s", counts[k], k)
	}
	return out
}

// inventory counts what now runs, from the API.
func inventory(ctx context.Context, s *state) (string, error) {
	pods, err := s.client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("listing pods: %w", err)
	}
	running, byNS := 0, map[string]int{}
	for _, p := range pods.Items {
		if p.Status.Phase == "Running" {
			running++
			byNS[p.Namespace]++
		}
	}
	return fmt.Sprintf("%d pods Running (%s)", running, summarize(byNS)), nil
}

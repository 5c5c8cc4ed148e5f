package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/binaries"
	"github.com/hitless-dev/hitless/internal/localcluster/kubelet"
	"github.com/hitless-dev/hitless/internal/localcluster/openshift"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
)

// NewCommand returns the `cluster` command group.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Run local clusters: a real control plane with KWOK nodes on loopback",
		Long: `A local cluster is a real control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) with KWOK nodes, listening on
127.0.0.1 only. It backs the demo, the tests and the benchmarks.

The binaries are built from the pinned upstream modules on first use (a few
minutes, with a progress line) and cached; HITLESS_BIN_DIR points at prebuilt
ones. State lives under HITLESS_HOME (default ~/.local/state/hitless).`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return exitcode.BadInput(fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath()))
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newUp(streams), newDown(streams), newList(streams), newKubeconfig(streams), newBinaries(streams), newFault(streams), newSimulate(), newKubelet(), newEnter())
	return cmd
}

// classify maps core errors to exit codes: bad names, unknown or already
// existing clusters are bad input.
func classify(err error) error {
	var invalid *localcluster.InvalidError
	if errors.As(err, &invalid) || errors.Is(err, localcluster.ErrNotFound) || errors.Is(err, localcluster.ErrExists) {
		return exitcode.BadInput(err)
	}
	return err
}

func addName(cmd *cobra.Command, name *string) {
	cmd.Flags().StringVar(name, "name", localcluster.DefaultName, "Name of the local cluster")
}

func newUp(streams genericiooptions.IOStreams) *cobra.Command {
	var (
		opts      localcluster.Options
		labels    string
		labImages []string
		format    output.Format
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a local cluster and wait until every node is Ready",
		Example: `  hitless cluster up
  hitless cluster up --name big --nodes 100 --node-labels pool=blue,tier=edge
  export KUBECONFIG=$(hitless cluster kubeconfig)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := parseLabels(labels)
			if err != nil {
				return exitcode.BadInput(err)
			}
			opts.NodeLabels = l
			for _, s := range labImages {
				img, err := kubelet.ParseImage(s)
				if err != nil {
					return exitcode.BadInput(fmt.Errorf("--lab-image %w", err))
				}
				opts.LabImages = append(opts.LabImages, img)
			}
			opts.Progress = streams.ErrOut
			if opts.Lab != localcluster.LabNone || opts.Flavor == localcluster.FlavorOpenShift {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("finding the hitless binary for the lab agents and the simulator: %w", err)
				}
				switch opts.Lab {
				case localcluster.LabNetNS:
					opts.AgentBinary = exe
				case localcluster.LabCNI:
					opts.KubeletBinary = exe
				}
				opts.SimulatorBinary = exe
			}
			if opts.Flavor == localcluster.FlavorOpenShift && opts.OpenShiftCRDs == "" {
				if dir, err := upstream.Find(); err == nil {
					opts.OpenShiftCRDs = filepath.Join(dir, "openshift")
				}
			}
			start := time.Now()
			c, err := localcluster.Up(cmd.Context(), opts)
			if err != nil {
				return classify(err)
			}
			return output.Print(streams.Out, format, summarize(c), func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Cluster %q is up in %s: %d control-plane and %d worker nodes Ready.\n\n"+
					"  export KUBECONFIG=%s\n  kubectl get nodes\n  hitless cluster down --name %s\n",
					c.Name, time.Since(start).Round(100*time.Millisecond), c.Controls, c.Workers, c.Kubeconfig, c.Name)
				return err
			})
		},
	}
	addName(cmd, &opts.Name)
	cmd.Flags().IntVar(&opts.Nodes, "nodes", 3, "Number of worker nodes")
	cmd.Flags().IntVar(&opts.ControlPlaneNodes, "control-plane-nodes", 1, "Number of control-plane nodes (tainted NoSchedule)")
	cmd.Flags().StringVar(&labels, "node-labels", "", "Labels added to every worker node, as k=v,k2=v2")
	cmd.Flags().StringVar(&opts.Lab, "dataplane", "", "The packet lab (needs root): netns gives each node a network namespace with its InternalIP on a bridge and an agent, and models the data plane (a node's link follows its data-plane pod); cni runs real CNI daemons there instead (kube-router, and --lab-image), the agents as pods on the pod network")
	cmd.Flags().StringArrayVar(&labImages, "lab-image", nil, "With --dataplane cni: REPOSITORY=BINARY[:ENTRYPOINT], a daemon built on this machine that the lab kubelet runs for pods of that image (repeatable)")
	cmd.Flags().StringVar(&opts.Flavor, "flavor", "", "openshift: a rehearsal OpenShift SDN cluster (real OpenShift CRDs, its network objects, and a simulator, a model, of the network and machine-config operators) to rehearse migrations on")
	cmd.Flags().StringVar(&opts.OpenShiftCRDs, "openshift-crds", "", "Directory of openshift/api's CRD manifests for --flavor openshift (default: $HITLESS_TESTDATA/openshift, or ../shared/testdata/openshift beside the source tree)")
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

// newSimulate runs the OpenShift operators' simulator of a rehearsal
// cluster; cluster up starts it as one of the cluster's processes.
func newSimulate() *cobra.Command {
	var kubeconfig string
	var poll time.Duration
	cmd := &cobra.Command{
		Use:    "simulate --kubeconfig FILE",
		Short:  "Run the simulator (a model) of an OpenShift rehearsal cluster's network and machine-config operators",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return exitcode.BadInput(fmt.Errorf("--kubeconfig: %w", err))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return openshift.Simulate(ctx, cfg, poll)
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "The rehearsal cluster's kubeconfig")
	cmd.Flags().DurationVar(&poll, "poll", 250*time.Millisecond, "How often the simulator reads the cluster")
	return cmd
}

func newFault(streams genericiooptions.IOStreams) *cobra.Command {
	var name, node string
	cmd := &cobra.Command{
		Use:   "fault --node NODE (link-down DURATION | loss PERCENT% | restart-agent | delete-link DEVICE)",
		Short: "Inject a fault into a node of a local cluster's netns data plane",
		Long: `link-down takes the node's interface down for DURATION, then up again;
loss drops PERCENT of the packets the node receives, at random (nftables
numgen; "loss 0%" removes it); restart-agent restarts the node's agent;
delete-link deletes a device in the node's namespace (a real data plane's:
flannel.1 under --dataplane cni).`,
		Example: `  hitless cluster fault --node hitless-worker-2 link-down 2s
  hitless cluster fault --node hitless-worker-3 loss 5%
  hitless cluster fault --node hitless-worker-1 restart-agent
  hitless cluster fault --node hitless-worker-1 delete-link flannel.1`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFault(node, args)
			if err != nil {
				return exitcode.BadInput(err)
			}
			home, err := localcluster.Home()
			if err != nil {
				return err
			}
			c, err := localcluster.Get(home, name)
			if err != nil {
				return classify(err)
			}
			start := time.Now()
			if err := c.Inject(cmd.Context(), f); err != nil {
				return err
			}
			_, err = fmt.Fprintf(streams.Out, "%s on %s done at %s (took %s)\n", strings.Join(args, " "), node,
				time.Now().Format("15:04:05.000"), time.Since(start).Round(time.Millisecond))
			return err
		},
	}
	addName(cmd, &name)
	cmd.Flags().StringVar(&node, "node", "", "The lab node")
	return cmd
}

func parseFault(node string, args []string) (localcluster.Fault, error) {
	if len(args) == 0 {
		return localcluster.Fault{}, errors.New("name a fault: link-down DURATION, loss PERCENT, restart-agent or delete-link DEVICE")
	}
	f := localcluster.Fault{Node: node, Kind: args[0]}
	if node == "" {
		return f, errors.New("--node is required")
	}
	switch f.Kind {
	case "link-down":
		if len(args) != 2 {
			return f, errors.New("link-down needs a duration, e.g. 2s")
		}
		d, err := time.ParseDuration(args[1])
		if err != nil || d <= 0 || d > time.Hour {
			return f, fmt.Errorf("link-down duration %q: want a positive duration up to 1h", args[1])
		}
		f.Duration = d
	case "loss":
		if len(args) != 2 {
			return f, errors.New("loss needs a percentage, e.g. 5%")
		}
		p, err := strconv.Atoi(strings.TrimSuffix(args[1], "%"))
		if err != nil || p < 0 || p > 100 {
			return f, fmt.Errorf("loss %q: want 0%% to 100%%", args[1])
		}
		f.Percent = p
	case "restart-agent":
		if len(args) != 1 {
			return f, errors.New("restart-agent takes no value")
		}
	case "delete-link":
		if len(args) != 2 || args[1] == "" {
			return f, errors.New("delete-link needs a device name, e.g. flannel.1")
		}
		f.Link = args[1]
	default:
		return f, fmt.Errorf("unknown fault %q: want link-down, loss, restart-agent or delete-link", f.Kind)
	}
	return f, nil
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--node-labels: %q is not key=value", kv)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

func newDown(streams genericiooptions.IOStreams) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop every process of a local cluster and delete its state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			home, err := localcluster.Home()
			if err != nil {
				return err
			}
			if err := localcluster.Down(cmd.Context(), home, name); err != nil {
				return classify(err)
			}
			_, err = fmt.Fprintf(streams.Out, "Cluster %q deleted.\n", name)
			return err
		},
	}
	addName(cmd, &name)
	return cmd
}

func newKubeconfig(streams genericiooptions.IOStreams) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:     "kubeconfig",
		Short:   "Print the path of a local cluster's kubeconfig",
		Example: `  export KUBECONFIG=$(hitless cluster kubeconfig --name hitless)`,
		Args:    cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			home, err := localcluster.Home()
			if err != nil {
				return err
			}
			c, err := localcluster.Get(home, name)
			if err != nil {
				return classify(err)
			}
			_, err = fmt.Fprintln(streams.Out, c.Kubeconfig)
			return err
		},
	}
	addName(cmd, &name)
	return cmd
}

// Summary is the printed form of a local cluster.
type Summary struct {
	Name              string    `json:"name"`
	Status            string    `json:"status"`
	Workers           int       `json:"workers"`
	ControlPlaneNodes int       `json:"controlPlaneNodes"`
	Server            string    `json:"server"`
	Kubeconfig        string    `json:"kubeconfig"`
	Created           time.Time `json:"created"`
}

func summarize(c *localcluster.Cluster) Summary {
	status := "Stopped"
	if c.Running() {
		status = "Running"
	}
	return Summary{Name: c.Name, Status: status, Workers: c.Workers, ControlPlaneNodes: c.Controls, Server: c.Server, Kubeconfig: c.Kubeconfig, Created: c.Created}
}

func newList(streams genericiooptions.IOStreams) *cobra.Command {
	var format output.Format
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List local clusters",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			home, err := localcluster.Home()
			if err != nil {
				return err
			}
			cs, err := localcluster.List(home)
			if err != nil {
				return err
			}
			items := make([]Summary, 0, len(cs))
			for _, c := range cs {
				items = append(items, summarize(c))
			}
			return output.Print(streams.Out, format, map[string]any{"clusters": items}, func(w io.Writer) error {
				if len(items) == 0 {
					_, err := fmt.Fprintln(streams.ErrOut, "No local clusters. Start one with: hitless cluster up")
					return err
				}
				_, _ = fmt.Fprintln(w, "NAME\tSTATUS\tNODES\tSERVER\tAGE\tKUBECONFIG")
				for _, s := range items {
					_, _ = fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\n", s.Name, s.Status, s.Workers+s.ControlPlaneNodes, s.Server,
						duration.HumanDuration(time.Since(s.Created)), s.Kubeconfig)
				}
				return nil
			})
		},
	}
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

func newBinaries(streams genericiooptions.IOStreams) *cobra.Command {
	var format output.Format
	cmd := &cobra.Command{
		Use:   "binaries",
		Short: "Build (on first use) or locate the local cluster's binaries and print their paths",
		Long: `Builds the pinned etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kubectl and kwok binaries, and the packet lab's data plane
(kube-router and the CNI plugins bridge, host-local and loopback), if they
are not cached yet, and prints where they are. Run it once to warm a
machine or a CI cache.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := binaries.NewResolver(streams.ErrOut)
			if err != nil {
				return err
			}
			paths, err := r.Everything(cmd.Context())
			if err != nil {
				return err
			}
			names := make([]string, 0, len(paths))
			for n := range paths {
				names = append(names, n)
			}
			slices.Sort(names)
			return output.Print(streams.Out, format, paths, func(w io.Writer) error {
				_, _ = fmt.Fprintln(w, "BINARY\tPATH")
				for _, n := range names {
					_, _ = fmt.Fprintf(w, "%s\t%s\n", n, paths[n])
				}
				return nil
			})
		},
	}
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

package agent

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	core "github.com/hitless-dev/hitless/internal/measure/agent"
)

// NewCommand returns the `agent` command.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	var (
		opts          core.Options
		allowReboot   bool
		rebootCommand []string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: node checks, peer probes, API server and DNS reachability",
		Long: `Runs on one node (as the hitless-agent DaemonSet, or as a local process with
--node-name). It answers its peers' TCP and UDP probes, publishes a report for
its node in hitless-system, and answers every preflight and postflight with
fresh results: kernel options (k8s.io/system-validators) and modules for the
profile, resolv.conf, interface MTUs, memory, disk and CPUs, clock
synchronisation, the profile's ports, hugepages on DPDK nodes, and TCP and UDP
to every other agent, the API server and cluster DNS.

'hitless agent manifest' prints the DaemonSet and its RBAC.`,
		Example: `  hitless agent manifest --image registry.example.com/hitless:v0.1 | kubectl apply -f -
  hitless agent --node-name worker-1 --listen 127.0.0.1 --advertise 127.0.0.1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Node == "" {
				return exitcode.BadInput(fmt.Errorf("--node-name is required"))
			}
			cs, err := opcmd.Client(getter)
			if err != nil {
				return err
			}
			if allowReboot {
				opts.Rebooter = core.CommandRebooter{Command: rebootCommand}
			}
			return core.Run(cmd.Context(), cs, opts)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&opts.Node, "node-name", "", "The node this agent runs on")
	fs.StringVar(&opts.Root, "root", "/", "Where the host's / is mounted")
	fs.StringVar(&opts.Listen, "listen", "", "Address to answer peers on (default all)")
	fs.IntVar(&opts.TCPPort, "tcp-port", 0, "TCP port for peers (0: any free port)")
	fs.IntVar(&opts.UDPPort, "udp-port", 0, "UDP port for peers (0: any free port)")
	fs.StringVar(&opts.Advertise, "advertise", "", "Address peers reach this agent at (default the node's InternalIP)")
	fs.BoolVar(&opts.FollowDataPlane, "follow-data-plane", false, "Lab only: take the node's link down while its data-plane pod (DaemonSet annotated hitless.dev/data-plane=true) is not Ready")
	fs.StringVar(&opts.NetNS, "netns", "", "Network namespace (path) the agent's sockets live in; the API server is reached from the agent's own")
	fs.StringVar(&opts.HostNetNS, "host-netns", "", "Network namespace (path) of the host, where node checks read routes and node tasks remove devices (default: --netns, or the agent's own)")
	fs.BoolVar(&opts.AllowCleanup, "allow-cleanup", false, "Remove what a data plane left on the host (CNI configuration files in /etc/cni/net.d, network devices) when hitless's cutover asks (hitless.dev/task on the node)")
	fs.BoolVar(&allowReboot, "allow-reboot", false, "Reboot the host when hitless's reboot action asks (hitless.dev/reboot-request on the node, not yet rebooted since)")
	fs.StringSliceVar(&rebootCommand, "reboot-command", core.DefaultRebootCommand(), "Command that reboots the host (with --allow-reboot)")

	var mo core.ManifestOptions
	manifest := &cobra.Command{
		Use:   "manifest",
		Short: "Print the agent's DaemonSet, ServiceAccount and RBAC",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(streams.Out, core.Manifest(mo))
			return err
		},
	}
	manifest.Flags().StringVar(&mo.Image, "image", core.DefaultImage, "Agent image")
	manifest.Flags().BoolVar(&mo.PodNetwork, "pod-network", false, "Run the agents on the pod network: they probe each other pod to pod, through the CNI's data plane, instead of node to node (their node checks and tasks enter the host's network namespace, /proc/1/ns/net through hostPID)")
	cmd.AddCommand(manifest)
	return cmd
}

package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/output"
	core "github.com/hitless-dev/hitless/internal/demo"
	"github.com/hitless-dev/hitless/internal/localcluster"
)

// NewCommand returns the `demo` command.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var (
		opts   core.Options
		format output.Format
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Show hitless at work on a local cluster, from nothing",
		Long: `Brings up (or reuses) a local cluster, installs the sample network plugin
1.0.0 (shaped like Juniper CN2: controllers, a config store and a vRouter
DaemonSet as the data plane) and the sample applications it must not disrupt,
and prints what it did and what to try next. The vRouter is a model: in the
packet lab (as root) a node's link follows its pod. As root the demo then
brings up a second cluster whose data plane is real (flannel's flanneld in
every node's namespace), upgrades flannel node by node and deletes its VXLAN
device on one node, measuring both pod to pod.

The first run builds the pinned control-plane binaries (several minutes);
later runs take seconds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Progress = streams.ErrOut
			return runDemo(cmd.Context(), streams, format, "the real data plane's lab kubelet", "",
				func(ctx context.Context, binary string, _ func(string)) (*core.Result, error) {
					opts.Binary = binary
					return core.Run(ctx, opts)
				})
		},
	}
	cmd.AddCommand(newMigrate(streams), newCutover(streams))
	cmd.Flags().StringVar(&opts.Cluster, "name", localcluster.DefaultName, "Name of the local cluster to use or create")
	cmd.Flags().IntVar(&opts.Nodes, "nodes", 3, "Worker nodes, when the cluster is created")
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

// newMigrate returns `demo migrate`: seed 002 rehearsed on an OpenShift
// rehearsal cluster.
func newMigrate(streams genericiooptions.IOStreams) *cobra.Command {
	var (
		opts   core.MigrateOptions
		format output.Format
	)
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Rehearse seed 002 on an OpenShift rehearsal cluster (its operators simulated): migrate to OVN-Kubernetes, pause, resume, roll back",
		Long: `Starts (afresh) a local OpenShift SDN rehearsal cluster: the real OpenShift
CRDs, its network objects, and a simulator (a model, not OpenShift) of the
network and machine-config operators. Runs the built-in offline migration to
OVN-Kubernetes; an operator degrades mid-way (planted) and the plan pauses
before the next step naming it; once it is fixed the same command resumes
the migration to the end; then the documented rollback plan takes the
cluster back to OpenShift SDN. About three minutes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), streams, format, "the simulator",
				"Seed 002 on a rehearsal cluster (the OpenShift operators are simulated: a model, not OpenShift)",
				func(ctx context.Context, binary string, progress func(string)) (*core.Result, error) {
					opts.Binary, opts.Progress = binary, progress
					return core.RunMigrate(ctx, opts)
				})
		},
	}
	cmd.Flags().StringVar(&opts.Cluster, "name", "hitless-openshift", "Name of the rehearsal cluster (started afresh)")
	cmd.Flags().StringVar(&opts.CRDs, "openshift-crds", "", "Directory of openshift/api's CRD manifests (default: $HITLESS_TESTDATA/openshift, or ../shared/testdata/openshift beside the source tree)")
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

// newCutover returns `demo cutover`: a real lab moved from kube-router
// to flannel node by node, one node rolled back alone.
func newCutover(streams genericiooptions.IOStreams) *cobra.Command {
	var (
		opts   core.CutoverOptions
		format output.Format
	)
	cmd := &cobra.Command{
		Use:   "cutover",
		Short: "As root: move a real lab from kube-router to flannel node by node, probed pod to pod, one node rolled back alone",
		Long: `Starts (afresh) a 3-node packet lab whose data plane is real: kube-router
v2.1.0 run by the lab kubelet in every node's namespace, installed by hitless,
with an application under a PDB and hitless's agents probing pod to pod.
Runs the built-in plan cni-node-by-node to flannel (each node cordoned,
drained, cut over, verified, uncordoned), interrupts it once two nodes are
across, rolls one of them back alone, runs the same migration again to the
end, and prints the loss measured on each node's paths. Needs root; about
three minutes once the binaries are built.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), streams, format, "the lab kubelet",
				"kube-router to flannel, node by node, on real data planes (the lab's nodes are network namespaces)",
				func(ctx context.Context, binary string, progress func(string)) (*core.Result, error) {
					opts.Binary, opts.Progress = binary, progress
					return core.RunCutover(ctx, opts)
				})
		},
	}
	cmd.Flags().StringVar(&opts.Cluster, "name", "hitless-cutover", "Name of the lab cluster (started afresh)")
	cmd.Flags().StringVar(&opts.KubeRouter, "kube-router", "", "kube-router's release manifest (default: $HITLESS_TESTDATA/cni/kube-router/kubeadm-kuberouter-v2.1.0.yaml, or ../shared/testdata beside the source tree)")
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

// runDemo runs one demo with this binary (for what needs it: why) and
// prints its result, under title when there is one. Bad input exits 2.
func runDemo(ctx context.Context, streams genericiooptions.IOStreams, format output.Format, why, title string,
	run func(ctx context.Context, binary string, progress func(string)) (*core.Result, error)) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the hitless binary for %s: %w", why, err)
	}
	res, err := run(ctx, exe, func(line string) { _, _ = fmt.Fprintln(streams.ErrOut, line) })
	var invalid *localcluster.InvalidError
	if errors.As(err, &invalid) {
		return exitcode.BadInput(err)
	}
	if err != nil {
		return err
	}
	return output.Print(streams.Out, format, res, func(w io.Writer) error {
		if title != "" {
			_, _ = fmt.Fprintln(w, title)
		}
		printResult(w, res)
		return nil
	})
}

// printResult prints a demo's steps and what to try next.
func printResult(w io.Writer, res *core.Result) {
	_, _ = fmt.Fprintln(w, "STEP\tRESULT\tTOOK")
	for _, s := range res.Steps {
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\n", s.Name, s.Detail, s.Duration.Round(100*time.Millisecond))
	}
	_, _ = fmt.Fprintln(w, "\nTry next:")
	for _, n := range res.Next {
		_, _ = fmt.Fprintf(w, "  %s\n", n)
	}
}

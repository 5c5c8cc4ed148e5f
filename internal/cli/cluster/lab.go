package cluster

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/kubelet"
)

// newKubelet runs the lab kubelet of a local cluster; cluster up starts it
// as one of the cluster's processes.
func newKubelet() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "kubelet --dir CLUSTER_DIR",
		Short:  "Run the lab kubelet of a local cluster's packet lab: the real daemons of the pods whose images it knows",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := localcluster.Open(dir)
			if err != nil {
				return exitcode.BadInput(fmt.Errorf("--dir: %w", err))
			}
			if c.Lab == nil || c.LabKubelet == nil {
				return exitcode.BadInput(fmt.Errorf("--dir: cluster %q has no lab kubelet (start it with --dataplane cni)", c.Name))
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
			if err != nil {
				return fmt.Errorf("loading %s: %w", c.Kubeconfig, err)
			}
			cfg.QPS, cfg.Burst = 100, 200
			cs, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding the hitless binary: %w", err)
			}
			kc := *c.LabKubelet
			kc.Lab, kc.Self = c.Lab, self
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return kubelet.Run(ctx, cs, kc)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "The cluster's state directory")
	return cmd
}

// newEnter runs a container of the lab kubelet: it builds the container's
// root, enters the node's network namespace and runs the program.
func newEnter() *cobra.Command {
	return &cobra.Command{
		Use:    "enter SPEC",
		Short:  "Run a lab kubelet's container (in a mount namespace of its own)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := kubelet.ReadContainer(args[0])
			if err != nil {
				return exitcode.BadInput(err)
			}
			return kubelet.Enter(c)
		},
	}
}

package controller

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/klog/v2"

	"github.com/hitless-dev/hitless/config"
	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	core "github.com/hitless-dev/hitless/internal/controller"
	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// NewCommand returns `hitless controller`. NodeRolls and the Migrations'
// roll steps may name the built-in per-node actions (reboot and cutover
// too) but exec: a resource must not run a command in the controller's
// pod with the controller's credentials.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	actions := migrate.Actions().Without(roll.ActionExec)
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "The in-cluster controller: the same engines, driven by hitless.dev custom resources",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newRun(streams, getter, actions), newManifest(streams))
	return cmd
}

func newManifest(streams genericiooptions.IOStreams) *cobra.Command {
	var image, base string
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Print the controller's install manifests (kustomize build of config/)",
		Long: `Prints what installs the controller, rendered from the kustomize bases in
config/ (embedded in this binary): the hitless-system namespace, the
CustomResourceDefinitions, the controller's ServiceAccount and least-privilege
RBAC, its Deployment (two replicas, one leader), PodDisruptionBudget and
metrics Service.`,
		Example: `  hitless controller manifest --image registry.example.com/hitless:v0.4.0 | kubectl apply --server-side -f -
  hitless controller manifest --base crd`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			switch base {
			case "default", "crd", "rbac", "manager", "agent", "components":
			default:
				return exitcode.BadInput(fmt.Errorf("--base %q: want default, crd, rbac, manager, agent or components", base))
			}
			out, err := config.Render(base, image)
			if err != nil {
				return err
			}
			_, err = streams.Out.Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&image, "image", "", "the controller's image reference (default: the base's ghcr.io/hitless-dev/hitless:latest)")
	cmd.Flags().StringVar(&base, "base", "default", "what to render: default (everything but components), crd, rbac, manager, agent, or components (the opt-in rights a Component needs to deploy a plugin)")
	return cmd
}

func newRun(_ genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter, actions *roll.Actions) *cobra.Command {
	opts := core.Options{Actions: actions}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the controller until it is stopped (SIGTERM)",
		Long: `Runs the controller: it reconciles NodeRolls (hitless.dev/v1alpha1) with the
roll engine the CLI uses, one operation per cluster through the same lock,
journaled in hitless-system so that any crash is resumed by the next leader.

NodeRolls may name the per-node actions restart-daemonset, set-node-labels
and wait-node-annotation; not exec, which would run a command in the
controller's pod with the controller's credentials for whoever may create a
NodeRoll.

Inside a pod it uses the pod's ServiceAccount; outside, the kubeconfig.
Several replicas elect one leader (--leader-elect); the others wait.`,
		Example: `  hitless controller run --leader-elect --metrics-bind-address :8080 --health-probe-bind-address :8081`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := opcmd.Config(getter)
			if err != nil {
				return err
			}
			ctx := klog.NewContext(cmd.Context(), klog.Background().WithName("controller"))
			return core.Run(ctx, cfg, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.MetricsAddr, "metrics-bind-address", "0", "address of the Prometheus /metrics endpoint (\"0\" for none)")
	f.StringVar(&opts.HealthAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz (\"0\" for none)")
	f.BoolVar(&opts.LeaderElection, "leader-elect", true, "elect one leader among the controller's replicas")
	f.DurationVar(&opts.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long a leader's lease lasts without renewal")
	f.DurationVar(&opts.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader keeps trying to renew before it stops leading")
	f.DurationVar(&opts.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "how often candidates try to take the lead")
	f.StringVar(&opts.HookNamespace, "hook-namespace", core.DefaultHookNamespace, "the only namespace the job action and NodeRolls' Job hooks run Jobs in (the shipped RBAC grants Jobs there only)")
	f.DurationVar(&opts.MigrationRetry, "migration-retry", time.Minute, "how soon a Migration that a plan's gate or wait paused is run again (the cluster may have changed, not the resource)")
	f.DurationVar(&opts.ComponentResync, "component-resync", time.Minute, "how often a settled Component's source is read again (a ConfigMap edited in place, a tag moved in a registry)")
	return cmd
}

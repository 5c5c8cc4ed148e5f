package upgrade

import (
	"errors"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
)

// NewCommand returns the `upgrade` command.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	var (
		f  opcmd.ComponentFlags
		ic opcmd.InClusterFlags
	)
	cmd := &cobra.Command{
		Use:   "upgrade -f NEWSRC --name NAME [--from OLDSRC]",
		Short: "Upgrade a component with your customizations carried over; the data plane node by node",
		Long: `Upgrades an installed component to the release in NEWSRC.

Your customizations are ported three-way: what you changed against the
vendor manifests recorded for the deployed revision (read from the cluster's
field ownership: kubectl edit, patch, label, set; or from --from, your edited
copy of the old release) is merged into the new vendor manifests. A field
both you and the vendor changed is a conflict: the upgrade stops and lists
both values, unless --prefer vendor or --prefer user says who wins.

Data-plane DaemonSets (--data-plane, annotated hitless.dev/data-plane=true, or
on the host network on every node) are switched to OnDelete, then each node is
drained (PodDisruptionBudgets respected), its pod replaced and waited Ready,
and uncordoned, --batch nodes at a time, in --node-selector groups; then the
vendor's update strategy is restored. --probe measures the disruption.

Every object is backed up before it changes (in the cluster; --backup-dir also
writes a 0600 file); what the new release no longer has is pruned. A crash is
resumed by running the same command again.`,
		Example: `  hitless upgrade -f ./sample-plugin/v2 --name contrail --dry-run
  hitless upgrade -f ./sample-plugin/v2 --name contrail --prefer user --backup-dir ./backups
  hitless upgrade -f ./v2 --name contrail --node-selector zone=a --node-selector zone=b --batch 2 --probe --max-outage 3s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ic.Enabled {
				return opcmd.RunComponentInCluster(cmd, streams, getter, &f, ic)
			}
			if ic.RollbackOnBreach {
				return exitcode.BadInput(errors.New("--rollback-on-breach is for --in-cluster"))
			}
			return opcmd.RunComponent(cmd, streams, getter, &f, lifecycle.Upgrade)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.Source, "filename", "f", "", "The new release's manifests: a file, a directory of YAML, a kustomization directory, or a Helm chart (directory or .tgz)")
	fs.StringVar(&f.From, "from", "", "Your customized copy of the deployed release; without it the customizations are read from the cluster")
	fs.BoolVar(&f.Options.DryRun, "dry-run", false, "Print the plan, the customizations carried and the conflicts; change nothing")
	opcmd.AddComponentFlags(fs, &f, true)
	opcmd.AddInClusterFlags(cmd, &ic)
	opcmd.AddChartFlags(fs, &f, true)
	opcmd.AddPreferFlag(fs, &f)
	return cmd
}

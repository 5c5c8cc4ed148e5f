package rollback

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
)

// NewCommand returns the `rollback` command.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	var f opcmd.ComponentFlags
	cmd := &cobra.Command{
		Use:   "rollback --name NAME [--revision N]",
		Short: "Go back to an earlier revision's release, customizations kept, and prune what it did not have",
		Long: `Re-deploys the release of revision N (default: the one before the deployed
revision) as a new revision, with your customizations carried over the same
way as an upgrade, the data plane node by node, and prunes the objects
revision N did not have. See hitless history for the revisions.`,
		Example: `  hitless rollback --name contrail
  hitless rollback --name contrail --revision 1 --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return opcmd.RunComponent(cmd, streams, getter, &f, lifecycle.Rollback)
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&f.Options.Revision, "revision", 0, "Revision to go back to (default: the previous one)")
	fs.BoolVar(&f.Options.DryRun, "dry-run", false, "Print the plan and change nothing")
	opcmd.AddComponentFlags(fs, &f, true)
	opcmd.AddPreferFlag(fs, &f)
	return cmd
}

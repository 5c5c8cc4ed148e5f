package diff

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
)

// NewCommand returns the `diff` command.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	var f opcmd.ComponentFlags
	cmd := &cobra.Command{
		Use:   "diff -f NEWSRC --name NAME",
		Short: "Show exactly what an upgrade (or install) to NEWSRC would change, Secret values masked",
		Long: `Ports your customizations into NEWSRC as an upgrade would, then dry-runs every
object on the API server (server-side apply) and prints a unified diff of each
object that would change, the objects that would be created and those that
would be pruned, with the customizations carried and any conflicts. Secret
values are never printed. Nothing changes.`,
		Example: `  hitless diff -f ./sample-plugin/v2 --name contrail`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return opcmd.RunComponent(cmd, streams, getter, &f, lifecycle.Diff)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.Source, "filename", "f", "", "The release's manifests: a file, a directory of YAML, a kustomization directory, or a Helm chart (directory or .tgz)")
	fs.StringVar(&f.From, "from", "", "Your customized copy of the deployed release; without it the customizations are read from the cluster")
	fs.StringArrayVar(&f.Options.DataPlane, "data-plane", nil, "DaemonSet NAMESPACE/NAME updated node by node (repeatable)")
	opcmd.AddVersionFlags(fs, &f)
	opcmd.AddComponentFlags(fs, &f, false)
	opcmd.AddChartFlags(fs, &f, true)
	opcmd.AddPreferFlag(fs, &f)
	return cmd
}

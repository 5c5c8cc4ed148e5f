package install

import (
	"errors"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
)

// NewCommand returns the `install` command.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	var (
		f  opcmd.ComponentFlags
		ic opcmd.InClusterFlags
	)
	cmd := &cobra.Command{
		Use:   "install -f SRC --name NAME",
		Short: "Install a component: validate, back up, apply in dependency order, wait until ready",
		Long: `Installs a component from a file, a directory of YAML or a kustomization
directory, as revision 1 (or the next revision after an uninstall).

Before any change every document is parsed and validated against the
cluster: kinds served (or defined by the component's CRDs), namespaces that
exist or come with the component, no object twice, every image at one
release (--allow-mixed-versions to accept more), and a free pod slot on every
node. Bad manifests exit 2 naming file, document, object and field.

Then, each step journaled in the cluster before it acts: back up, apply with
server-side apply (CRDs, namespaces, RBAC and configuration; then workloads,
waited for with kstatus; then webhooks and APIServices, reported unavailable
rather than waited on), record the revision. A crash is resumed by running the
same command again.`,
		Example: `  hitless install -f ./sample-plugin/v1 --name contrail
  hitless install -f antrea.yml --name antrea --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ic.Enabled {
				return opcmd.RunComponentInCluster(cmd, streams, getter, &f, ic)
			}
			if ic.RollbackOnBreach {
				return exitcode.BadInput(errors.New("--rollback-on-breach is for --in-cluster"))
			}
			return opcmd.RunComponent(cmd, streams, getter, &f, lifecycle.Install)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.Source, "filename", "f", "", "The component's manifests: a file, a directory of YAML, a kustomization directory, or a Helm chart (directory or .tgz)")
	fs.BoolVar(&f.Options.DryRun, "dry-run", false, "Print the plan and what each object would become, change nothing")
	opcmd.AddComponentFlags(fs, &f, true)
	opcmd.AddInClusterFlags(cmd, &ic)
	opcmd.AddChartFlags(fs, &f, false)
	return cmd
}

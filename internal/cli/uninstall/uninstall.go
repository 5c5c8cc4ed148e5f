package uninstall

import (
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
)

// NewCommand returns the `uninstall` command.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	var f opcmd.ComponentFlags
	cmd := &cobra.Command{
		Use:   "uninstall --name NAME",
		Short: "Delete exactly the component's inventory, in reverse dependency order",
		Long: `Deletes every object of the component's inventory and nothing else, each
backed up first: webhooks and APIServices (so nothing hangs on a server that
is going away), workloads, custom resources (waiting for their finalizers up
to --finalizer-timeout and naming the stuck ones), CRDs, configuration, RBAC,
namespaces, and cluster-scoped configuration last.

It refuses, changing nothing, when the component's namespaces hold objects it
did not create (your overlay networks, your Secrets) and lists them;
--force-namespaces deletes them with the namespaces. The report says what was
deleted and what remains; running it again continues.`,
		Example: `  hitless uninstall --name contrail --dry-run
  hitless uninstall --name contrail --force-namespaces --backup-dir ./backups`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return opcmd.RunComponent(cmd, streams, getter, &f, lifecycle.Uninstall)
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&f.Options.DryRun, "dry-run", false, "Print what would be deleted, in order, and change nothing")
	fs.BoolVar(&f.Options.ForceNamespaces, "force-namespaces", false, "Delete the component's namespaces even with objects outside its inventory in them")
	fs.DurationVar(&f.Options.FinalizerTimeout, "finalizer-timeout", 2*time.Minute, "How long to wait for each group of deleted objects to go")
	fs.StringVar(&f.BackupDir, "backup-dir", "", "Also write the objects backed up to a 0600 file in this directory")
	opcmd.AddComponentFlags(fs, &f, false)
	return cmd
}

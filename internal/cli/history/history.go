package history

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
)

// NewCommand returns the `history` command.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	var f opcmd.ComponentFlags
	cmd := &cobra.Command{
		Use:   "history --name NAME",
		Short: "List a component's revisions: status, action, objects, customizations carried",
		Example: `  hitless history --name contrail
  hitless history --name contrail -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := opcmd.Config(getter)
			if err != nil {
				return err
			}
			cs, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			entries, err := lifecycle.History(cmd.Context(), lifecycle.Cluster{Client: cs, Config: cfg}, f.Options.Name)
			if err != nil {
				return opcmd.ClassifyComponent(err)
			}
			return output.Print(streams.Out, f.Format, entries, func(w io.Writer) error {
				tw := printers.GetNewTabWriter(w)
				_, _ = fmt.Fprintln(tw, "REVISION\tSTATUS\tACTION\tUPDATED\tOBJECTS\tCUSTOMIZATIONS\tSOURCE\tOPERATION")
				for _, e := range entries {
					action := e.Action
					if e.RollbackTo > 0 {
						action = fmt.Sprintf("rollback to %d", e.RollbackTo)
					}
					_, _ = fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", e.Revision, e.Status, action, e.Updated.Local().Format(time.DateTime), e.Objects, len(e.Carried), e.Source, e.Operation)
				}
				return tw.Flush()
			})
		},
	}
	opcmd.AddComponentFlags(cmd.Flags(), &f, false)
	return cmd
}

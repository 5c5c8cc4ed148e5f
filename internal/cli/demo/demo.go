package demo

import (
	"errors"
	"fmt"
	"io"
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
and prints what it did and what to try next.

The first run builds the pinned control-plane binaries (several minutes);
later runs take seconds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Progress = streams.ErrOut
			res, err := core.Run(cmd.Context(), opts)
			var invalid *localcluster.InvalidError
			if errors.As(err, &invalid) {
				return exitcode.BadInput(err)
			}
			if err != nil {
				return err
			}
			return output.Print(streams.Out, format, res, func(w io.Writer) error {
				_, _ = fmt.Fprintln(w, "STEP\tRESULT\tTOOK")
				for _, s := range res.Steps {
					_, _ = fmt.Fprintf(w, "%s\t%s\t%s\n", s.Name, s.Detail, s.Duration.Round(100*time.Millisecond))
				}
				_, _ = fmt.Fprintln(w, "\nTry next:")
				for _, n := range res.Next {
					_, _ = fmt.Fprintf(w, "  %s\n", n)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&opts.Cluster, "name", localcluster.DefaultName, "Name of the local cluster to use or create")
	cmd.Flags().IntVar(&opts.Nodes, "nodes", 3, "Worker nodes, when the cluster is created")
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

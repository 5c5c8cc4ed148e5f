package abort

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/engine/operation"
)

// NewCommand returns the `abort` command; kinds knows how to undo each
// kind of operation.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter, kinds *operation.Registry) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "abort ID",
		Short: "Stop an operation cleanly: undo what it did (uncordon what hitless cordoned, restore what a component operation changed) and release the lock",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := opcmd.Config(getter)
			if err != nil {
				return err
			}
			cs, err := opcmd.Client(getter)
			if err != nil {
				return err
			}
			op, err := kinds.Abort(cmd.Context(), operation.Cluster{Client: cs, Config: cfg}, args[0], opcmd.CommandLine(cmd), wait)
			if errors.Is(err, operation.ErrFinished) || errors.Is(err, operation.ErrUnknownKind) {
				return exitcode.BadInput(err)
			}
			if err != nil {
				return opcmd.Classify(err)
			}
			_, err = fmt.Fprintf(streams.Out, "Operation %s (%s) aborted: what it did is undone (nodes hitless had cordoned are uncordoned) and the lock is free.\n", op.ID, op.Kind)
			return err
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", time.Minute, "How long to wait for the running process to stop")
	return cmd
}

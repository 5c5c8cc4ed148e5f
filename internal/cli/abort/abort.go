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
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// NewCommand returns the `abort` command.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "abort ID",
		Short: "Stop an operation cleanly: uncordon what hitless cordoned and release the lock",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := opcmd.Client(getter)
			if err != nil {
				return err
			}
			op, err := roll.Abort(cmd.Context(), cs, args[0], opcmd.CommandLine(), wait)
			if errors.Is(err, roll.ErrFinished) {
				return exitcode.BadInput(err)
			}
			if err != nil {
				return opcmd.Classify(err)
			}
			_, err = fmt.Fprintf(streams.Out, "Operation %s aborted; nodes hitless had cordoned are uncordoned and the lock is free.\n", op.ID)
			return err
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", time.Minute, "How long to wait for the running process to stop")
	return cmd
}

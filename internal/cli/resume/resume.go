package resume

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// NewCommand returns the `resume` command.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter, actions *roll.Actions) *cobra.Command {
	var (
		format output.Format
		yes    bool
	)
	cmd := &cobra.Command{
		Use:   "resume ID",
		Short: "Continue an unfinished operation from its journal",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := opcmd.Client(getter)
			if err != nil {
				return err
			}
			op, err := journal.NewStore(cs).Get(cmd.Context(), args[0])
			if err != nil {
				return opcmd.Classify(err)
			}
			if !op.Status.Resumable() {
				return exitcode.BadInput(&resumeError{id: op.ID, status: string(op.Status)})
			}
			spec, err := roll.SpecOf(op)
			if err != nil {
				return exitcode.BadInput(err)
			}
			opts := roll.Options{Spec: spec, Command: opcmd.CommandLine(), Approver: opcmd.NewTerminal(streams.In, streams.ErrOut, yes), Actions: actions}
			return opcmd.RunRoll(cmd.Context(), streams, cs, opts, format, opcmd.Probing{OnBudget: "pause"})
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "Continue after the canary without asking")
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

type resumeError struct{ id, status string }

func (e *resumeError) Error() string {
	return "operation " + e.id + " is " + e.status + ": nothing to resume"
}

package resume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/operation"
)

// Rerun runs a command line of this program (without its name).
type Rerun func(ctx context.Context, args []string) error

// FromSpec resumes an operation of one kind from its journaled spec: for
// operations a library started (the controller, a test), whose journal
// holds no command line to run again.
type FromSpec func(cmd *cobra.Command, op *journal.Raw, yes bool, format output.Format) error

// Resumer is how one kind resumes from its journal.
type Resumer struct {
	FromSpec FromSpec
	// Always resumes from the journal even when a command line was
	// journaled: the kind's journal holds all its input, and the command
	// may name files changed or gone since (a migration's plan).
	Always bool
}

// NewCommand returns the `resume` command. Resuming an operation is
// running its journaled command again (which finds the operation by its
// spec and continues it), with this invocation's connection flags and,
// where the command takes them, its --yes and -o; a kind whose Resumer
// says Always (or an operation a library started) resumes from its
// journal instead.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter, kinds *operation.Registry, rerun Rerun, fromSpec map[string]Resumer) *cobra.Command {
	var (
		format output.Format
		yes    bool
	)
	cmd := &cobra.Command{
		Use:   "resume ID",
		Short: "Continue an unfinished operation from its journal: its command is run again",
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
			if _, err := kinds.Lookup(&op.Operation); err != nil {
				return exitcode.BadInput(err)
			}
			if err := journal.Current(&op.Operation); err != nil {
				return exitcode.BadInput(err)
			}
			if !op.Status.Resumable() {
				return exitcode.BadInput(fmt.Errorf("operation %s is %s: nothing to resume", op.ID, op.Status))
			}
			line, err := opcmd.SplitCommand(op.Command)
			resumer, journaled := fromSpec[op.Kind]
			if journaled && (resumer.Always || err != nil || len(line) < 2 || line[0] != "hitless") {
				_, _ = fmt.Fprintf(streams.ErrOut, "Resuming %s %s from its journaled spec\n", op.Kind, op.ID)
				return resumer.FromSpec(cmd, op, yes, format)
			}
			if err != nil || len(line) < 2 || line[0] != "hitless" {
				return exitcode.BadInput(fmt.Errorf("operation %s: its journaled command %q is not a hitless command line to run again: %w", op.ID, op.Command, errors.Join(err, errors.New("started by a library"))))
			}
			if strings.Contains(op.Command, opcmd.Redacted) {
				return exitcode.BadInput(fmt.Errorf("operation %s: its command line held values hitless does not journal (%s): run that command again as you first ran it, and it continues", op.ID, op.Command))
			}
			again := append(slices.Clone(line[1:]), extraFlags(cmd, line[1:], yes, format)...)
			_, _ = fmt.Fprintf(streams.ErrOut, "Resuming %s %s: %s\n", op.Kind, op.ID, op.Command)
			return rerun(cmd.Context(), again)
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "Continue after a canary without asking (for operations that ask)")
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

// extraFlags are the flags of this invocation the journaled command gets:
// the connection flags given here, and --yes and -o when it takes them.
func extraFlags(cmd *cobra.Command, line []string, yes bool, format output.Format) []string {
	var out []string
	cmd.InheritedFlags().Visit(func(f *pflag.Flag) {
		out = append(out, "--"+f.Name+"="+f.Value.String())
	})
	target, _, err := cmd.Root().Find(line)
	if err != nil {
		return out
	}
	if yes && target.Flags().Lookup("yes") != nil {
		out = append(out, "--yes")
	}
	if cmd.Flags().Changed("output") && target.Flags().Lookup("output") != nil {
		out = append(out, "--output="+string(format))
	}
	return out
}

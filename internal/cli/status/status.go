package status

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// Report is what `hitless status` prints.
type Report struct {
	Lock       *lock.Holder         `json:"lock"`
	Operations []*journal.Operation `json:"operations"`
}

// NewCommand returns the `status` command.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	var format output.Format
	cmd := &cobra.Command{
		Use:   "status [ID]",
		Short: "Show hitless operations recorded in the cluster, or one operation's nodes",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := opcmd.Client(getter)
			if err != nil {
				return err
			}
			rep, err := get(cmd.Context(), journal.NewStore(cs), cs, args)
			if err != nil {
				return opcmd.Classify(err)
			}
			for _, op := range rep.Operations {
				opcmd.FlagJournal(op)
			}
			return output.Print(streams.Out, format, rep, func(w io.Writer) error {
				if rep.Lock != nil {
					_, _ = fmt.Fprintf(w, "Lock held by %s, since %s\n\n", rep.Lock, rep.Lock.Started.Format(time.RFC3339))
				} else {
					_, _ = fmt.Fprint(w, "Lock free\n\n")
				}
				if len(args) == 1 && len(rep.Operations[0].Steps) > 0 {
					op := rep.Operations[0]
					_, _ = fmt.Fprintf(w, "%s %s: %s (runs %d) %s\n\nSTEP\tSTARTED\tTOOK\tRUNS\tRESULT\n", op.Kind, op.ID, op.Status, op.Runs, op.Message)
					for _, st := range op.Steps {
						took, result := "", "in progress or interrupted"
						if st.Finished != nil {
							took, result = st.Finished.Sub(st.Started).Round(time.Millisecond).String(), strings.Join(st.Detail, "; ")
						}
						if st.Error != "" {
							result = "failed: " + st.Error
						}
						_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", st.Name, st.Started.Format(time.TimeOnly), took, st.Runs, result)
					}
					return nil
				}
				if len(args) == 1 {
					op := rep.Operations[0]
					opcmd.PrintRecap(w, op, roll.MakeRecap(op))
					_, _ = fmt.Fprintln(w, "\nNODE\tBATCH\tPHASE\tOUTCOME\tACTION RUNS\tRESUMED")
					for _, n := range op.Nodes {
						_, _ = fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%d\t%d\n", n.Name, n.Batch, n.Phase, n.Outcome, n.ActionRuns, n.Resumed)
					}
					return nil
				}
				_, _ = fmt.Fprintln(w, "ID\tKIND\tSTATUS\tDONE\tRUNS\tAGE\tCOMMAND")
				for _, op := range rep.Operations {
					done := 0
					for _, n := range op.Nodes {
						if n.Phase == roll.PhaseDone {
							done++
						}
					}
					progress := fmt.Sprintf("%d/%d", done, len(op.Nodes))
					if len(op.Steps) > 0 {
						finished := 0
						for _, st := range op.Steps {
							if st.Finished != nil && st.Error == "" {
								finished++
							}
						}
						progress = fmt.Sprintf("%d steps", finished)
					}
					_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", op.ID, op.Kind, op.Status, progress, op.Runs,
						duration.HumanDuration(time.Since(op.Started)), op.Command)
				}
				return nil
			})
		},
	}
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

type opReader interface {
	Get(ctx context.Context, id string) (*journal.Operation, error)
	List(ctx context.Context) ([]*journal.Operation, error)
}

func get(ctx context.Context, store opReader, cs kubernetes.Interface, args []string) (*Report, error) {
	holder, err := lock.Current(ctx, cs)
	if err != nil {
		return nil, err
	}
	rep := &Report{Lock: holder}
	if len(args) == 1 {
		op, err := store.Get(ctx, args[0])
		if err != nil {
			return nil, err
		}
		rep.Operations = []*journal.Operation{op}
		return rep, nil
	}
	rep.Operations, err = store.List(ctx)
	return rep, err
}

package status

import (
	"context"
	"fmt"
	"io"
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
	"github.com/hitless-dev/hitless/internal/engine/operation"
)

// Report is what `hitless status` prints.
type Report struct {
	Lock       *lock.Holder `json:"lock"`
	Operations []Entry      `json:"operations"`
}

// Entry is one operation: its journal and what its kind makes of it.
type Entry struct {
	*journal.Raw
	Summary operation.Summary `json:"summary"`
}

// NewCommand returns the `status` command; kinds describes each kind of
// operation.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter, kinds *operation.Registry) *cobra.Command {
	var format output.Format
	cmd := &cobra.Command{
		Use:   "status [ID]",
		Short: "Show hitless operations recorded in the cluster, or one operation's nodes or steps",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := opcmd.Client(getter)
			if err != nil {
				return err
			}
			rep, err := get(cmd.Context(), journal.NewStore(cs), cs, kinds, args)
			if err != nil {
				return opcmd.Classify(err)
			}
			return output.Print(streams.Out, format, rep, func(w io.Writer) error {
				printReport(w, rep, len(args) == 1)
				return nil
			})
		},
	}
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

func printReport(w io.Writer, rep *Report, one bool) {
	if rep.Lock != nil {
		_, _ = fmt.Fprintf(w, "Lock held by %s, since %s\n\n", rep.Lock, rep.Lock.Started.Format(time.RFC3339))
	} else {
		_, _ = fmt.Fprint(w, "Lock free\n\n")
	}
	if one {
		op := rep.Operations[0]
		_, _ = fmt.Fprintf(w, "%s %s: %s (runs %d, done %s) %s\n\n", op.Kind, op.ID, op.Status, op.Runs, op.Summary.Progress, opcmd.FlagText(op.Message))
		for _, l := range op.Summary.Lines {
			_, _ = fmt.Fprintln(w, opcmd.FlagText(l))
		}
		return
	}
	_, _ = fmt.Fprintln(w, "ID\tKIND\tSTATUS\tDONE\tRUNS\tAGE\tCOMMAND")
	for _, op := range rep.Operations {
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", op.ID, op.Kind, op.Status, op.Summary.Progress, op.Runs,
			duration.HumanDuration(time.Since(op.Started)), op.Command)
	}
}

type opReader interface {
	Get(ctx context.Context, id string) (*journal.Raw, error)
	List(ctx context.Context) ([]*journal.Raw, error)
}

func get(ctx context.Context, store opReader, cs kubernetes.Interface, kinds *operation.Registry, args []string) (*Report, error) {
	holder, err := lock.Current(ctx, cs)
	if err != nil {
		return nil, err
	}
	rep := &Report{Lock: holder}
	var ops []*journal.Raw
	if len(args) == 1 {
		op, err := store.Get(ctx, args[0])
		if err != nil {
			return nil, err
		}
		ops = []*journal.Raw{op}
	} else if ops, err = store.List(ctx); err != nil {
		return nil, err
	}
	for _, op := range ops {
		rep.Operations = append(rep.Operations, Entry{Raw: op, Summary: kinds.Describe(op)})
	}
	return rep, nil
}

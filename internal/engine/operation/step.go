package operation

import (
	"context"
	"fmt"
	"time"

	"github.com/hitless-dev/hitless/internal/engine/journal"
)

// Step runs fn as the journaled step name of the operation w writes,
// unless a previous run finished it: the step is written before fn acts,
// and its outcome (what it did, line by line, or its error) after. fn
// must be idempotent: a crash during it runs it again. progress, when set,
// gets a line as the step starts and ends.
func Step[R any](ctx context.Context, w *journal.Writer[R], name string, progress func(string), fn func(ctx context.Context) ([]string, error)) error {
	say := func(format string, args ...any) {
		if progress != nil {
			progress(fmt.Sprintf(format, args...))
		}
	}
	if s := w.Snapshot().StepByName(name); s != nil && s.Finished != nil && s.Error == "" {
		say("%-10s done before the restart", name)
		return nil
	}
	started := time.Now().UTC()
	if err := w.Update(ctx, func(op *journal.Entry[R]) {
		s := op.StepByName(name)
		if s == nil {
			op.Steps = append(op.Steps, journal.Step{Name: name})
			s = &op.Steps[len(op.Steps)-1]
		}
		s.Started, s.Finished, s.Error = started, nil, ""
		s.Runs++
	}); err != nil {
		return err
	}
	say("%-10s ...", name)
	detail, runErr := fn(ctx)
	finished := time.Now().UTC()
	if err := w.Force(context.WithoutCancel(ctx), func(op *journal.Entry[R]) {
		s := op.StepByName(name)
		s.Finished, s.Detail = &finished, detail
		if runErr != nil {
			s.Error = runErr.Error()
		}
	}); err != nil && runErr == nil {
		return err
	}
	if runErr != nil {
		return fmt.Errorf("%s: %w", name, runErr)
	}
	summary := ""
	if len(detail) > 0 {
		summary = detail[0]
		if len(detail) > 1 {
			summary += fmt.Sprintf(" (+%d more)", len(detail)-1)
		}
	}
	say("%-10s done in %s %s", name, finished.Sub(started).Round(time.Millisecond), summary)
	return nil
}

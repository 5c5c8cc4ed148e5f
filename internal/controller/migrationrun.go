package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/measure"
)

// start runs the migration in the background: a new operation, or the
// journaled one of the same plan and parameters (a previous leader's, a
// paused one); or, given the ID of its operation (undo), its rollback.
func (r *Migrations) start(m *v1alpha1.Migration, opts migrate.Options, undo string) error {
	rollback := undo != ""
	ctx, rn, err := r.launchRun(m.UID, rollback)
	if err != nil {
		return err
	}
	key := client.ObjectKeyFromObject(m)
	w := &migrationWriter{r: r, key: key, run: rn, changed: make(chan struct{}, 1)}
	w.rollingBack.Store(rollback)
	gate := &migrationGate{get: func(ctx context.Context) (*v1alpha1.Migration, error) {
		fresh := &v1alpha1.Migration{}
		return fresh, r.Client.Get(ctx, key, fresh)
	}}
	guardSpec, _ := probeSpec(m.Spec.Probe) // checked by options
	onBreach := m.Spec.RollbackOnBreach
	c := operation.Cluster{Client: r.Kube, Config: r.Config}
	go func() {
		defer close(rn.done)
		defer r.forget(m.UID, rn)
		log := klog.FromContext(ctx).WithValues("migration", m.Name, "rollback", rollback)
		ctx = klog.NewContext(ctx, log)
		flushed := make(chan struct{})
		wctx, stopWriter := context.WithCancel(ctx)
		go func() { defer close(flushed); w.loop(wctx) }()
		out := migrationOutcome{rollback: rollback}
		if rollback {
			w.started(undo)
			out.res, out.err = migrate.Rollback(ctx, c, undo, w.rollbackOptions(m.Name, gate))
			out.rolledBack = out.err == nil
		} else {
			session := measure.NewSession(r.Kube, guardSpec)
			out.err = session.Start(ctx)
			if out.err == nil {
				gate.probe = session.Guard()
				opts.Guard, opts.Guards, opts.Approver = gate, session.Guards(), gate
				opts.Started, opts.Progress = w.started, w.progress
				out.res, out.err = migrate.Run(ctx, c, opts)
			} else {
				out.err = &FieldError{Field: "spec.probe", Msg: out.err.Error()}
			}
			out.breach, out.paused, out.awaiting = session.Hit(), gate.paused.Load(), gate.awaiting.Load()
			if out.err != nil && out.breach && onBreach && rn.operation() != "" && ctx.Err() == nil {
				w.rollingBack.Store(true)
				w.progress("the disruption budget was exceeded: rolling back (spec.rollbackOnBreach)")
				_, out.rollbackErr = migrate.Rollback(ctx, c, rn.operation(), w.rollbackOptions(m.Name, gate))
				out.rolledBack = out.rollbackErr == nil
			}
			var spans []measure.Steps
			if out.res != nil {
				spans = append(spans, out.res)
			}
			if rep, ferr := session.Finish(context.WithoutCancel(ctx), rn.operation(), spans...); ferr != nil {
				log.Error(ferr, "stopping the probes")
			} else {
				out.report = rep
			}
		}
		stopWriter()
		<-flushed
		if ctx.Err() != nil && errors.Is(out.err, context.Canceled) {
			return // stopping (or a rollback taking over): resumed from the journal
		}
		reason, ferr := w.finish(context.WithoutCancel(ctx), out)
		if ferr != nil {
			log.Error(ferr, "writing the final status")
		}
		if reason == reasonError || ferr != nil {
			r.retryLater(ctx, m, rn)
		} else {
			r.requeue(ctx, m, rn)
		}
	}()
	return nil
}

// migrationGate is a Migration read afresh: the guard asked before each
// step and each node of its rolls (spec.paused, then the probe budget)
// and the approver of its pause steps (spec.approve).
type migrationGate struct {
	get      func(ctx context.Context) (*v1alpha1.Migration, error)
	probe    operation.Guard
	paused   atomic.Bool
	awaiting atomic.Bool
}

// Check implements operation.Guard.
func (g *migrationGate) Check(ctx context.Context, next string) error {
	m, err := g.get(ctx)
	if err != nil {
		return fmt.Errorf("reading the Migration before %s: %w", operation.Before(next), err)
	}
	if m.Spec.Paused || m.Spec.Rollback {
		g.paused.Store(true)
		return fmt.Errorf("before %s: spec.paused is true", operation.Before(next))
	}
	if g.probe != nil {
		return g.probe.Check(ctx, next)
	}
	return nil
}

// Aborts implements operation.Guard: the gate pauses, never aborts.
func (g *migrationGate) Aborts() bool { return false }

// Spec implements operation.Guard: the probe session is journaled.
func (g *migrationGate) Spec() json.RawMessage {
	if g.probe != nil {
		return g.probe.Spec()
	}
	return nil
}

// Approve implements operation.Approver: a pause step goes on when
// spec.approve names it.
func (g *migrationGate) Approve(ctx context.Context, q operation.Question) error {
	if q.Kind != migrate.AskStep || q.Step == "" {
		return fmt.Errorf("%s: a Migration cannot answer a %s question", q.Text, q.Kind)
	}
	m, err := g.get(ctx)
	if err != nil {
		return fmt.Errorf("reading the Migration for the approval of step %s: %w", q.Step, err)
	}
	if !slices.Contains(m.Spec.Approve, q.Step) {
		g.awaiting.Store(true)
		return fmt.Errorf("%s: add %s to spec.approve to go on", q.Text, q.Step)
	}
	return nil
}

// migrationOutcome is how a run ended.
type migrationOutcome struct {
	rollback    bool // the run was spec.rollback's
	res         *migrate.Result
	err         error
	rolledBack  bool
	rollbackErr error
	paused      bool
	awaiting    bool
	probed
}

// migrationWriter keeps a Migration's status in step with its run.
type migrationWriter struct {
	r       *Migrations
	key     client.ObjectKey
	run     *run
	changed chan struct{}

	mu          sync.Mutex
	line        string
	rollingBack atomic.Bool
}

func (w *migrationWriter) poke() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

func (w *migrationWriter) started(id string) {
	w.run.setOperation(id)
	w.poke()
}

func (w *migrationWriter) progress(line string) {
	w.mu.Lock()
	w.line = line
	w.mu.Unlock()
	w.poke()
}

func (w *migrationWriter) rollbackOptions(name string, gate *migrationGate) migrate.RollbackOptions {
	return migrate.RollbackOptions{Command: fmt.Sprintf("Migration %s rollback (hitless controller)", name), Approver: gate, Progress: w.progress}
}

func (w *migrationWriter) loop(ctx context.Context) {
	announced := ""
	writeLoop(ctx, w.changed, w.r.StatusEvery, "Migration "+w.key.Name, func(ctx context.Context) error { return w.flush(ctx, &announced) })
}

// journal reads the run's journal, or nil before it has one.
func (w *migrationWriter) journal(ctx context.Context, id string) *migrate.Journal {
	if id == "" {
		return nil
	}
	raw, err := journal.NewStore(w.r.Kube).Get(ctx, id)
	if err != nil {
		return nil
	}
	op, err := journal.Decode[migrate.Record](raw)
	if err != nil {
		return nil
	}
	return op
}

func (w *migrationWriter) flush(ctx context.Context, announced *string) error {
	id := w.run.operation()
	m := &v1alpha1.Migration{}
	if err := w.r.Client.Get(ctx, w.key, m); err != nil {
		return client.IgnoreNotFound(err)
	}
	op := w.journal(ctx, id)
	what := "migration"
	if w.rollingBack.Load() {
		what = "rollback"
	}
	if op != nil && *announced != what+id {
		*announced = what + id
		verb := "started"
		if op.Runs > 1 {
			verb = fmt.Sprintf("resumed (run %d)", op.Runs)
		}
		w.r.Events.Eventf(m, nil, corev1.EventTypeNormal, reasonStarted, "Migrate", "%s of operation %s %s (`hitless status %s`)", what, id, verb, id)
	}
	w.mu.Lock()
	line := w.line
	w.mu.Unlock()
	if line == "" {
		line = what + " starting"
	}
	return w.r.patchStatus(ctx, m, func(st *v1alpha1.MigrationStatus) {
		st.Operation = id
		phase, reason := v1alpha1.PhaseMigrating, reasonMigrating
		if w.rollingBack.Load() {
			phase, reason = v1alpha1.PhaseRollingBack, reasonRollingBack
		}
		st.Phase = phase
		fillSteps(st, op)
		setConditions(&st.Conditions, m.Generation, v1alpha1.ConditionProgressing, reason, line)
	})
}

// fillSteps puts the journal's steps, the plan's name and the step in
// flight (or the last started) into the status.
func fillSteps(st *v1alpha1.MigrationStatus, op *migrate.Journal) {
	if op == nil {
		return
	}
	if op.Record.Plan != nil {
		st.Plan = op.Record.Plan.Metadata.Name
	}
	st.Steps, st.Step = stepsOf(op), ""
	for _, s := range st.Steps {
		if s.Phase == v1alpha1.StepRunning || s.Phase == v1alpha1.StepFailed || s.Phase == v1alpha1.StepPaused {
			st.Step = s.Name
		}
	}
}

// finish writes how the run ended into the status, with an Event, and
// returns the condition's reason.
func (w *migrationWriter) finish(ctx context.Context, out migrationOutcome) (string, error) {
	m := &v1alpha1.Migration{}
	if err := w.r.Client.Get(ctx, w.key, m); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	id := w.run.operation()
	phase, cond, reason, msg := out.verdict(id, w.r.Retry)
	w.r.Metrics.migration(phase)
	then := "paused"
	switch {
	case out.rolledBack && out.breach:
		then = "rolled-back"
	case out.rollbackErr != nil:
		then = "rollback-failed"
	}
	w.r.Metrics.probed(migrate.Kind, out.probed, then)
	if m.DeletionTimestamp != nil {
		return "", nil
	}
	op := w.journal(ctx, id)
	evType := corev1.EventTypeNormal
	if cond != v1alpha1.ConditionReady && !out.rolledBack {
		evType = corev1.EventTypeWarning
	}
	if out.breach {
		w.r.Events.Eventf(m, nil, corev1.EventTypeWarning, reasonBudget, "Probe", "operation %s: %s", id, budgetWhy(fmt.Sprint(out.err)))
	}
	w.r.Events.Eventf(m, nil, evType, reason, "Migrate", "%s", msg)
	return reason, w.r.patchStatus(ctx, m, func(st *v1alpha1.MigrationStatus) {
		st.Phase = phase
		st.Operation = id
		if out.res != nil && out.res.Plan != nil {
			st.Plan = out.res.Plan.Metadata.Name
		}
		fillSteps(st, op)
		var paused *migrate.PausedError
		if errors.As(out.err, &paused) {
			st.Step = paused.Step
		}
		if out.report != nil {
			st.Disruption = out.disruption(budgetWhy(fmt.Sprint(out.err)))
		}
		if op != nil {
			remember(&st.History, &op.Operation, historyResult(phase))
		}
		setConditions(&st.Conditions, m.Generation, cond, reason, msg)
		rolled := metav1.Condition{Type: v1alpha1.ConditionRolledBack, Status: metav1.ConditionFalse, Reason: reason, Message: msg, ObservedGeneration: m.Generation}
		if out.rolledBack {
			rolled.Status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, rolled)
	})
}

// verdict reads the outcome into the resource's phase and condition.
// A migration a gate or a wait paused is run again after retry.
func (out migrationOutcome) verdict(id string, retry time.Duration) (phase, cond, reason, msg string) {
	var (
		paused *migrate.PausedError
		pe     *plan.Error
		fe     *FieldError
		se     *sourceError
	)
	err := out.err
	switch {
	case out.rolledBack && out.breach:
		return v1alpha1.PhaseRolledBack, "", reasonRolledBack,
			fmt.Sprintf("migration %s exceeded the disruption budget (%s): its started steps were rolled back (spec.rollbackOnBreach)", id, budgetWhy(fmt.Sprint(err)))
	case out.rolledBack:
		return v1alpha1.PhaseRolledBack, "", reasonRolledBack, fmt.Sprintf("migration %s rolled back (spec.rollback): its started steps undone newest first", id)
	case out.rollback && err != nil:
		return v1alpha1.PhaseFailed, v1alpha1.ConditionFailed, reasonRollbackErr,
			fmt.Sprintf("rollback of migration %s: %v; set and clear spec.paused to try again", id, err)
	case out.rollbackErr != nil:
		return v1alpha1.PhaseFailed, v1alpha1.ConditionFailed, reasonRollbackErr,
			fmt.Sprintf("migration %s exceeded the disruption budget and its rollback failed: %v; set spec.rollback to try again", id, out.rollbackErr)
	case err == nil:
		return v1alpha1.PhaseSucceeded, v1alpha1.ConditionReady, reasonMigrated, fmt.Sprintf("migration %s: every step done", id)
	case id == "" && (errors.As(err, &pe) || errors.As(err, &fe)):
		return v1alpha1.PhaseFailed, v1alpha1.ConditionFailed, reasonInvalidSpec, planField(err).Error() + "; nothing was changed"
	case errors.As(err, &se):
		return v1alpha1.PhaseFailed, v1alpha1.ConditionFailed, reasonInvalidSource, err.Error() + "; nothing was changed"
	case out.awaiting && errors.As(err, &paused):
		return v1alpha1.PhasePaused, v1alpha1.ConditionPaused, reasonAwaitStep,
			fmt.Sprintf("migration %s waits before step %s: %s", id, paused.Step, paused.Reason)
	case out.paused:
		return v1alpha1.PhasePaused, v1alpha1.ConditionPaused, reasonPaused,
			fmt.Sprintf("migration %s stopped: spec.paused is true; clear it to resume", id)
	case out.breach:
		return v1alpha1.PhasePaused, v1alpha1.ConditionPaused, reasonBudget,
			fmt.Sprintf("migration %s stopped: %s; change the spec (a larger spec.probe budget, or paused set and cleared) to resume it, or set spec.rollback", id, budgetWhy(err.Error()))
	case errors.As(err, &paused):
		return v1alpha1.PhasePaused, v1alpha1.ConditionPaused, reasonPlanPaused,
			fmt.Sprintf("migration %s paused %s; run again in %s, or at once on a change of the spec", id, pausedWhere(paused), retry)
	case id != "":
		return v1alpha1.PhaseFailed, v1alpha1.ConditionFailed, reasonStepFailed,
			fmt.Sprintf("migration %s: %v; set and clear spec.paused to run it again, or set spec.rollback to undo it", id, err)
	}
	return v1alpha1.PhasePaused, v1alpha1.ConditionPaused, reasonError, err.Error()
}

func pausedWhere(p *migrate.PausedError) string {
	where := "before"
	if p.In {
		where = "in"
	}
	return fmt.Sprintf("%s step %s: %s", where, p.Step, p.Reason)
}

package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// Reasons of a Migration's conditions and Events, beside the others.
const (
	reasonMigrating   = "Migrating"
	reasonMigrated    = "Migrated"
	reasonStepFailed  = "StepFailed"
	reasonPlanPaused  = "PlanPaused"
	reasonAwaitStep   = "AwaitingApproval"
	reasonRollingBack = "RollingBack"
	reasonRollbackErr = "RollbackFailed"
)

// Migrations reconciles Migrations: the migrate engine runs the plan in
// the background, the journal read into the status; spec.rollback runs
// the engine's rollback.
type Migrations struct {
	Client client.Client
	// Reader reads from the API server, not the cache (nil: Client).
	Reader  client.Reader
	Kube    kubernetes.Interface
	Config  *rest.Config
	Events  events.EventRecorder
	Metrics *Metrics
	// Actions are the per-node actions the plans' roll steps may name
	// (nil: migrate.Actions without exec).
	Actions *roll.Actions
	// Retry is how soon a migration a gate or a wait paused is run again
	// (default 1m): the cluster may have changed, not the resource.
	Retry time.Duration
	// StatusEvery is the pause between status writes (default 1s).
	StatusEvery time.Duration

	*runs
}

// SetupWithManager registers the reconciler and its runs' runnable.
func (r *Migrations) SetupWithManager(mgr ctrl.Manager) error {
	if r.Retry == 0 {
		r.Retry = time.Minute
	}
	if r.StatusEvery == 0 {
		r.StatusEvery = time.Second
	}
	if r.Actions == nil {
		r.Actions = migrate.Actions().Without(roll.ActionExec).Replace(roll.JobActionType(DefaultHookNamespace))
	}
	r.runs = newRuns()
	return r.watch(mgr, &v1alpha1.Migration{}, "migration", r)
}

// Reconcile implements reconcile.Reconciler.
func (r *Migrations) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	m := &v1alpha1.Migration{}
	if ok, err := admit(ctx, r.Client, req, m, func(ctx context.Context) error { return r.delete(ctx, m) }); !ok {
		return ctrl.Result{}, err
	}
	if rn := r.get(m.UID); rn != nil {
		if m.Spec.Rollback && !rn.rollback {
			r.stop(m.UID) // the rollback takes over
			return ctrl.Result{Requeue: true}, nil
		}
		return ctrl.Result{}, nil
	}
	fresh := &v1alpha1.Migration{}
	if err := reader(r.Reader, r.Client).Get(ctx, req.NamespacedName, fresh); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if fresh.ResourceVersion != m.ResourceVersion {
		return ctrl.Result{Requeue: true}, nil
	}
	if migrationOver(m) {
		return ctrl.Result{}, nil
	}
	if m.Spec.Rollback {
		return ctrl.Result{}, r.rollback(ctx, m)
	}
	opts, err := r.options(ctx, m)
	if err != nil {
		return r.refuse(ctx, m, err)
	}
	if m.Spec.Paused {
		return ctrl.Result{}, r.patchStatus(ctx, m, func(st *v1alpha1.MigrationStatus) {
			if cond := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionPaused); st.Phase == v1alpha1.PhasePaused && cond != nil && cond.Reason == reasonPaused {
				return // the run's own words: where it stopped
			}
			st.Phase = v1alpha1.PhasePaused
			setConditions(&st.Conditions, m.Generation, v1alpha1.ConditionPaused, reasonPaused, "spec.paused is true: the migration waits; clear it to go on")
		})
	}
	if after := r.retryIn(m); after > 0 {
		return ctrl.Result{RequeueAfter: after}, nil
	}
	return ctrl.Result{}, r.start(m, opts, "")
}

// migrationOver says whether the resource needs nothing: the migration
// succeeded or was rolled back, or it stopped on a verdict (a failed
// step or rollback, a budget, a pause step not yet approved) and nothing
// changed since.
func migrationOver(m *v1alpha1.Migration) bool {
	switch m.Status.Phase {
	case v1alpha1.PhaseSucceeded:
		return !m.Spec.Rollback
	case v1alpha1.PhaseRolledBack:
		return true
	case v1alpha1.PhaseFailed:
		cond := meta.FindStatusCondition(m.Status.Conditions, v1alpha1.ConditionFailed)
		return cond != nil && cond.ObservedGeneration == m.Generation && cond.Reason != reasonInvalidSpec && cond.Reason != reasonSourceNotFound
	case v1alpha1.PhasePaused:
		cond := meta.FindStatusCondition(m.Status.Conditions, v1alpha1.ConditionPaused)
		if cond == nil || m.Spec.Rollback {
			return false
		}
		switch cond.Reason {
		case reasonAwaitStep:
			return !slices.Contains(m.Spec.Approve, m.Status.Step)
		case reasonBudget:
			return cond.ObservedGeneration == m.Generation
		}
	}
	return false
}

// retryIn is how long a migration a gate or a wait paused waits before it
// runs again, unless the resource changed since.
func (r *Migrations) retryIn(m *v1alpha1.Migration) time.Duration {
	cond := meta.FindStatusCondition(m.Status.Conditions, v1alpha1.ConditionPaused)
	if m.Status.Phase != v1alpha1.PhasePaused || cond == nil || cond.Reason != reasonPlanPaused || cond.ObservedGeneration != m.Generation {
		return 0
	}
	return time.Until(cond.LastTransitionTime.Add(r.Retry))
}

// options turns the Migration into the migrate engine's options, checking
// what admission cannot: the plan (a built-in's name, the inline
// document), the releases' sources.
func (r *Migrations) options(ctx context.Context, m *v1alpha1.Migration) (migrate.Options, error) {
	opts := migrate.Options{Set: m.Spec.Parameters, Actions: r.Actions, AgentTimeout: 20 * time.Second,
		Command: fmt.Sprintf("Migration %s (hitless controller)", m.Name)}
	if m.Spec.AgentTimeout != nil {
		opts.AgentTimeout = m.Spec.AgentTimeout.Duration
	}
	p, err := migrationPlan(m)
	if err != nil {
		return opts, err
	}
	opts.Plan = p
	if _, err := p.Params(ctx, opts.Set); err != nil {
		return opts, planField(err)
	}
	if _, err := probeSpec(m.Spec.Probe); err != nil {
		return opts, err
	}
	names := make([]string, 0, len(m.Spec.Releases))
	for n := range m.Spec.Releases {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		field := "spec.releases." + n
		b, err := loadSource(ctx, r.Kube, m.Spec.Releases[n], field, nil)
		if err != nil {
			return opts, err
		}
		if b.source == nil {
			return opts, &sourceError{FieldError: FieldError{Field: field, Msg: b.name + " holds a Helm chart: a plan's component steps deploy manifests"}}
		}
		if opts.Sources == nil {
			opts.Sources = map[string]*component.Source{}
		}
		opts.Sources[n] = b.source
	}
	return opts, nil
}

// migrationPlan reads the plan the spec names: a built-in one or the
// inline document.
func migrationPlan(m *v1alpha1.Migration) (*plan.Plan, error) {
	if m.Spec.Plan != "" {
		p, err := plan.Builtin(m.Spec.Plan)
		if err != nil {
			return nil, &FieldError{Field: "spec.plan", Msg: err.Error()}
		}
		return p, nil
	}
	if m.Spec.Inline == nil || len(m.Spec.Inline.Raw) == 0 {
		return nil, &FieldError{Field: "spec", Msg: "give plan or inline"}
	}
	p, err := plan.Parse("spec.inline", m.Spec.Inline.Raw)
	if err != nil {
		return nil, planField(err)
	}
	return p, nil
}

// planField names the resource's field of a plan or parameter error.
func planField(err error) error {
	var pe *plan.Error
	if !errors.As(err, &pe) {
		return err
	}
	switch {
	case pe.Field == "set" && pe.Step == "":
		return &FieldError{Field: "spec.parameters", Msg: pe.Msg}
	case pe.File == "spec.inline":
		f := "spec.inline"
		if pe.Step != "" {
			f += fmt.Sprintf(" (step %s)", pe.Step)
		}
		if pe.Field != "" {
			f += " " + pe.Field
		}
		return &FieldError{Field: f, Msg: pe.Msg}
	}
	return &FieldError{Field: "spec.plan", Msg: pe.Error()}
}

// refuse writes what the controller cannot use into the status: Failed
// naming the field, nothing changed; a missing source is looked for again.
func (r *Migrations) refuse(ctx context.Context, m *v1alpha1.Migration, err error) (ctrl.Result, error) {
	reason, after, ok := refusal(err, 0)
	if !ok {
		return ctrl.Result{}, err
	}
	msg := err.Error() + "; nothing was changed"
	if cond := meta.FindStatusCondition(m.Status.Conditions, v1alpha1.ConditionFailed); cond == nil || cond.Reason != reason || cond.Message != msg {
		r.Events.Eventf(m, nil, corev1.EventTypeWarning, reason, "Validate", "%s", msg)
	}
	return ctrl.Result{RequeueAfter: after}, r.patchStatus(ctx, m, func(st *v1alpha1.MigrationStatus) {
		st.Phase = v1alpha1.PhaseFailed
		setConditions(&st.Conditions, m.Generation, v1alpha1.ConditionFailed, reason, msg)
	})
}

// rollback undoes the migration's started steps; one that never started
// is rolled back at once.
func (r *Migrations) rollback(ctx context.Context, m *v1alpha1.Migration) error {
	id, err := r.operation(ctx, m)
	if err != nil {
		return err
	}
	if id == "" {
		r.Events.Eventf(m, nil, corev1.EventTypeNormal, reasonRolledBack, "Rollback", "spec.rollback: the migration never started; nothing to undo")
		return r.patchStatus(ctx, m, func(st *v1alpha1.MigrationStatus) {
			st.Phase = v1alpha1.PhaseRolledBack
			setConditions(&st.Conditions, m.Generation, "", reasonRolledBack, "spec.rollback: the migration never started; nothing to undo")
		})
	}
	return r.start(m, migrate.Options{}, id)
}

// operation is the ID of the resource's migration: the status's, or the
// unfinished journal of its plan and parameters (a leader that died
// before writing the status).
func (r *Migrations) operation(ctx context.Context, m *v1alpha1.Migration) (string, error) {
	if m.Status.Operation != "" {
		return m.Status.Operation, nil
	}
	p, err := migrationPlan(m)
	if err != nil {
		return "", nil //nolint:nilerr // a plan that never parsed never started
	}
	hash, err := migrate.SpecHash(context.Background(), p, m.Spec.Parameters)
	if err != nil {
		return "", nil //nolint:nilerr // parameters that never resolved never started
	}
	raw, err := journal.NewStore(r.Kube).Resumable(ctx, migrate.Kind, hash)
	if err != nil || raw == nil {
		return "", err
	}
	return raw.ID, nil
}

// delete undoes the unfinished migration, as `hitless abort ID` does (its
// started steps rolled back newest first, the nodes of its rolls in
// flight uncordoned), then lets the resource go; a migration that
// succeeded or was rolled back stays as it is.
func (r *Migrations) delete(ctx context.Context, m *v1alpha1.Migration) error {
	if !controllerutil.ContainsFinalizer(m, Finalizer) {
		return nil
	}
	id, err := r.operation(ctx, m)
	if rn := r.get(m.UID); rn != nil && rn.operation() != "" {
		id, err = rn.operation(), nil
	}
	if err != nil {
		return fmt.Errorf("finding the operation of Migration %s: %w", m.Name, err)
	}
	if id != "" && m.Status.Phase != v1alpha1.PhaseSucceeded {
		reg, err := operation.NewRegistry(migrate.OperationKind(), roll.OperationKind())
		if err != nil {
			return err
		}
		_, err = reg.Abort(ctx, operation.Cluster{Client: r.Kube, Config: r.Config}, id, fmt.Sprintf("Migration %s deleted (hitless controller)", m.Name), 5*time.Minute)
		switch {
		case errors.Is(err, journal.ErrNotFound), errors.Is(err, operation.ErrFinished):
		case err != nil:
			return fmt.Errorf("aborting operation %s of Migration %s: %w", id, m.Name, err)
		default:
			r.Events.Eventf(m, nil, corev1.EventTypeNormal, reasonAborted, "Abort", "Migration deleted: operation %s aborted, its started steps rolled back newest first", id)
		}
	}
	r.stop(m.UID)
	patch := client.MergeFrom(m.DeepCopy())
	controllerutil.RemoveFinalizer(m, Finalizer)
	return client.IgnoreNotFound(r.Client.Patch(ctx, m, patch))
}

// patchStatus changes the status with mutate and writes it if it changed.
func (r *Migrations) patchStatus(ctx context.Context, m *v1alpha1.Migration, mutate func(*v1alpha1.MigrationStatus)) error {
	before := m.DeepCopy()
	mutate(&m.Status)
	m.Status.ObservedGeneration = m.Generation
	if equality.Semantic.DeepEqual(before.Status, m.Status) {
		return nil
	}
	return r.Client.Status().Patch(ctx, m, client.MergeFrom(before))
}

// stepsOf reads a migration's journal into the status's steps: the plan's
// steps in order (with the profile's preflight and postflight), each with
// what became of it.
func stepsOf(op *migrate.Journal) []v1alpha1.MigrationStep {
	var names []string
	if op.Record.Plan != nil {
		if op.Record.Plan.Profile != "" {
			names = append(names, "preflight")
		}
		for _, s := range op.Record.Plan.Steps {
			names = append(names, s.Name)
		}
		if op.Record.Plan.Profile != "" {
			names = append(names, "postflight")
		}
	}
	out := make([]v1alpha1.MigrationStep, 0, len(names))
	for _, n := range names {
		st := v1alpha1.MigrationStep{Name: n, Phase: v1alpha1.StepPending}
		if slices.Contains(op.Record.Skipped, n) {
			st.Phase = v1alpha1.StepSkipped
		}
		if js := op.StepByName(n); js != nil {
			t := metav1.NewTime(js.Started)
			st.Started, st.Phase = &t, v1alpha1.StepRunning
			if len(js.Detail) > 0 {
				st.Message = js.Detail[len(js.Detail)-1]
			}
			switch {
			case js.Error != "" && op.Status == journal.Paused:
				st.Phase, st.Message = v1alpha1.StepPaused, js.Error
			case js.Error != "":
				st.Phase, st.Message = v1alpha1.StepFailed, js.Error
			case js.Finished != nil:
				st.Phase = v1alpha1.StepDone
			}
			if js.Finished != nil {
				f := metav1.NewTime(*js.Finished)
				st.Finished = &f
			}
		}
		if slices.Contains(op.Record.Undone, n) {
			st.Phase = v1alpha1.StepUndone
			if rb := op.StepByName("rollback-" + n); rb != nil && len(rb.Detail) > 0 {
				st.Message = rb.Detail[len(rb.Detail)-1]
			}
		}
		out = append(out, st)
	}
	return out
}

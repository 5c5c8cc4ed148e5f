package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/component/chart"
	"github.com/hitless-dev/hitless/internal/component/manifest"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/measure"
)

// start runs the component operation in the background: a new one, or
// the journaled one with the same spec (a previous leader's).
func (r *Components) start(c *v1alpha1.Component, action string, opts lifecycle.Options, target, source string) error {
	ctx, rn, err := r.launch(c.UID)
	if err != nil {
		return err
	}
	key := client.ObjectKeyFromObject(c)
	w := &componentWriter{r: r, key: key, run: rn, action: action, changed: make(chan struct{}, 1)}
	guardSpec, _ := probeSpec(c.Spec.Probe) // checked by componentOptions
	gate := &componentGate{get: func(ctx context.Context) (*v1alpha1.Component, error) {
		fresh := &v1alpha1.Component{}
		return fresh, r.Client.Get(ctx, key, fresh)
	}}
	rollback := c.Spec.RollbackOnBreach
	go func() {
		defer close(rn.done)
		defer r.forget(c.UID, rn)
		log := klog.FromContext(ctx).WithValues("component", c.Name, "action", action)
		ctx = klog.NewContext(ctx, log)
		flushed := make(chan struct{})
		wctx, stopWriter := context.WithCancel(ctx)
		go func() { defer close(flushed); w.loop(wctx, r.StatusEvery) }()
		opts.Started = w.started
		opts.Progress = w.progress
		session := measure.NewSession(r.Kube, guardSpec)
		var res *lifecycle.Result
		err := session.Start(ctx)
		if err == nil {
			gate.probe = session.Guard()
			opts.Guard, opts.Guards = gate, session.Guards()
			run := lifecycle.Upgrade
			if action == lifecycle.ActionInstall {
				run = lifecycle.Install
			}
			res, err = run(ctx, lifecycle.Cluster{Client: r.Kube, Config: r.Config}, opts)
		} else {
			err = &FieldError{Field: "spec.probe", Msg: err.Error()}
		}
		out := outcome{action: action, target: target, source: source, res: res, err: err}
		if err != nil && session.Hit() && rollback && w.run.operation() != "" && ctx.Err() == nil {
			w.rollingBack.Store(true)
			w.progress("the disruption budget was exceeded: rolling back (spec.rollbackOnBreach)")
			out.rollback, out.rollbackErr = r.rollBack(ctx, c, w.run.operation())
		}
		out.breach, out.paused = session.Hit(), gate.paused.Load()
		if rep, ferr := session.Finish(context.WithoutCancel(ctx), w.run.operation(), steps(res)...); ferr != nil {
			log.Error(ferr, "stopping the probes")
		} else {
			out.report = rep
		}
		stopWriter()
		<-flushed
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return // stopping: the next leader resumes from the journal
		}
		reason, ferr := w.finish(context.WithoutCancel(ctx), out)
		if ferr != nil {
			log.Error(ferr, "writing the final status")
		}
		if reason == reasonError || ferr != nil {
			r.retryLater(ctx, c, rn)
		} else {
			r.requeue(ctx, c, rn)
		}
	}()
	return nil
}

func steps(res *lifecycle.Result) []measure.Steps {
	if res == nil {
		return nil
	}
	return []measure.Steps{res}
}

// rollBack undoes the operation the budget stopped, as `hitless abort ID`
// does: its data-plane rolls in flight undone (nodes uncordoned), every
// object it changed restored from its backup, what it created deleted,
// the previous revision deployed again.
func (r *Components) rollBack(ctx context.Context, c *v1alpha1.Component, id string) (*journal.Raw, error) {
	reg, err := operation.NewRegistry(lifecycle.OperationKinds()...)
	if err != nil {
		return nil, err
	}
	op, err := reg.Abort(ctx, operation.Cluster{Client: r.Kube, Config: r.Config}, id, fmt.Sprintf("Component %s: disruption budget exceeded, rollbackOnBreach (hitless controller)", c.Name), 5*time.Minute)
	if err != nil {
		return nil, fmt.Errorf("rolling back operation %s: %w", id, err)
	}
	return op, nil
}

// componentGate is the guard of a Component's operation, asked before
// each data-plane node: spec.paused, read afresh, then the probe budget.
type componentGate struct {
	get    func(ctx context.Context) (*v1alpha1.Component, error)
	probe  operation.Guard
	paused atomic.Bool
}

// Check implements operation.Guard.
func (g *componentGate) Check(ctx context.Context, next string) error {
	c, err := g.get(ctx)
	if err != nil {
		return fmt.Errorf("reading the Component before node %s: %w", next, err)
	}
	if c.Spec.Paused {
		g.paused.Store(true)
		return fmt.Errorf("before %s: spec.paused is true", operation.Before(next))
	}
	if g.probe != nil {
		return g.probe.Check(ctx, next)
	}
	return nil
}

// Aborts implements operation.Guard: the gate pauses, never aborts.
func (g *componentGate) Aborts() bool { return false }

// Spec implements operation.Guard: the probe session is journaled (a
// resume probes again), the resource is not.
func (g *componentGate) Spec() json.RawMessage {
	if g.probe != nil {
		return g.probe.Spec()
	}
	return nil
}

// outcome is how a component operation ended.
type outcome struct {
	action, target, source string
	res                    *lifecycle.Result
	err                    error
	rollback               *journal.Raw
	rollbackErr            error
	// paused says spec.paused stopped the operation before a node.
	paused bool
	probed
}

// componentWriter keeps a Component's status in step with its operation.
type componentWriter struct {
	r       *Components
	key     client.ObjectKey
	run     *run
	action  string
	changed chan struct{}

	mu          sync.Mutex
	line        string
	rollingBack atomic.Bool
}

func (w *componentWriter) poke() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

func (w *componentWriter) started(id string) {
	w.run.setOperation(id)
	w.poke()
}

func (w *componentWriter) progress(line string) {
	w.mu.Lock()
	w.line = line
	w.mu.Unlock()
	w.poke()
}

func (w *componentWriter) loop(ctx context.Context, every time.Duration) {
	announced := ""
	writeLoop(ctx, w.changed, every, "Component "+w.key.Name, func(ctx context.Context) error { return w.flush(ctx, &announced) })
}

func (w *componentWriter) phase() string {
	if w.rollingBack.Load() {
		return v1alpha1.PhaseRollingBack
	}
	if w.action == lifecycle.ActionInstall {
		return v1alpha1.PhaseInstalling
	}
	return v1alpha1.PhaseUpgrading
}

func (w *componentWriter) flush(ctx context.Context, announced *string) error {
	id := w.run.operation()
	c := &v1alpha1.Component{}
	if err := w.r.Client.Get(ctx, w.key, c); err != nil {
		return client.IgnoreNotFound(err)
	}
	if id != "" && *announced != id {
		*announced = id
		verb := "started"
		if raw, err := journal.NewStore(w.r.Kube).Get(ctx, id); err == nil && raw.Runs > 1 {
			verb = fmt.Sprintf("resumed (run %d)", raw.Runs)
		}
		w.r.Events.Eventf(c, nil, corev1.EventTypeNormal, reasonStarted, w.action, "%s operation %s %s (`hitless status %s`)", w.action, id, verb, id)
	}
	w.mu.Lock()
	line := w.line
	w.mu.Unlock()
	if line == "" {
		line = w.action + " starting"
	}
	return w.r.patchStatus(ctx, c, func(st *v1alpha1.ComponentStatus) {
		st.Operation = id
		st.Phase = w.phase()
		setConditions(&st.Conditions, c.Generation, v1alpha1.ConditionProgressing, reasonDeploying, line)
	})
}

// finish writes how the operation ended into the status, with an Event,
// and returns the condition's reason.
func (w *componentWriter) finish(ctx context.Context, out outcome) (string, error) {
	c := &v1alpha1.Component{}
	if err := w.r.Client.Get(ctx, w.key, c); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	id := w.run.operation()
	phase, cond, reason, msg := out.verdict(id)
	var op *journal.Raw
	if id != "" {
		op, _ = journal.NewStore(w.r.Kube).Get(ctx, id)
	}
	w.r.Metrics.component(out, phase)
	then := "paused"
	switch {
	case out.rollback != nil:
		then = "rolled-back"
	case out.rollbackErr != nil:
		then = "rollback-failed"
	}
	w.r.Metrics.probed(out.action, out.probed, then)
	if c.DeletionTimestamp != nil {
		return "", nil
	}
	evType := corev1.EventTypeNormal
	if cond != v1alpha1.ConditionReady {
		evType = corev1.EventTypeWarning
	}
	if out.breach {
		w.r.Events.Eventf(c, nil, corev1.EventTypeWarning, reasonBudget, "Probe", "operation %s: %s", id, breachWhy(out))
	}
	w.r.Events.Eventf(c, nil, evType, reason, w.action, "%s", msg)
	return reason, w.r.patchStatus(ctx, c, func(st *v1alpha1.ComponentStatus) {
		st.Phase = phase
		st.Operation = id
		if reason != reasonError {
			st.Digest, st.Source = out.target, out.source
		}
		if out.res != nil && out.err == nil {
			st.Revision = int32(out.res.Revision)
			st.Carried = nil
			for _, ch := range out.res.Carried {
				st.Carried = append(st.Carried, ch.String())
			}
			if out.res.Images != nil {
				st.Release = out.res.Images.Release
			}
		}
		if out.rollback != nil {
			st.Revision = int32(out.res.Previous)
		}
		if out.report != nil {
			st.Disruption = out.disruption(breachWhy(out))
		}
		if op != nil {
			remember(&st.History, &op.Operation, historyResult(phase))
		}
		setConditions(&st.Conditions, c.Generation, cond, reason, msg)
		rolled := metav1.Condition{Type: v1alpha1.ConditionRolledBack, Status: metav1.ConditionFalse, Reason: reason, Message: msg, ObservedGeneration: c.Generation}
		if out.rollback != nil {
			rolled.Status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, rolled)
	})
}

// verdict reads the outcome into the resource's phase and condition.
func (out outcome) verdict(id string) (phase, cond, reason, msg string) {
	var (
		input *lifecycle.InputError
		state *lifecycle.StateError
		merr  *manifest.Error
		hooks *chart.HookError
		fe    *FieldError
	)
	err := out.err
	switch {
	case err == nil:
		reason = reasonUpgraded
		if out.action == lifecycle.ActionInstall {
			reason = reasonInstalled
		}
		msg = fmt.Sprintf("%s operation %s: revision %d deployed", out.action, id, out.res.Revision)
		if out.res.Images != nil && out.res.Images.Release != "" {
			msg += " (release " + out.res.Images.Release + ")"
		}
		if n := len(out.res.Carried); n > 0 {
			msg += fmt.Sprintf(", %d customization(s) carried", n)
		}
		return v1alpha1.PhaseReady, v1alpha1.ConditionReady, reason, msg
	case out.rollback != nil:
		return v1alpha1.PhaseRolledBack, v1alpha1.ConditionFailed, reasonRolledBack,
			fmt.Sprintf("%s operation %s exceeded the disruption budget (%s): rolled back (spec.rollbackOnBreach), revision %d deployed again; change the source or the budget to try again", out.action, id, breachWhy(out), out.res.Previous)
	case out.rollbackErr != nil:
		return v1alpha1.PhaseFailed, v1alpha1.ConditionFailed, reasonBudget,
			fmt.Sprintf("%s operation %s exceeded the disruption budget (%s) and its rollback failed: %v; `hitless abort %s` tries again", out.action, id, breachWhy(out), out.rollbackErr, id)
	case out.paused:
		return v1alpha1.PhasePaused, v1alpha1.ConditionPaused, reasonPaused,
			fmt.Sprintf("%s operation %s stopped before its next node: spec.paused is true; clear it to resume the operation", out.action, id)
	case out.breach:
		return v1alpha1.PhasePaused, v1alpha1.ConditionPaused, reasonBudget,
			fmt.Sprintf("%s operation %s stopped before its next node: %s; change the spec (a larger spec.probe budget, or paused set and cleared) to resume it, or `hitless abort %s`", out.action, id, breachWhy(out), id)
	case errors.As(err, &fe):
		return v1alpha1.PhaseFailed, v1alpha1.ConditionFailed, reasonInvalidSpec, err.Error() + "; nothing was changed"
	case out.res != nil && len(out.res.Conflicts) > 0:
		var cs []string
		for _, c := range out.res.Conflicts {
			cs = append(cs, c.String())
		}
		return v1alpha1.PhaseFailed, v1alpha1.ConditionFailed, reasonConflicts,
			fmt.Sprintf("%d field(s) both the cluster's customizations and the new release changed: %s; set spec.prefer (vendor or user) to say who wins; nothing was changed", len(cs), strings.Join(cs, "; "))
	case errors.As(err, &input), errors.As(err, &merr), errors.As(err, &hooks), errors.Is(err, component.ErrInvalid):
		return v1alpha1.PhaseFailed, v1alpha1.ConditionFailed, reasonInvalidSource, err.Error()
	case errors.As(err, &state):
		return v1alpha1.PhaseFailed, v1alpha1.ConditionFailed, reasonDeployFailed, err.Error()
	case id != "":
		// The operation ran and stopped on its own verdict (a stage that
		// never became ready, a node that failed): journaled, resumable.
		return v1alpha1.PhaseFailed, v1alpha1.ConditionFailed, reasonDeployFailed,
			fmt.Sprintf("%s operation %s: %v; change the spec to try again, or `hitless abort %s`", out.action, id, err, id)
	}
	// Not the operation's verdict (the lock held, the API server gone):
	// tried again after a pause.
	return v1alpha1.PhasePaused, v1alpha1.ConditionPaused, reasonError, err.Error()
}

func breachWhy(out outcome) string {
	if out.err == nil {
		return "budget exceeded"
	}
	return budgetWhy(out.err.Error())
}

func historyResult(phase string) string {
	switch phase {
	case v1alpha1.PhaseReady:
		return v1alpha1.PhaseSucceeded
	case v1alpha1.PhaseRolledBack:
		return v1alpha1.PhaseAborted
	}
	return phase
}

// delete aborts the operation in flight, if any (restoring what it
// changed), and lets the resource go; the deployed release stays
// (`hitless uninstall NAME` removes it).
func (r *Components) delete(ctx context.Context, c *v1alpha1.Component) error {
	if !controllerutil.ContainsFinalizer(c, Finalizer) {
		return nil
	}
	id := ""
	if rn := r.get(c.UID); rn != nil {
		id = rn.operation()
	}
	if id != "" {
		reg, err := operation.NewRegistry(lifecycle.OperationKinds()...)
		if err != nil {
			return err
		}
		_, err = reg.Abort(ctx, operation.Cluster{Client: r.Kube, Config: r.Config}, id, fmt.Sprintf("Component %s deleted (hitless controller)", c.Name), 5*time.Minute)
		switch {
		case errors.Is(err, journal.ErrNotFound), errors.Is(err, operation.ErrFinished):
			// Over, or its journal deleted since: nothing to undo.
		case err != nil:
			return fmt.Errorf("aborting operation %s of Component %s: %w", id, c.Name, err)
		case err == nil:
			r.Events.Eventf(c, nil, corev1.EventTypeNormal, reasonAborted, "Abort", "Component deleted: operation %s aborted, what it changed restored", id)
		}
	}
	r.stop(c.UID)
	r.bundles.Delete(c.UID)
	patch := client.MergeFrom(c.DeepCopy())
	controllerutil.RemoveFinalizer(c, Finalizer)
	return client.IgnoreNotFound(r.Client.Patch(ctx, c, patch))
}

// patchStatus changes the status with mutate and writes it if it changed.
func (r *Components) patchStatus(ctx context.Context, c *v1alpha1.Component, mutate func(*v1alpha1.ComponentStatus)) error {
	before := c.DeepCopy()
	mutate(&c.Status)
	c.Status.ObservedGeneration = c.Generation
	if equality.Semantic.DeepEqual(before.Status, c.Status) {
		return nil
	}
	return r.Client.Status().Patch(ctx, c, client.MergeFrom(before))
}

package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/measure"
)

// Finalizer keeps a NodeRoll until its operation is over or aborted: a
// NodeRoll deleted mid-roll uncordons the nodes hitless cordoned and
// releases the lock before it goes.
const Finalizer = "hitless.dev/operation"

// Reasons of the conditions and Events.
const (
	reasonInvalidSpec      = "InvalidSpec"
	reasonStarted          = "Started"
	reasonRolling          = "NodesRolling"
	reasonSucceeded        = "Succeeded"
	reasonFailed           = "NodesFailed"
	reasonPlanBlocked      = "PlanBlocked"
	reasonPaused           = "Paused"
	reasonOutsideWindow    = "OutsideMaintenanceWindow"
	reasonAwaitingApproval = "AwaitingCanaryApproval"
	reasonStopped          = "Stopped"
	reasonAborted          = "Aborted"
	reasonError            = "Error"
	reasonTakeover         = "LockTakeover"
)

// NodeRolls reconciles NodeRolls: one roll engine run per resource, in the
// background, its journal read into the status.
type NodeRolls struct {
	Client client.Client
	// Reader reads from the API server, not the cache: whether a roll is
	// over is read afresh before one starts (nil: Client).
	Reader  client.Reader
	Kube    kubernetes.Interface
	Events  events.EventRecorder
	Actions *roll.Actions
	// Now is the clock (the maintenance window); nil is time.Now.
	Now func() time.Time
	// StatusEvery is the pause between status writes while a roll runs
	// (default 1s).
	StatusEvery time.Duration
	// Metrics, when set, are kept up to date.
	Metrics *Metrics

	*runs
}

// RetryAfter is the pause before a roll that ended on an error that is not
// its verdict (the lock held by another operation, the API server gone) is
// started again.
const RetryAfter = 15 * time.Second

// SetupWithManager registers the reconciler and the runnable that owns the
// rolls' lifetime (they stop when the manager stops or loses the lead).
func (r *NodeRolls) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.StatusEvery == 0 {
		r.StatusEvery = time.Second
	}
	if r.Actions == nil {
		r.Actions = migrate.Actions().Without(roll.ActionExec).Replace(roll.JobActionType(DefaultHookNamespace))
	}
	r.runs = newRuns()
	return r.watch(mgr, &v1alpha1.NodeRoll{}, "noderoll", r)
}

// Reconcile implements reconcile.Reconciler.
func (r *NodeRolls) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	nr := &v1alpha1.NodeRoll{}
	if ok, err := admit(ctx, r.Client, req, nr, func(ctx context.Context) error { return r.delete(ctx, nr) }); !ok {
		return ctrl.Result{}, err
	}
	if r.running(nr.UID) {
		return ctrl.Result{}, nil // the run reads the resource before each node
	}
	if over(nr) {
		return ctrl.Result{}, nil
	}
	spec, err := rollSpec(nr, r.Actions)
	if err == nil {
		err = r.check(ctx, nr)
	}
	if err != nil {
		var fe *FieldError
		if !errors.As(err, &fe) {
			return ctrl.Result{}, err
		}
		if cond := meta.FindStatusCondition(nr.Status.Conditions, v1alpha1.ConditionFailed); cond == nil || cond.Reason != reasonInvalidSpec || cond.ObservedGeneration != nr.Generation {
			r.Events.Eventf(nr, nil, corev1.EventTypeWarning, reasonInvalidSpec, "Validate", "%s; nothing was changed", err)
		}
		return ctrl.Result{}, r.patchStatus(ctx, nr, func(st *v1alpha1.NodeRollStatus) {
			st.Phase = v1alpha1.PhaseFailed
			setConditions(&st.Conditions, nr.Generation, v1alpha1.ConditionFailed, reasonInvalidSpec, err.Error()+"; nothing was changed")
		})
	}
	now := r.Now()
	if why, reason, opens := closed(nr, now); why != "" {
		var after time.Duration
		if !opens.IsZero() {
			after = opens.Sub(now) + time.Second
		}
		return ctrl.Result{RequeueAfter: after}, r.patchStatus(ctx, nr, func(st *v1alpha1.NodeRollStatus) {
			st.Phase = v1alpha1.PhasePaused
			setConditions(&st.Conditions, nr.Generation, v1alpha1.ConditionPaused, reason, why)
		})
	}
	if awaitingApproval(nr) {
		return ctrl.Result{}, nil
	}
	// The cache may not have seen the status the last run wrote: a roll
	// that just succeeded must not start again.
	fresh := &v1alpha1.NodeRoll{}
	if err := reader(r.Reader, r.Client).Get(ctx, req.NamespacedName, fresh); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if fresh.ResourceVersion != nr.ResourceVersion {
		return ctrl.Result{Requeue: true}, nil // a newer version is on its way to the cache
	}
	return ctrl.Result{}, r.start(nr, spec)
}

// check has the API server judge what rollSpec cannot (a Job hook's
// template, by a dry run) before the roll starts.
func (r *NodeRolls) check(ctx context.Context, nr *v1alpha1.NodeRoll) error {
	acts, err := nodeActions(nr.Spec)
	if err != nil {
		return err
	}
	return checkActions(ctx, r.Kube, r.Actions, acts)
}

// over says whether the resource needs nothing more: its roll succeeded
// or was aborted, or it failed or stopped and nothing changed since.
func over(nr *v1alpha1.NodeRoll) bool {
	switch nr.Status.Phase {
	case v1alpha1.PhaseSucceeded, v1alpha1.PhaseAborted:
		return true
	case v1alpha1.PhaseFailed:
		cond := meta.FindStatusCondition(nr.Status.Conditions, v1alpha1.ConditionFailed)
		return cond != nil && cond.ObservedGeneration == nr.Generation && cond.Reason != reasonInvalidSpec
	case v1alpha1.PhasePaused:
		cond := meta.FindStatusCondition(nr.Status.Conditions, v1alpha1.ConditionPaused)
		// A roll the engine stopped for its own reason (a drain that timed
		// out with onTimeout: uncordon) waits for a change of the spec.
		// So does one its probe budget stopped: a larger budget (or paused
		// set and cleared) resumes it.
		return cond != nil && (cond.Reason == reasonStopped || cond.Reason == reasonBudget) && cond.ObservedGeneration == nr.Generation
	}
	return false
}

// awaitingApproval says whether the roll stopped after its canary and the
// canary is still not approved.
func awaitingApproval(nr *v1alpha1.NodeRoll) bool {
	cond := meta.FindStatusCondition(nr.Status.Conditions, v1alpha1.ConditionPaused)
	return cond != nil && cond.Status == metav1.ConditionTrue && cond.Reason == reasonAwaitingApproval && !nr.Spec.CanaryApproved
}

// start runs the roll in the background: a new operation, or the
// journaled one with the same spec (a previous leader's, a paused one).
func (r *NodeRolls) start(nr *v1alpha1.NodeRoll, spec roll.Spec) error {
	ctx, rn, err := r.launch(nr.UID)
	if err != nil {
		return err
	}
	key := client.ObjectKeyFromObject(nr)
	g := &gate{now: r.Now, get: func(ctx context.Context) (*v1alpha1.NodeRoll, error) {
		fresh := &v1alpha1.NodeRoll{}
		return fresh, r.Client.Get(ctx, key, fresh)
	}}
	w := &statusWriter{r: r, key: key, gate: g, run: rn, every: r.StatusEvery, since: r.started(), changed: make(chan struct{}, 1)}
	go func() {
		defer close(rn.done)
		defer r.forget(nr.UID, rn)
		log := klog.FromContext(ctx).WithValues("noderoll", nr.Name)
		ctx = klog.NewContext(ctx, log)
		r.announceTakeover(ctx, nr)
		flushed := make(chan struct{})
		wctx, stopWriter := context.WithCancel(ctx)
		go func() { defer close(flushed); w.loop(wctx) }()
		guardSpec, _ := probeSpec(nr.Spec.Probe) // checked by rollSpec
		session := measure.NewSession(r.Kube, guardSpec)
		var res *roll.Result
		err := session.Start(ctx)
		if err == nil {
			g.probe = session.Guard()
			res, err = roll.Run(ctx, r.Kube, roll.Options{
				Spec:     spec,
				Command:  fmt.Sprintf("NodeRoll %s (hitless controller)", nr.Name),
				Approver: g,
				Guard:    g,
				Actions:  r.Actions,
				Progress: w.progress,
				Started:  w.started,
			})
		} else {
			err = fmt.Errorf("spec.probe: %w", err)
		}
		var steps []measure.Steps
		if res != nil && res.Operation != nil {
			steps = append(steps, &res.Operation.Record)
		}
		rep, perr := session.Finish(context.WithoutCancel(ctx), rn.operation(), steps...)
		if perr != nil {
			log.Error(perr, "stopping the probes")
		}
		stopWriter()
		<-flushed
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return // stopping: the next leader resumes from the journal
		}
		reason, ferr := w.finish(context.WithoutCancel(ctx), res, err, probed{report: rep, breach: session.Hit()})
		if ferr != nil {
			log.Error(ferr, "writing the final status")
		}
		if reason == reasonError || ferr != nil {
			r.retryLater(ctx, nr, rn) // not the roll's verdict
		} else {
			r.requeue(ctx, nr, rn)
		}
	}()
	return nil
}

// announceTakeover says in an Event (and a metric) that the resource's
// operation is held by another process, which the engine takes over if it
// is gone (its pod or process) or its lease lapsed: a leader that died.
func (r *NodeRolls) announceTakeover(ctx context.Context, nr *v1alpha1.NodeRoll) {
	if nr.Status.Operation == "" {
		return
	}
	h, err := lock.Current(ctx, r.Kube)
	if err != nil || h == nil || h.Operation != nr.Status.Operation {
		return
	}
	r.Metrics.tookOver()
	r.Events.Eventf(nr, nil, corev1.EventTypeNormal, reasonTakeover, "Resume",
		"operation %s is held by %s (its lease expires %s); taking it over once its holder is proven gone or its lease lapses",
		nr.Status.Operation, h, h.Expires.Format(time.RFC3339))
}

// delete aborts the resource's operation cleanly (the engine uncordons the
// nodes in flight that hitless cordoned, and the lock is released), then
// lets the resource go.
func (r *NodeRolls) delete(ctx context.Context, nr *v1alpha1.NodeRoll) error {
	if !controllerutil.ContainsFinalizer(nr, Finalizer) {
		return nil
	}
	rn := r.get(nr.UID)
	id := nr.Status.Operation
	if rn != nil && rn.operation() != "" {
		id = rn.operation()
	}
	if id == "" {
		// A leader that died before writing the status: find the
		// unfinished operation of this spec.
		if spec, err := rollSpec(nr, r.Actions); err == nil {
			raw, err := journal.NewStore(r.Kube).Resumable(ctx, roll.Kind, spec.Hash())
			if err != nil {
				return fmt.Errorf("finding the operation of NodeRoll %s: %w", nr.Name, err)
			}
			if raw != nil {
				id = raw.ID
			}
		}
	}
	if id != "" {
		op, err := roll.Abort(ctx, r.Kube, id, fmt.Sprintf("NodeRoll %s deleted (hitless controller)", nr.Name), 2*time.Minute)
		switch {
		case errors.Is(err, roll.ErrFinished), errors.Is(err, journal.ErrNotFound):
			// Over, or its journal deleted since: nothing to undo.
		case err != nil:
			return fmt.Errorf("aborting operation %s of NodeRoll %s: %w", id, nr.Name, err)
		default:
			r.Events.Eventf(nr, nil, corev1.EventTypeNormal, reasonAborted, "Abort", "NodeRoll deleted: operation %s aborted; %s; lock released", id, uncordoned(op))
		}
	}
	if rn != nil {
		rn.cancel()
		<-rn.done
	}
	patch := client.MergeFrom(nr.DeepCopy())
	controllerutil.RemoveFinalizer(nr, Finalizer)
	return client.IgnoreNotFound(r.Client.Patch(ctx, nr, patch))
}

// uncordoned says which nodes an abort gave back.
func uncordoned(op *roll.Journal) string {
	if op == nil {
		return "no node was in flight"
	}
	var names []string
	for _, n := range op.Record.Nodes {
		if n.Phase == roll.PhaseAborted && !n.CordonedBefore {
			names = append(names, n.Name)
		}
	}
	if len(names) == 0 {
		return "no node was left cordoned by hitless"
	}
	return fmt.Sprintf("uncordoned %v (cordoned by hitless; nodes others cordoned stay cordoned)", names)
}

// patchStatus changes the status with mutate and writes it if it changed.
func (r *NodeRolls) patchStatus(ctx context.Context, nr *v1alpha1.NodeRoll, mutate func(*v1alpha1.NodeRollStatus)) error {
	before := nr.DeepCopy()
	mutate(&nr.Status)
	nr.Status.ObservedGeneration = nr.Generation
	if equality.Semantic.DeepEqual(before.Status, nr.Status) {
		return nil
	}
	return r.Client.Status().Patch(ctx, nr, client.MergeFrom(before))
}

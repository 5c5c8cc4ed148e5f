package controller

import (
	"context"
	"errors"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// runs are a reconciler's operations running in the background, one per
// resource: the manager's runnable owns their lifetime (they stop when
// the manager stops or loses the lead, journaled as interrupted for the
// next leader to resume), and a run that ended on an error that is not
// its verdict asks for its resource to be reconciled again.
type runs struct {
	mu    sync.Mutex
	since time.Time // when this process started reconciling
	base  context.Context
	m     map[types.UID]*run
	retry chan event.GenericEvent
}

func newRuns() *runs {
	return &runs{m: map[types.UID]*run{}, retry: make(chan event.GenericEvent)}
}

type run struct {
	// rollback says the run undoes the resource's operation (a
	// Migration's spec.rollback).
	rollback bool
	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	id       string
}

func (r *run) operation() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.id
}

func (r *run) setOperation(id string) {
	r.mu.Lock()
	r.id = id
	r.mu.Unlock()
}

// Start implements manager.Runnable: it keeps the manager's context for
// the runs, and stops them when it ends.
func (s *runs) Start(ctx context.Context) error {
	s.mu.Lock()
	s.base = ctx
	s.since = time.Now()
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	all := make([]*run, 0, len(s.m))
	for _, rn := range s.m {
		rn.cancel()
		all = append(all, rn)
	}
	s.mu.Unlock()
	for _, rn := range all {
		<-rn.done
	}
	return nil
}

// watch adds s to the manager (it owns the runs' lifetime) and registers
// rec for obj's kind under name, reconciling again what s asks for.
func (s *runs) watch(mgr ctrl.Manager, obj client.Object, name string, rec reconcile.Reconciler) error {
	if err := mgr.Add(s); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).For(obj).Named(name).
		WatchesRawSource(source.Channel(s.retry, &handler.EnqueueRequestForObject{})).
		Complete(rec)
}

// started is when this process started reconciling.
func (s *runs) started() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.since
}

func (s *runs) running(uid types.UID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[uid]
	return ok
}

// get returns the run of uid, or nil.
func (s *runs) get(uid types.UID) *run {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[uid]
}

// forget drops rn, the run of uid, unless another run took its place.
func (s *runs) forget(uid types.UID, rn *run) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[uid] == rn {
		delete(s.m, uid)
	}
}

// launch records a new run of uid and returns its context.
func (s *runs) launch(uid types.UID) (context.Context, *run, error) {
	return s.launchRun(uid, false)
}

// launchRun is launch of a run that undoes (rollback) or not.
func (s *runs) launchRun(uid types.UID, rollback bool) (context.Context, *run, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.base == nil {
		return nil, nil, errors.New("the controller is not started")
	}
	ctx, cancel := context.WithCancel(s.base)
	rn := &run{rollback: rollback, cancel: cancel, done: make(chan struct{})}
	s.m[uid] = rn
	return ctx, rn, nil
}

// retryLater asks for obj to be reconciled again after RetryAfter, once
// rn is forgotten.
func (s *runs) retryLater(ctx context.Context, obj client.Object, rn *run) {
	select {
	case <-ctx.Done():
	case <-time.After(RetryAfter):
		s.forget(obj.GetUID(), rn)
		select {
		case s.retry <- event.GenericEvent{Object: obj}:
		case <-ctx.Done():
		}
	}
}

// requeue forgets rn and has obj reconciled again now: its status was
// written while the run was still recorded, when a reconcile does
// nothing.
func (s *runs) requeue(ctx context.Context, obj client.Object, rn *run) {
	s.forget(obj.GetUID(), rn)
	select {
	case s.retry <- event.GenericEvent{Object: obj}:
	case <-ctx.Done():
	}
}

// stop cancels the run of uid, if any, and waits for it to end.
func (s *runs) stop(uid types.UID) {
	if rn := s.get(uid); rn != nil {
		rn.cancel()
		<-rn.done
	}
}

// admit reads the resource of req into obj and says whether the
// reconcile goes on: not when it is gone, when it was deleted (deleted
// runs then) or when it just got the finalizer (its update comes back).
func admit(ctx context.Context, c client.Client, req ctrl.Request, obj client.Object, deleted func(context.Context) error) (bool, error) {
	if err := c.Get(ctx, req.NamespacedName, obj); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	if obj.GetDeletionTimestamp() != nil {
		return false, deleted(ctx)
	}
	if !controllerutil.ContainsFinalizer(obj, Finalizer) {
		patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
		controllerutil.AddFinalizer(obj, Finalizer)
		return false, c.Patch(ctx, obj, patch)
	}
	return true, nil
}

// writeLoop calls flush after each poke on changed, at most once every
// every, until ctx ends; what names the status in the log.
func writeLoop(ctx context.Context, changed <-chan struct{}, every time.Duration, what string, flush func(context.Context) error) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		if err := flush(ctx); err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "writing the status", "resource", what)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// reader is r, or c without one.
func reader(r client.Reader, c client.Client) client.Reader {
	if r != nil {
		return r
	}
	return c
}

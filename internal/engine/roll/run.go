package roll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	knode "github.com/hitless-dev/hitless/internal/kube/node"
)

// Kind is the journal kind of a roll.
const Kind = "roll"

// AnnotationOperation marks a node hitless is working on, naming the operation.
const AnnotationOperation = "hitless.dev/operation"

// Options configure Run.
type Options struct {
	Spec Spec
	// Command is the command line, journaled and shown to whoever finds
	// the lock held.
	Command string
	// DryRun stops after the plan.
	DryRun bool
	// Approver answers the canary question and, with Spec.Confirm, the
	// operator's pre- and post-node steps. Nil refuses them.
	Approver operation.Approver
	// Progress receives every transition. May be nil.
	Progress func(Event)
	// Started, when set, is told the operation's ID once its journal
	// exists (created or found to resume), before any node is touched.
	Started func(id string)
	// Guard, when set, is asked before each node starts; an error pauses
	// the roll before that node, with the error as the reason (a
	// disruption budget exceeded), or aborts it when the guard says so.
	// It is journaled, and a resume without one starts it again through
	// Guards.
	Guard  operation.Guard
	Guards operation.Guards
	// Actions is the registry the spec's actions are found in; nil is
	// DefaultActions.
	Actions *Actions
	// Lock, when set, is a cluster lock the caller already holds for the
	// operation this roll is part of (a component upgrade); Run uses it
	// instead of taking and releasing its own.
	Lock *lock.Lock
}

// Event is one transition, for live progress.
type Event struct {
	Time    time.Time `json:"time"`
	Node    string    `json:"node,omitempty"`
	Batch   int       `json:"batch"`
	Phase   string    `json:"phase"`
	Message string    `json:"message,omitempty"`
}

// Result is what Run did.
type Result struct {
	Plan      *Plan      `json:"plan"`
	Operation *Journal   `json:"operation,omitempty"`
	Resumed   bool       `json:"resumed"`
	Recap     []RecapRow `json:"recap,omitempty"`
}

// PlanBlockedError stops a roll before it starts: the drains would delete
// unmanaged pods or local data, or could never finish.
type PlanBlockedError struct{ Blockers []Blocker }

func (e *PlanBlockedError) Error() string {
	parts := make([]string, 0, len(e.Blockers))
	for _, b := range e.Blockers {
		parts = append(parts, fmt.Sprintf("%s [%s]", b.Pod, b.Kind))
	}
	return "the plan is blocked; nothing was changed: " + strings.Join(parts, ", ") + " (see the plan for why; `force` deletes unmanaged pods, `deleteEmptyDirData` allows emptyDir loss, a smaller `batch` leaves room for evicted pods)"
}

// IncompleteError reports a roll that ended without finishing every node.
type IncompleteError struct {
	Operation string
	Status    journal.Status
	Reason    string
}

func (e *IncompleteError) Error() string {
	return fmt.Sprintf("roll %s %s: %s", e.Operation, strings.ToLower(string(e.Status)), e.Reason)
}

// Run plans the roll and, unless DryRun, executes it: a new operation, or
// the unfinished one with the same spec, which it resumes.
func Run(ctx context.Context, cs kubernetes.Interface, opts Options) (*Result, error) {
	spec := opts.Spec
	spec.Defaults()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if opts.Actions == nil {
		opts.Actions = DefaultActions()
	}
	actions, err := opts.Actions.forSpec(spec)
	if err != nil {
		return nil, err
	}
	if opts.DryRun {
		if err := actions.check(ctx, cs, spec); err != nil {
			return nil, err
		}
		plan, err := MakePlan(ctx, cs, spec, actions.action)
		if err != nil {
			return nil, err
		}
		return &Result{Plan: plan}, nil
	}
	store := journal.NewStore(cs)
	existing, err := store.Resumable(ctx, Kind, spec.Hash())
	if err != nil {
		return nil, err
	}
	id := journal.NewID(Kind)
	if existing != nil {
		id = existing.ID
	}
	lk := opts.Lock
	if lk == nil {
		if lk, err = lock.Acquire(ctx, cs, lock.Self(id, opts.Command)); err != nil {
			return nil, err
		}
		defer lk.Close(ctx)
	}

	r := &runner{cs: cs, spec: spec, opts: opts, actions: actions, store: store, lock: lk, inflight: map[string]bool{}, cordonRV: map[string]string{}, wake: make(chan struct{}, 1)}
	res := &Result{}
	if existing != nil {
		if r.opts.Guard, err = operation.Attach(ctx, opts.Guard, existing.Guard, opts.Guards); err != nil {
			return nil, err
		}
		if err := r.resume(ctx, existing); err != nil {
			return nil, err
		}
		res.Resumed = true
	} else {
		if err := actions.check(ctx, cs, spec); err != nil {
			return nil, err
		}
		plan, err := MakePlan(ctx, cs, spec, actions.action)
		if err != nil {
			return nil, err
		}
		if plan.Blocked {
			var bs []Blocker
			for _, n := range plan.Nodes {
				for _, b := range n.Blockers {
					if b.Kind == BlockUnmanaged || b.Kind == BlockEmptyDir || b.Kind == BlockNoRoom {
						bs = append(bs, b)
					}
				}
			}
			return &Result{Plan: plan}, &PlanBlockedError{Blockers: bs}
		}
		if err := r.create(ctx, id, plan); err != nil {
			return nil, err
		}
	}
	res.Plan = r.plan
	if opts.Started != nil {
		opts.Started(id)
	}
	runErr := r.execute(ctx)
	res.Operation = r.w.Snapshot()
	res.Recap = MakeRecap(res.Operation)
	return res, runErr
}

type runner struct {
	cs      kubernetes.Interface
	spec    Spec
	actions nodeActions
	opts    Options
	store   *journal.Store
	lock    *lock.Lock
	w       *journal.Writer[Record]
	plan    *Plan
	byName  map[string]NodePlan // the plan's nodes, indexed once
	nodes   listersv1.NodeLister
	budgets *budgets

	mu       sync.Mutex
	cordonRV map[string]string // node versions read before cordoning
	inflight map[string]bool
	failures int
	paused   string // why the roll stops starting nodes, if it does
	// guardStopped is true when the guard stopped the roll.
	guardStopped bool
	wake         chan struct{}
}

func (r *runner) setPlan(plan *Plan) {
	r.plan = plan
	r.byName = make(map[string]NodePlan, len(plan.Nodes))
	for _, n := range plan.Nodes {
		r.byName[n.Name] = n
	}
}

func (r *runner) create(ctx context.Context, id string, plan *Plan) error {
	specJSON, err := json.Marshal(r.spec)
	if err != nil {
		return fmt.Errorf("encoding spec: %w", err)
	}
	op := &Journal{Operation: journal.Operation{
		ID: id, Kind: Kind, Command: r.opts.Command, SpecHash: r.spec.Hash(), Spec: specJSON,
		Status: journal.Running, Started: time.Now().UTC(), Runs: 1,
	}, Record: Record{Plan: plan}}
	if r.opts.Guard != nil {
		op.Guard = r.opts.Guard.Spec()
	}
	for _, n := range plan.Nodes {
		op.Record.Nodes = append(op.Record.Nodes, Node{Name: n.Name, Batch: n.Batch, Phase: PhasePending})
	}
	if err := journal.Create(ctx, r.store, op); err != nil {
		return err
	}
	r.setPlan(plan)
	r.w = journal.NewWriter(r.store, op)
	return nil
}

func (r *runner) resume(ctx context.Context, raw *journal.Raw) error {
	if err := journal.Current(&raw.Operation); err != nil {
		return err
	}
	op, err := journal.Decode[Record](raw)
	if err != nil {
		return err
	}
	if op.Record.Plan == nil {
		return fmt.Errorf("operation %s has no plan in its journal", op.ID)
	}
	r.setPlan(op.Record.Plan)
	r.w = journal.NewWriter(r.store, op)
	return r.w.Update(ctx, func(op *Journal) {
		op.Runs++
		op.Status = journal.Running
		op.Message = ""
		op.Finished = nil
		for i := range op.Record.Nodes {
			n := &op.Record.Nodes[i]
			switch {
			case InFlight(n.Phase):
				n.Resumed++
				n.Notes = append(n.Notes, fmt.Sprintf("run %d resumed the node in phase %s after the previous run stopped", op.Runs, n.Phase))
			case n.Phase == PhaseFailed:
				n.Notes = append(n.Notes, fmt.Sprintf("run %d retries the node after it failed: %s", op.Runs, n.Error))
				n.Phase, n.Outcome, n.Error = PhasePending, "", ""
			}
		}
	})
}

// execute runs the batches in order and finishes the operation.
func (r *runner) execute(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	factory := informers.NewSharedInformerFactory(r.cs, 0)
	nodeInformer := factory.Core().V1().Nodes()
	r.nodes = nodeInformer.Lister()
	pdbInformer := factory.Policy().V1().PodDisruptionBudgets().Informer()
	r.budgets = newBudgets(factory.Policy().V1().PodDisruptionBudgets().Lister())
	_, _ = pdbInformer.AddEventHandler(r.budgets.handler())
	informerCtx, stopInformers := context.WithCancel(ctx)
	factory.Start(informerCtx.Done())
	defer func() {
		stopInformers()
		factory.Shutdown()
	}()
	if !cache.WaitForCacheSync(informerCtx.Done(), nodeInformer.Informer().HasSynced, pdbInformer.HasSynced) {
		return r.finish(ctx, journal.Interrupted, "stopped before the node cache synced")
	}
	go r.watchAbort(ctx, cancel)
	go r.flushJournal(ctx)

	for bi, batch := range r.plan.Batches {
		if r.stopped() != "" || ctx.Err() != nil {
			break
		}
		r.runBatch(ctx, bi, batch)
		if bi == 0 && r.spec.Canary > 0 && r.stopped() == "" && ctx.Err() == nil && len(r.plan.Batches) > 1 {
			if err := r.confirmCanary(ctx); err != nil {
				r.stop(err.Error())
			}
		}
	}

	cleanup, ccancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer ccancel()
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, journal.ErrAborted):
		return r.finish(cleanup, journal.Aborted, "aborted on request")
	case ctx.Err() != nil:
		return r.finish(cleanup, journal.Interrupted, "interrupted: "+cause.Error())
	}
	if err := r.lock.Lost(); err != nil {
		return r.finish(cleanup, journal.Interrupted, err.Error())
	}
	if why := r.stopped(); why != "" {
		if r.guardStopped && r.opts.Guard.Aborts() {
			// Every node in flight has finished and none is left
			// cordoned: stopping here is a clean abort.
			return r.finish(cleanup, journal.Aborted, "aborted by its guard: "+why)
		}
		status := journal.Failed
		if r.failures < r.spec.MaxFailures {
			status = journal.Paused
		}
		return r.finish(cleanup, status, why)
	}
	return r.finish(cleanup, journal.Succeeded, "")
}

// runBatch starts the batch's unfinished nodes as room allows and the
// guard lets it, and waits for them.
func (r *runner) runBatch(ctx context.Context, bi int, batch []string) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, name := range batch {
		if r.stopped() != "" || ctx.Err() != nil {
			return
		}
		n := r.w.Snapshot().Record.NodeByName(name)
		if n == nil || (n.Phase != PhasePending && !InFlight(n.Phase)) {
			continue
		}
		if err := r.waitCapacity(ctx, name); err != nil {
			r.stop(err.Error())
			return
		}
		if r.opts.Guard != nil {
			if err := r.opts.Guard.Check(ctx, name); err != nil {
				r.done(name)
				r.guardStopped = true
				r.stop(err.Error())
				r.emit(Event{Time: time.Now(), Node: name, Batch: bi, Phase: PhasePending, Message: "paused: " + err.Error()})
				return
			}
		}
		wg.Go(func() {
			defer r.done(name)
			r.runNode(ctx, name, bi)
		})
	}
}

func (r *runner) finish(ctx context.Context, status journal.Status, why string) error {
	err := r.w.Force(ctx, func(op *Journal) {
		op.Status = status
		op.Message = why
		now := time.Now().UTC()
		op.Finished = &now
	})
	if err != nil {
		return err
	}
	if status == journal.Succeeded {
		return nil
	}
	return &IncompleteError{Operation: r.w.Snapshot().ID, Status: status, Reason: why}
}

// watchAbort watches the journal and cancels the run when someone asks to
// abort it; a long drain would otherwise not notice until its next write.
// It also stops the run if the lock is lost.
func (r *runner) watchAbort(ctx context.Context, cancel context.CancelCauseFunc) {
	id := r.w.Snapshot().ID
	go r.store.WatchStatus(ctx, id, func(s journal.Status) {
		if s == journal.Aborting || s == journal.Aborted {
			cancel(journal.ErrAborted)
		}
	})
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		if err := r.lock.Lost(); err != nil {
			cancel(err)
			return
		}
	}
}

func (r *runner) stop(why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.paused == "" {
		r.paused = why
	}
}

func (r *runner) stopped() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.paused
}

func (r *runner) done(name string) {
	r.mu.Lock()
	delete(r.inflight, name)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// waitCapacity blocks until starting name keeps unavailable nodes within
// the batch size, counting in-flight nodes and selected nodes that are
// NotReady or cordoned by someone else.
func (r *runner) waitCapacity(ctx context.Context, name string) error {
	var since time.Time
	for {
		r.mu.Lock()
		busy := len(r.inflight)
		var others []string
		nodes, err := r.nodes.List(everything())
		if err != nil {
			r.mu.Unlock()
			return fmt.Errorf("listing nodes from the cache: %w", err)
		}
		for _, n := range nodes {
			if _, selected := r.byName[n.Name]; !selected || r.inflight[n.Name] || n.Name == name {
				continue
			}
			if !knode.Ready(n) || (n.Spec.Unschedulable && n.Annotations[AnnotationOperation] == "") {
				others = append(others, n.Name)
			}
		}
		if busy+len(others) < r.plan.BatchSize {
			r.inflight[name] = true
			r.mu.Unlock()
			return nil
		}
		r.mu.Unlock()
		if since.IsZero() {
			since = time.Now()
			slices.Sort(others)
			r.emit(Event{Node: name, Phase: "waiting", Message: fmt.Sprintf("batch allows %d unavailable nodes: %d in flight, unavailable already: %s", r.plan.BatchSize, busy, strings.Join(others, ", "))})
		}
		if time.Since(since) > r.spec.DrainTimeout {
			return fmt.Errorf("node %s waited %s for room: the batch allows %d unavailable nodes and %s stayed NotReady or cordoned by others", name, r.spec.DrainTimeout, r.plan.BatchSize, strings.Join(others, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.wake:
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// confirmCanary asks whether to continue after the canary batch.
func (r *runner) confirmCanary(ctx context.Context) error {
	op := r.w.Snapshot()
	for _, n := range op.Record.Nodes {
		if n.Batch == 0 && n.Outcome == OutcomeFailed {
			return fmt.Errorf("canary node %s failed: %s", n.Name, n.Error)
		}
	}
	q := operation.Question{Kind: operation.AskCanary,
		Text: fmt.Sprintf("Canary batch done (%s). Continue with the remaining %d batches?", strings.Join(r.plan.Batches[0], ", "), len(r.plan.Batches)-1)}
	if err := operation.Ask(ctx, r.opts.Approver, q); err != nil {
		return fmt.Errorf("stopped after the canary batch: re-run the same command and approve it (`approve`) to continue: %w", err)
	}
	return nil
}

func (r *runner) emit(e Event) {
	if r.opts.Progress == nil {
		return
	}
	e.Time = time.Now()
	r.opts.Progress(e)
}

func (r *runner) nodeObject(name string) (*corev1.Node, error) {
	return r.nodes.Get(name)
}

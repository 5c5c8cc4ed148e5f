package journal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/kube/transient"
)

// Labels on journal ConfigMaps.
const (
	LabelOperation = "hitless.dev/operation"
	LabelKind      = "hitless.dev/kind"
	LabelStatus    = "hitless.dev/status"
	dataKey        = "operation.json.gz"
	namePrefix     = "hitless-op-"
)

// Status of an operation.
type Status string

// The statuses. Running, Interrupted, Failed and Paused operations can be
// resumed; Aborting asks the running process to stop.
const (
	Running     Status = "Running"
	Paused      Status = "Paused"
	Interrupted Status = "Interrupted"
	Failed      Status = "Failed"
	Succeeded   Status = "Succeeded"
	Aborting    Status = "Aborting"
	Aborted     Status = "Aborted"
)

// Resumable reports whether re-running the operation continues it.
func (s Status) Resumable() bool {
	return s == Running || s == Paused || s == Interrupted || s == Failed
}

// ErrNotFound is returned for an unknown operation id.
var ErrNotFound = errors.New("no such operation")

// ErrAborted is returned by Update when someone asked the operation to abort.
var ErrAborted = errors.New("operation abort requested")

// Format is the journal format this version writes. Format 0 (no
// "format" field) is the union written before records were per kind.
const Format = 1

// Operation is the part of an operation's journal every kind shares: its
// identity, spec, guard, status, runs and journaled steps. What a kind
// keeps for itself (a roll's plan and nodes, a component operation's
// revision and rolls) is its Record, typed through Entry.
type Operation struct {
	// Format is the journal format the record was written in.
	Format   int             `json:"format"`
	ID       string          `json:"id"`
	Kind     string          `json:"kind"`
	Command  string          `json:"command"`
	SpecHash string          `json:"specHash"`
	Spec     json.RawMessage `json:"spec"`
	// Guard is the spec of the guard (a probe session and its budget) the
	// operation runs under, so a resume runs under it again.
	Guard    json.RawMessage `json:"guard,omitempty"`
	Status   Status          `json:"status"`
	Message  string          `json:"message,omitempty"`
	Started  time.Time       `json:"started"`
	Updated  time.Time       `json:"updated"`
	Finished *time.Time      `json:"finished,omitempty"`
	Runs     int             `json:"runs"` // how many processes have run it (1 + resumes)
	// Steps are the operation's journaled steps, each written before it
	// acts, for the kinds that run in steps (component operations).
	Steps []Step `json:"steps,omitempty"`

	resourceVersion string
}

// Entry is an operation's journal with its kind's record of type R.
type Entry[R any] struct {
	Operation
	Record R `json:"record"`
}

// Raw is a journal whose record is not decoded: what the store and the
// kind-blind commands (status, the registry) handle.
type Raw = Entry[json.RawMessage]

// Step is one journaled step of an operation.
type Step struct {
	Name     string     `json:"name"`
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished,omitempty"`
	Error    string     `json:"error,omitempty"`
	// Detail is what the step did, one line per item.
	Detail []string `json:"detail,omitempty"`
	// Runs counts the starts; more than one means a crash interrupted it.
	Runs int `json:"runs"`
}

// StepByName returns a pointer to the named step, or nil.
func (o *Operation) StepByName(name string) *Step {
	for i := range o.Steps {
		if o.Steps[i].Name == name {
			return &o.Steps[i]
		}
	}
	return nil
}

// Span is one node's phase in an operation, for measurements to tie
// their findings to.
type Span struct {
	Node  string    `json:"node"`
	Phase string    `json:"phase"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Decode reads the typed record of a raw journal.
func Decode[R any](raw *Raw) (*Entry[R], error) {
	e := &Entry[R]{Operation: raw.Operation}
	if len(raw.Record) > 0 && string(raw.Record) != "null" {
		if err := json.Unmarshal(raw.Record, &e.Record); err != nil {
			return nil, fmt.Errorf("reading the %s record of operation %s: %w", raw.Kind, raw.ID, err)
		}
	}
	return e, nil
}

// Encode returns the raw journal of e.
func Encode[R any](e *Entry[R]) (*Raw, error) {
	b, err := json.Marshal(e.Record)
	if err != nil {
		return nil, fmt.Errorf("encoding the record of operation %s: %w", e.ID, err)
	}
	return &Raw{Operation: e.Operation, Record: b}, nil
}

// NewID returns an operation id: kind, UTC time and a random suffix.
func NewID(kind string) string { return store.NewID(kind, time.Now()) }

// Store reads and writes operations.
type Store struct {
	store *store.Store
	recs  *store.Records[stored]
}

// NewStore returns a Store on the cluster.
func NewStore(cs kubernetes.Interface) *Store {
	s := store.New(cs)
	return &Store{store: s, recs: store.For[stored](s, store.Kind{What: "journal", Key: dataKey})}
}

func cmName(id string) string { return namePrefix + id }

func meta(op *Operation) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            cmName(op.ID),
		ResourceVersion: op.resourceVersion,
		Labels: map[string]string{
			LabelOperation: op.ID,
			LabelKind:      op.Kind,
			LabelStatus:    strings.ToLower(string(op.Status)),
		},
	}
}

// Create records a new operation.
func (s *Store) Create(ctx context.Context, op *Raw) error { return Create(ctx, s, op) }

// Get reads an operation.
func (s *Store) Get(ctx context.Context, id string) (*Raw, error) {
	rec, err := s.recs.Get(ctx, cmName(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("operation %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return opOf(rec), nil
}

func opOf(rec *store.Record[stored]) *Raw {
	op := upgrade(rec.Value)
	op.resourceVersion = rec.Meta.ResourceVersion
	return op
}

// List returns every recorded operation, newest first.
func (s *Store) List(ctx context.Context) ([]*Raw, error) {
	recs, _, err := s.recs.List(ctx, LabelOperation, func(a, b *stored) int { return b.Started.Compare(a.Started) })
	if err != nil {
		return nil, err
	}
	out := make([]*Raw, len(recs))
	for i, r := range recs {
		out[i] = opOf(r)
	}
	return out, nil
}

// Resumable returns the newest unfinished operation of kind with the spec
// hash, or nil: running the same command again continues it. An
// unfinished operation of kind journaled in another format is a
// *FormatError: its spec cannot be compared, so it is stopped first.
func (s *Store) Resumable(ctx context.Context, kind, hash string) (*Raw, error) {
	ops, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, op := range ops {
		if op.Kind != kind || !op.Status.Resumable() {
			continue
		}
		if err := Current(&op.Operation); err != nil {
			return nil, err
		}
		if op.SpecHash == hash {
			return op, nil
		}
	}
	return nil, nil
}

// WatchStatus calls onChange with the operation's status at every change
// of its record, until ctx ends: one watch, re-established when it breaks.
func (s *Store) WatchStatus(ctx context.Context, id string, onChange func(Status)) {
	opts := metav1.ListOptions{FieldSelector: "metadata.name=" + cmName(id)}
	for ctx.Err() == nil {
		w, err := s.store.ConfigMaps().Watch(ctx, opts)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for ev := range w.ResultChan() {
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok {
				continue
			}
			opts.ResourceVersion = cm.ResourceVersion
			if st := cm.Labels[LabelStatus]; st != "" {
				onChange(statusFromLabel(st))
			}
		}
		w.Stop()
		opts.ResourceVersion = "" // start over from the current state
	}
}

func statusFromLabel(l string) Status {
	for _, s := range []Status{Running, Paused, Interrupted, Failed, Succeeded, Aborting, Aborted} {
		if strings.ToLower(string(s)) == l {
			return s
		}
	}
	return Status(l)
}

// Put writes op if nobody changed it since it was read. It returns a
// conflict error (apierrors.IsConflict) otherwise.
func (s *Store) Put(ctx context.Context, op *Raw) error { return put(ctx, s, op) }

// put writes e, typed, if nobody changed it since it was read: its JSON
// is the stored journal's, so no second encoding of the record is made.
func put[R any](ctx context.Context, s *Store, e *Entry[R]) error {
	e.Updated = time.Now().UTC()
	recs := store.For[Entry[R]](s.store, store.Kind{What: "journal", Key: dataKey})
	rv, err := recs.Update(ctx, meta(&e.Operation), e)
	if err != nil {
		return fmt.Errorf("journaling operation %s: %w", e.ID, err)
	}
	e.resourceVersion = rv
	return nil
}

// Create records a new operation whose record is of type R.
func Create[R any](ctx context.Context, s *Store, e *Entry[R]) error {
	e.Format = Format
	recs := store.For[Entry[R]](s.store, store.Kind{What: "journal", Key: dataKey})
	rv, err := recs.Create(ctx, meta(&e.Operation), e)
	if err != nil {
		return fmt.Errorf("recording operation %s: %w", e.ID, err)
	}
	e.resourceVersion = rv
	return nil
}

// Close ends operation id with status and message, whatever another
// writer set meanwhile, and returns it as written.
func (s *Store) Close(ctx context.Context, id string, status Status, message string) (*Raw, error) {
	op, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	w := NewWriter(s, op)
	err = w.Force(ctx, func(op *Raw) {
		now := time.Now().UTC()
		op.Status, op.Finished = status, &now
		if message != "" {
			op.Message = message
		}
	})
	return w.Snapshot(), err
}

// Writer serializes the updates of one running operation whose record
// is of type R.
type Writer[R any] struct {
	store *Store
	mu    sync.Mutex
	op    *Entry[R]
	// deferredSince is when the oldest change not yet written was made.
	deferredSince time.Time

	queued  sync.Mutex
	pending []*pendingUpdate[R] // Updates waiting for mu, written together
}

// pendingUpdate is an Update waiting to be written.
type pendingUpdate[R any] struct {
	mutate  func(op *Entry[R])
	written chan error
}

// NewWriter wraps an operation read from or created in store.
func NewWriter[R any](store *Store, op *Entry[R]) *Writer[R] {
	return &Writer[R]{store: store, op: op}
}

// Update applies mutate to the operation and writes it before returning,
// so the change is journaled before the step it announces acts. If another
// writer requested an abort meanwhile, it returns ErrAborted and the
// mutation is not written.
//
// Updates that arrive while a write is in flight are written together,
// in the order they arrived, in one write (a group commit): each returns
// once its change is written, and all of them share that write's error.
func (w *Writer[R]) Update(ctx context.Context, mutate func(op *Entry[R])) error {
	for {
		p := &pendingUpdate[R]{mutate: mutate, written: make(chan error, 1)}
		w.queued.Lock()
		w.pending = append(w.pending, p)
		w.queued.Unlock()
		w.mu.Lock()
		select {
		case err := <-p.written: // an earlier writer took ours along
			w.mu.Unlock()
			if w.retryOwn(ctx, err) {
				continue
			}
			return err
		default:
		}
		w.queued.Lock()
		group := w.pending
		w.pending = nil
		w.queued.Unlock()
		err := w.writeLocked(ctx, func(op *Entry[R]) {
			for _, g := range group {
				g.mutate(op)
			}
		}, w.refuseAbort)
		for _, g := range group {
			g.written <- err
		}
		w.mu.Unlock()
		return <-p.written
	}
}

// retryOwn says whether an Update written with another's should be tried
// again on its own: that writer's context ended, and ours did not.
func (w *Writer[R]) retryOwn(ctx context.Context, err error) bool {
	return ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}

func (w *Writer[R]) refuseAbort(fresh *Raw) error {
	if fresh.Status == Aborting || fresh.Status == Aborted {
		w.op.Status = fresh.Status
		w.op.resourceVersion = fresh.resourceVersion
		return ErrAborted
	}
	return nil
}

// Defer applies mutate to the operation as the writer sees it (Snapshot
// shows it) without writing it: the next Update, Force or Flush writes it
// with its own change. It is for changes whose loss in a crash only makes
// a resume repeat an idempotent step, never skip one (a phase that started,
// when the journaled phase before it redoes it).
func (w *Writer[R]) Defer(mutate func(op *Entry[R])) {
	w.mu.Lock()
	defer w.mu.Unlock()
	mutate(w.op)
	if w.deferredSince.IsZero() {
		w.deferredSince = time.Now()
	}
}

// Flush writes the deferred changes, if there are any older than age.
func (w *Writer[R]) Flush(ctx context.Context, age time.Duration) error {
	w.mu.Lock()
	since := w.deferredSince
	w.mu.Unlock()
	if since.IsZero() || time.Since(since) < age {
		return nil
	}
	return w.Update(ctx, func(*Entry[R]) {})
}

// Force is Update for the final writes of an aborted or interrupted run:
// it writes whatever status another writer set meanwhile.
func (w *Writer[R]) Force(ctx context.Context, mutate func(op *Entry[R])) error {
	return w.write(ctx, mutate, func(*Raw) error { return nil })
}

// write applies mutate and writes, retrying transient errors; on a
// conflict it reads the fresh version, lets onConflict refuse, and writes
// our view, which is authoritative for a running operation, on top of it.
func (w *Writer[R]) write(ctx context.Context, mutate func(op *Entry[R]), onConflict func(fresh *Raw) error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writeLocked(ctx, mutate, onConflict)
}

// writeLocked is write with mu held.
func (w *Writer[R]) writeLocked(ctx context.Context, mutate func(op *Entry[R]), onConflict func(fresh *Raw) error) error {
	for attempt := 0; ; attempt++ {
		next, err := clone(w.op)
		if err != nil {
			return err
		}
		mutate(next)
		err = transient.Retry(ctx, func() error { return put(ctx, w.store, next) })
		if err == nil {
			w.op = next
			w.deferredSince = time.Time{}
			return nil
		}
		if !apierrors.IsConflict(err) || attempt >= 5 {
			return err
		}
		var fresh *Raw
		if err := transient.Retry(ctx, func() (err error) { fresh, err = w.store.Get(ctx, w.op.ID); return err }); err != nil {
			return err
		}
		if err := onConflict(fresh); err != nil {
			return err
		}
		w.op.resourceVersion = fresh.resourceVersion
	}
}

// Snapshot returns a copy of the operation as last written.
func (w *Writer[R]) Snapshot() *Entry[R] {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, err := clone(w.op)
	if err != nil {
		// What was written marshals: this cannot happen.
		return w.op
	}
	return c
}

func clone[R any](o *Entry[R]) (*Entry[R], error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("copying operation %s: %w", o.ID, err)
	}
	var c Entry[R]
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("copying operation %s: %w", o.ID, err)
	}
	c.resourceVersion = o.resourceVersion
	return &c, nil
}

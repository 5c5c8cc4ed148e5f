package journal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

// Operation is the journal of one operation.
type Operation struct {
	ID       string          `json:"id"`
	Kind     string          `json:"kind"`
	Command  string          `json:"command"`
	SpecHash string          `json:"specHash"`
	Spec     json.RawMessage `json:"spec"`
	Plan     json.RawMessage `json:"plan,omitempty"`
	// Guard is the spec of the guard (a probe session and its budget) the
	// operation runs under, so a resume runs under it again.
	Guard  json.RawMessage `json:"guard,omitempty"`
	Status Status          `json:"status"`
	Message  string          `json:"message,omitempty"`
	Started  time.Time       `json:"started"`
	Updated  time.Time       `json:"updated"`
	Finished *time.Time      `json:"finished,omitempty"`
	Runs     int             `json:"runs"` // how many processes have run it (1 + resumes)
	Nodes    []Node          `json:"nodes,omitempty"`
	// Steps are the phases of an operation that is not node by node (a
	// component install or upgrade), each written before it acts.
	Steps []Step `json:"steps,omitempty"`

	resourceVersion string
}

// Step is one phase of an operation.
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

// Node is one node's progress through an operation.
type Node struct {
	Name  string `json:"name"`
	Batch int    `json:"batch"`
	// Phase is the step the node is in, written before the step acts.
	Phase   string `json:"phase"`
	Outcome string `json:"outcome,omitempty"` // ok, changed, failed, skipped, unreachable
	// CordonedBefore is true when someone else had cordoned the node; it
	// then stays cordoned when hitless is done.
	CordonedBefore bool `json:"cordonedBefore"`
	// CordonedByUs is true once hitless may have cordoned the node: it
	// must uncordon it.
	CordonedByUs bool `json:"cordonedByUs"`
	// ActionRuns counts the starts of the node's action; more than one
	// means a crash interrupted it and it ran again.
	ActionRuns  int           `json:"actionRuns"`
	Resumed     int           `json:"resumed,omitempty"` // times a crash interrupted the node in flight
	Evicted     []string      `json:"evicted,omitempty"`
	Deleted     []string      `json:"deleted,omitempty"` // unmanaged pods deleted under --force
	Blockers    []string      `json:"blockers,omitempty"`
	Phases      []PhaseRecord `json:"phases,omitempty"`
	Hooks       []HookRecord  `json:"hooks,omitempty"`
	Error       string        `json:"error,omitempty"`
	Notes       []string      `json:"notes,omitempty"`
	StartedAt   *time.Time    `json:"startedAt,omitempty"`
	CompletedAt *time.Time    `json:"completedAt,omitempty"`
}

// PhaseRecord times one phase of a node.
type PhaseRecord struct {
	Name     string     `json:"name"`
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// HookRecord is the outcome of a pre- or post-node step.
type HookRecord struct {
	Name     string `json:"name"`
	Command  string `json:"command,omitempty"`
	ExitCode int    `json:"exitCode"`
	Output   string `json:"output,omitempty"`
	Took     string `json:"took"`
}

// NodeByName returns a pointer to the named node, or nil.
func (o *Operation) NodeByName(name string) *Node {
	for i := range o.Nodes {
		if o.Nodes[i].Name == name {
			return &o.Nodes[i]
		}
	}
	return nil
}

// NewID returns an operation id: kind, UTC time and a random suffix.
func NewID(kind string) string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%s-%s", kind, time.Now().UTC().Format("20060102-150405"), hex.EncodeToString(b))
}

// Store reads and writes operations.
type Store struct {
	store *store.Store
	recs  *store.Records[Operation]
}

// NewStore returns a Store on the cluster.
func NewStore(cs kubernetes.Interface) *Store {
	s := store.New(cs)
	return &Store{store: s, recs: store.For[Operation](s, store.Kind{What: "journal", Key: dataKey})}
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
func (s *Store) Create(ctx context.Context, op *Operation) error {
	rv, err := s.recs.Create(ctx, meta(op), op)
	if err != nil {
		return fmt.Errorf("recording operation %s: %w", op.ID, err)
	}
	op.resourceVersion = rv
	return nil
}

// Get reads an operation.
func (s *Store) Get(ctx context.Context, id string) (*Operation, error) {
	rec, err := s.recs.Get(ctx, cmName(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("operation %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return opOf(rec), nil
}

func opOf(rec *store.Record[Operation]) *Operation {
	rec.Value.resourceVersion = rec.Meta.ResourceVersion
	return rec.Value
}

// List returns every recorded operation, newest first.
func (s *Store) List(ctx context.Context) ([]*Operation, error) {
	recs, _, err := s.recs.List(ctx, LabelOperation, func(a, b *Operation) int { return b.Started.Compare(a.Started) })
	if err != nil {
		return nil, err
	}
	out := make([]*Operation, len(recs))
	for i, r := range recs {
		out[i] = opOf(r)
	}
	return out, nil
}

// Resumable returns the newest unfinished operation of kind with the spec
// hash, or nil: running the same command again continues it.
func (s *Store) Resumable(ctx context.Context, kind, hash string) (*Operation, error) {
	ops, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, op := range ops {
		if op.Kind == kind && op.SpecHash == hash && op.Status.Resumable() {
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
func (s *Store) Put(ctx context.Context, op *Operation) error {
	op.Updated = time.Now().UTC()
	rv, err := s.recs.Update(ctx, meta(op), op)
	if err != nil {
		return fmt.Errorf("journaling operation %s: %w", op.ID, err)
	}
	op.resourceVersion = rv
	return nil
}

// Writer serializes the updates of one running operation.
type Writer struct {
	store *Store
	mu    sync.Mutex
	op    *Operation
}

// NewWriter wraps an operation read from or created in store.
func NewWriter(store *Store, op *Operation) *Writer { return &Writer{store: store, op: op} }

// Update applies mutate to the operation and writes it before returning,
// so the change is journaled before the step it announces acts. If another
// writer requested an abort meanwhile, it returns ErrAborted and the
// mutation is not written.
func (w *Writer) Update(ctx context.Context, mutate func(op *Operation)) error {
	return w.write(ctx, mutate, func(fresh *Operation) error {
		if fresh.Status == Aborting || fresh.Status == Aborted {
			w.op.Status = fresh.Status
			w.op.resourceVersion = fresh.resourceVersion
			return ErrAborted
		}
		return nil
	})
}

// Force is Update for the final writes of an aborted or interrupted run:
// it writes whatever status another writer set meanwhile.
func (w *Writer) Force(ctx context.Context, mutate func(op *Operation)) error {
	return w.write(ctx, mutate, func(*Operation) error { return nil })
}

// write applies mutate and writes, retrying transient errors; on a
// conflict it reads the fresh version, lets onConflict refuse, and writes
// our view, which is authoritative for a running operation, on top of it.
func (w *Writer) write(ctx context.Context, mutate func(op *Operation), onConflict func(fresh *Operation) error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for attempt := 0; ; attempt++ {
		next := w.op.clone()
		mutate(next)
		err := transient.Retry(ctx, func() error { return w.store.Put(ctx, next) })
		if err == nil {
			w.op = next
			return nil
		}
		if !apierrors.IsConflict(err) || attempt >= 5 {
			return err
		}
		var fresh *Operation
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
func (w *Writer) Snapshot() *Operation {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.op.clone()
}

func (o *Operation) clone() *Operation {
	b, err := json.Marshal(o)
	if err != nil {
		panic(fmt.Sprintf("journal: operation does not marshal: %v", err))
	}
	var c Operation
	if err := json.Unmarshal(b, &c); err != nil {
		panic(fmt.Sprintf("journal: operation does not unmarshal: %v", err))
	}
	c.resourceVersion = o.resourceVersion
	return &c
}

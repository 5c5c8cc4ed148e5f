package journal_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

var env = clustertest.New(clustertest.Options{Workers: 1})

func TestMain(m *testing.M) { os.Exit(env.Run(m)) }

// A 5,000-node operation with realistic per-node records fits in one
// ConfigMap and reads back as written.
func TestLargeOperationRoundTrips(t *testing.T) {
	store := journal.NewStore(env.Client(t))
	ctx := context.Background()
	op := &roll.Journal{Operation: journal.Operation{ID: journal.NewID("test"), Kind: "test", Status: journal.Running, Started: time.Now().UTC(), Spec: []byte(`{}`)}}
	for i := range 5000 {
		now := time.Now().UTC()
		op.Record.Nodes = append(op.Record.Nodes, roll.Node{
			Name: fmt.Sprintf("worker-%05d", i), Batch: i / 500, Phase: "done", Outcome: "changed", CordonedByUs: true, ActionRuns: 1,
			Evicted: []string{fmt.Sprintf("shop/frontend-%d", i), fmt.Sprintf("shop/checkout-%d", i)},
			Phases:  []roll.PhaseRecord{{Name: "cordon", Started: now, Finished: &now}, {Name: "drain", Started: now, Finished: &now}, {Name: "uncordon", Started: now, Finished: &now}},
		})
	}
	raw, err := journal.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Create(ctx, raw); err != nil {
		t.Fatal(err)
	}
	gotRaw, err := store.Get(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := journal.Decode[roll.Record](gotRaw)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Record.Nodes) != 5000 || got.Record.Nodes[4999].Name != "worker-04999" || got.Record.Nodes[4999].Evicted[1] != "shop/checkout-4999" {
		t.Errorf("read back %d nodes, last %+v", len(got.Record.Nodes), got.Record.Nodes[len(got.Record.Nodes)-1])
	}
}

// A writer whose write loses to an abort request reports ErrAborted and
// does not overwrite the request.
func TestWriterNoticesAbort(t *testing.T) {
	store := journal.NewStore(env.Client(t))
	ctx := context.Background()
	op, w := created(t, store, "n1")
	if err := w.Update(ctx, func(op *roll.Journal) { op.Record.Nodes[0].Phase = "cordon" }); err != nil {
		t.Fatal(err)
	}
	other, err := store.Get(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	other.Status = journal.Aborting
	if err := store.Put(ctx, other); err != nil {
		t.Fatal(err)
	}
	err = w.Update(ctx, func(op *roll.Journal) { op.Record.Nodes[0].Phase = "drain" })
	if !errors.Is(err, journal.ErrAborted) {
		t.Fatalf("Update after an abort request = %v, want ErrAborted", err)
	}
	gotRaw, err := store.Get(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := journal.Decode[roll.Record](gotRaw)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != journal.Aborting || got.Record.Nodes[0].Phase != "cordon" {
		t.Errorf("journal = %s / %s, want the abort request kept and the drain not written", got.Status, got.Record.Nodes[0].Phase)
	}
	// The final write of the aborting run goes through.
	if err := w.Force(ctx, func(op *roll.Journal) { op.Status = journal.Aborted }); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.Get(ctx, op.ID); got.Status != journal.Aborted {
		t.Errorf("status after Force = %s", got.Status)
	}
}

// A deferred change shows in the writer's snapshot at once, is not in the
// cluster until the next write or a flush of changes that waited long
// enough, and then is.
func TestWriterDefers(t *testing.T) {
	store := journal.NewStore(env.Client(t))
	ctx := context.Background()
	op, w := created(t, store, "n1", "n2")
	stored := func() []roll.Node {
		t.Helper()
		gotRaw, err := store.Get(ctx, op.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := journal.Decode[roll.Record](gotRaw)
		if err != nil {
			t.Fatal(err)
		}
		return got.Record.Nodes
	}
	w.Defer(func(op *roll.Journal) { op.Record.Nodes[0].Phase = "done" })
	if got := w.Snapshot().Record.Nodes[0].Phase; got != "done" {
		t.Errorf("snapshot after Defer: %s, want done", got)
	}
	if err := w.Flush(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := stored()[0].Phase; got != "pending" {
		t.Errorf("stored after a flush of older changes only: %s, want pending", got)
	}
	if err := w.Update(ctx, func(op *roll.Journal) { op.Record.Nodes[1].Phase = "cordon" }); err != nil {
		t.Fatal(err)
	}
	if got := stored(); got[0].Phase != "done" || got[1].Phase != "cordon" {
		t.Errorf("stored after the next write: %s, %s; want done, cordon", got[0].Phase, got[1].Phase)
	}
	w.Defer(func(op *roll.Journal) { op.Record.Nodes[1].Phase = "drain" })
	if err := w.Flush(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if got := stored()[1].Phase; got != "drain" {
		t.Errorf("stored after the flush: %s, want drain", got)
	}
}

// Updates made while a write is in flight are written together, and each
// returns only once its change is in the cluster.
func TestWriterGroupsConcurrentUpdates(t *testing.T) {
	cfg, puts := env.CountingConfig(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	store := journal.NewStore(cs)
	ctx := context.Background()
	const n = 40
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("n%d", i))
	}
	op, w := created(t, store, names...)

	// The first write is held until the others are waiting.
	release := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- w.Update(ctx, func(op *roll.Journal) { <-release; op.Record.Nodes[0].Phase = "cordon" })
	}()
	time.Sleep(100 * time.Millisecond)
	puts.Store(0)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 1; i < n; i++ {
		wg.Go(func() {
			errs <- w.Update(ctx, func(op *roll.Journal) { op.Record.Nodes[i].Phase = "cordon" })
		})
	}
	time.Sleep(200 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got := puts.Load(); got > 3 {
		t.Errorf("%d updates took %d writes, want them grouped (at most 3)", n, got)
	}
	gotRaw, err := store.Get(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := journal.Decode[roll.Record](gotRaw)
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range got.Record.Nodes {
		if node.Phase != "cordon" {
			t.Errorf("node %s stored in phase %s, want cordon", node.Name, node.Phase)
		}
	}
}

// created journals a running test operation whose record has the nodes,
// all pending, and returns it with a writer.
func created(t *testing.T, store *journal.Store, nodes ...string) (*roll.Journal, *journal.Writer[roll.Record]) {
	t.Helper()
	op := &roll.Journal{Operation: journal.Operation{ID: journal.NewID("test"), Kind: "test", Status: journal.Running, Started: time.Now().UTC(), Spec: []byte(`{}`)}}
	for _, n := range nodes {
		op.Record.Nodes = append(op.Record.Nodes, roll.Node{Name: n, Phase: "pending"})
	}
	raw, err := journal.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Create(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	op.Operation = raw.Operation
	return op, journal.NewWriter(store, op)
}

package journal_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

var env = clustertest.New(clustertest.Options{Workers: 1})

func TestMain(m *testing.M) { os.Exit(env.Run(m)) }

// A 5,000-node operation with realistic per-node records fits in one
// ConfigMap and reads back as written.
func TestLargeOperationRoundTrips(t *testing.T) {
	store := journal.NewStore(env.Client(t))
	ctx := context.Background()
	op := &journal.Operation{ID: journal.NewID("test"), Kind: "test", Status: journal.Running, Started: time.Now().UTC(), Spec: []byte(`{}`)}
	for i := range 5000 {
		now := time.Now().UTC()
		op.Nodes = append(op.Nodes, journal.Node{
			Name: fmt.Sprintf("worker-%05d", i), Batch: i / 500, Phase: "done", Outcome: "changed", CordonedByUs: true, ActionRuns: 1,
			Evicted: []string{fmt.Sprintf("shop/frontend-%d", i), fmt.Sprintf("shop/checkout-%d", i)},
			Phases:  []journal.PhaseRecord{{Name: "cordon", Started: now, Finished: &now}, {Name: "drain", Started: now, Finished: &now}, {Name: "uncordon", Started: now, Finished: &now}},
		})
	}
	if err := store.Create(ctx, op); err != nil {
		t.Fatal(err)
	}
	got, err := store.Get(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Nodes) != 5000 || got.Nodes[4999].Name != "worker-04999" || got.Nodes[4999].Evicted[1] != "shop/checkout-4999" {
		t.Errorf("read back %d nodes, last %+v", len(got.Nodes), got.Nodes[len(got.Nodes)-1])
	}
}

// A writer whose write loses to an abort request reports ErrAborted and
// does not overwrite the request.
func TestWriterNoticesAbort(t *testing.T) {
	store := journal.NewStore(env.Client(t))
	ctx := context.Background()
	op := &journal.Operation{ID: journal.NewID("test"), Kind: "test", Status: journal.Running, Started: time.Now().UTC(), Spec: []byte(`{}`),
		Nodes: []journal.Node{{Name: "n1", Phase: "pending"}}}
	if err := store.Create(ctx, op); err != nil {
		t.Fatal(err)
	}
	w := journal.NewWriter(store, op)
	if err := w.Update(ctx, func(op *journal.Operation) { op.Nodes[0].Phase = "cordon" }); err != nil {
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
	err = w.Update(ctx, func(op *journal.Operation) { op.Nodes[0].Phase = "drain" })
	if !errors.Is(err, journal.ErrAborted) {
		t.Fatalf("Update after an abort request = %v, want ErrAborted", err)
	}
	got, err := store.Get(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != journal.Aborting || got.Nodes[0].Phase != "cordon" {
		t.Errorf("journal = %s / %s, want the abort request kept and the drain not written", got.Status, got.Nodes[0].Phase)
	}
	// The final write of the aborting run goes through.
	if err := w.Force(ctx, func(op *journal.Operation) { op.Status = journal.Aborted }); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.Get(ctx, op.ID); got.Status != journal.Aborted {
		t.Errorf("status after Force = %s", got.Status)
	}
}

package journal_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// Journals written by the previous version (format 0, golden files of its
// format) are read, shown and aborted, never silently resumed: their spec
// means something else now (a roll's exec field became an action).
func TestFormat0IsReadAndRefusedForResume(t *testing.T) {
	tests := []struct {
		file, kind, id string
		nodes, steps   int
	}{
		{"testdata/format0-roll.json", "roll", "roll-20261130-100000-ab12", 2, 0},
		{"testdata/format0-upgrade.json", "upgrade", "upgrade-20261130-100000-cd34", 0, 2},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			b, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := journal.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if raw.Format != 0 || raw.Kind != tc.kind || raw.ID != tc.id || len(raw.Steps) != tc.steps {
				t.Errorf("read %s %s format %d with %d steps", raw.Kind, raw.ID, raw.Format, len(raw.Steps))
			}
			// Its nodes are there for status and abort.
			rec, err := journal.Decode[roll.Record](raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(rec.Record.Nodes) != tc.nodes {
				t.Errorf("%d nodes read, want %d", len(rec.Record.Nodes), tc.nodes)
			}
			if tc.nodes > 0 && (rec.Record.Nodes[1].Phase != "drain" || !rec.Record.Nodes[1].CordonedByUs || rec.Record.Plan == nil || len(rec.Record.Plan.Batches) != 2) {
				t.Errorf("node in flight read as %+v, plan %+v", rec.Record.Nodes[1], rec.Record.Plan)
			}
			// Resume is refused, saying what to do.
			err = journal.Current(&raw.Operation)
			var fe *journal.FormatError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), "hitless abort "+tc.id) || !strings.Contains(err.Error(), "earlier hitless") {
				t.Errorf("Current = %v, want a FormatError naming hitless abort %s", err, tc.id)
			}
			if _, err := roll.SpecOf(&raw.Operation); tc.kind == "roll" && !errors.As(err, &fe) {
				t.Errorf("SpecOf a format-0 roll = %v, want the FormatError", err)
			}
		})
	}
	t.Run("a newer format", func(t *testing.T) {
		raw, err := journal.Parse([]byte(`{"format": 9, "id": "roll-x", "kind": "roll", "record": {}}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := journal.Current(&raw.Operation); err == nil || !strings.Contains(err.Error(), "newer hitless (journal format 9") {
			t.Errorf("Current = %v, want a refusal naming the newer format", err)
		}
	})
}

// FuzzParse: a stored journal of any shape is read or refused, never a panic.
func FuzzParse(f *testing.F) {
	for _, file := range []string{"testdata/format0-roll.json", "testdata/format0-upgrade.json"} {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"format":1,"record":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		raw, err := journal.Parse(b)
		if err != nil {
			return
		}
		_, _ = journal.Decode[roll.Record](raw)
		_, _ = journal.Decode[migrate.Record](raw)
		_ = journal.Current(&raw.Operation)
		// What hitless status shows of it, by each kind's own reading.
		for _, k := range append([]operation.Kind{roll.OperationKind(), migrate.OperationKind()}, lifecycle.OperationKinds()...) {
			sum := k.Describe(raw)
			_ = sum.Progress
		}
	})
}

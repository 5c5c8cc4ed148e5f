package journal

import (
	"encoding/json"
	"fmt"
)

// stored is a journal as kept in its ConfigMap, with the fields of format
// 0 that later formats keep in the kind's record.
type stored struct {
	Raw
	Plan  json.RawMessage `json:"plan,omitempty"`
	Nodes json.RawMessage `json:"nodes,omitempty"`
}

// upgrade reads a journal of an earlier format as the current one: a
// format-0 journal's plan and nodes become its record ({"plan", "nodes"}),
// so its status shows and its abort restores its nodes. Its spec is left
// as written: resume refuses to continue it (Current, FormatError).
func upgrade(s *stored) *Raw {
	op := &s.Raw
	if op.Format == 0 && len(op.Record) == 0 {
		legacy := map[string]json.RawMessage{}
		if len(s.Plan) > 0 {
			legacy["plan"] = s.Plan
		}
		if len(s.Nodes) > 0 {
			legacy["nodes"] = s.Nodes
		}
		op.Record, _ = json.Marshal(legacy)
	}
	return op
}

// FormatError refuses to resume an operation journaled in another format:
// its spec means something else to this version.
type FormatError struct {
	ID, Kind string
	Format   int
}

func (e *FormatError) Error() string {
	if e.Format > Format {
		return fmt.Sprintf("operation %s was journaled by a newer hitless (journal format %d, this version writes %d): resume or abort it with that version", e.ID, e.Format, Format)
	}
	return fmt.Sprintf("operation %s (%s) was journaled by an earlier hitless (journal format %d) and cannot be resumed by this version: finish it with the version that started it, or stop it cleanly with `hitless abort %s` (nodes it cordoned are uncordoned) and start again", e.ID, e.Kind, e.Format, e.ID)
}

// Current returns a *FormatError when op was journaled in another format.
func Current(op *Operation) error {
	if op.Format != Format {
		return &FormatError{ID: op.ID, Kind: op.Kind, Format: op.Format}
	}
	return nil
}

// Parse reads a journal as stored (its JSON), of any format.
func Parse(b []byte) (*Raw, error) {
	var s stored
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("reading a journal: %w", err)
	}
	return upgrade(&s), nil
}

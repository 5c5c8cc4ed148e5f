package roll

import (
	"time"
)

// RecapRow is one node's line of the recap, in the spirit of Ansible's
// PLAY RECAP.
type RecapRow struct {
	Node        string            `json:"node"`
	Batch       int               `json:"batch"`
	OK          int               `json:"ok"`
	Changed     int               `json:"changed"`
	Failed      int               `json:"failed"`
	Skipped     int               `json:"skipped"`
	Unreachable int               `json:"unreachable"`
	Phases      map[string]string `json:"phases"` // phase -> duration
	Evicted     int               `json:"evicted"`
	Deleted     []string          `json:"deletedUnmanaged,omitempty"`
	StillCordon bool              `json:"leftCordonedByOwner,omitempty"`
	ActionRuns  int               `json:"actionRuns"`
	Error       string            `json:"error,omitempty"`
	Blockers    []string          `json:"blockers,omitempty"`
	Notes       []string          `json:"notes,omitempty"`
}

// MakeRecap summarizes an operation per node.
func MakeRecap(op *Journal) []RecapRow {
	rows := make([]RecapRow, 0, len(op.Record.Nodes))
	for _, n := range op.Record.Nodes {
		row := RecapRow{Node: n.Name, Batch: n.Batch, Phases: map[string]string{}, Evicted: len(n.Evicted), Deleted: n.Deleted,
			StillCordon: n.CordonedBefore, ActionRuns: n.ActionRuns, Error: n.Error, Blockers: n.Blockers, Notes: n.Notes}
		var sums = map[string]time.Duration{}
		for _, p := range n.Phases {
			if p.Finished == nil {
				continue
			}
			sums[p.Name] += p.Finished.Sub(p.Started)
			if p.Error == "" {
				row.OK++
			}
		}
		for k, d := range sums {
			row.Phases[k] = d.Round(10 * time.Millisecond).String()
		}
		switch n.Outcome {
		case OutcomeChanged:
			row.Changed = 1
		case OutcomeFailed:
			row.Failed = 1
		case OutcomeSkipped:
			row.Skipped = 1
		case OutcomeUnreachable:
			row.Unreachable = 1
		}
		rows = append(rows, row)
	}
	return rows
}

package roll

import (
	"slices"
	"time"

	"github.com/hitless-dev/hitless/internal/engine/journal"
)

// Record is what a roll journals for itself: its plan, fixed when it
// starts, and each node's progress.
type Record struct {
	Plan  *Plan  `json:"plan"`
	Nodes []Node `json:"nodes"`
}

// Journal is a roll's journal.
type Journal = journal.Entry[Record]

// NodeByName returns a pointer to the named node, or nil.
func (r *Record) NodeByName(name string) *Node {
	for i := range r.Nodes {
		if r.Nodes[i].Name == name {
			return &r.Nodes[i]
		}
	}
	return nil
}

// Spans lists the nodes' phases, a phase still open ending at now.
func (r *Record) Spans(now time.Time) []journal.Span {
	var out []journal.Span
	for _, n := range r.Nodes {
		for _, ph := range n.Phases {
			end := now
			if ph.Finished != nil {
				end = *ph.Finished
			}
			out = append(out, journal.Span{Node: n.Name, Phase: ph.Name, Start: ph.Started, End: end})
		}
	}
	slices.SortFunc(out, func(a, b journal.Span) int { return a.Start.Compare(b.Start) })
	return out
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

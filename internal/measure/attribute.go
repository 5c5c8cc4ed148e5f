package measure

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/hitless-dev/hitless/internal/engine/journal"
)

// Step is one node's phase in an operation.
type Step journal.Span

// Attributed is a loss window and the step that overlapped it.
type Attributed struct {
	From       string    `json:"from"`
	To         string    `json:"to"`
	Kind       string    `json:"kind"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	DurationMs float64   `json:"durationMs"`
	Lost       int       `json:"lost"`
	// Node and Phase are the step that overlapped the window most, on a
	// node of the path when one did; empty when no step overlapped it.
	Node  string `json:"node,omitempty"`
	Phase string `json:"phase,omitempty"`
	// OnPath is true when that node is one end of the path.
	OnPath bool `json:"onPath"`
	// After is true when no step overlapped the window and Node and Phase
	// are the last step that ended before it (a data plane that settles
	// after its pod is Ready loses packets after the step).
	After bool `json:"after,omitempty"`
}

// Steps are the node phases of the operations a report is tied to.
type Steps interface {
	Spans(now time.Time) []journal.Span
}

func overlap(aStart, aEnd, bStart, bEnd time.Time) time.Duration {
	s, e := aStart, aEnd
	if bStart.After(s) {
		s = bStart
	}
	if bEnd.Before(e) {
		e = bEnd
	}
	if e.Before(s) {
		return -1
	}
	return e.Sub(s)
}

// Attribute ties every loss window of rep to the node phases of ops (an
// operation and the rolls it ran), under the operation's id.
func Attribute(rep *Report, id string, ops ...Steps) {
	rep.Operation = id
	rep.Steps = nil
	for _, op := range ops {
		for _, sp := range op.Spans(rep.Ended) {
			rep.Steps = append(rep.Steps, Step(sp))
		}
	}
	slices.SortFunc(rep.Steps, func(a, b Step) int { return a.Start.Compare(b.Start) })
	rep.Windows = nil
	for _, p := range rep.Paths {
		for _, w := range p.Windows {
			a := Attributed{From: p.From, To: p.To, Kind: p.Kind, Start: w.Start, End: w.End, DurationMs: w.DurationMs, Lost: w.Lost}
			best := time.Duration(-1)
			for _, s := range rep.Steps {
				o := overlap(w.Start, w.End, s.Start, s.End)
				if o < 0 {
					continue
				}
				on := s.Node == p.From || s.Node == p.To
				if (on && !a.OnPath) || (on == a.OnPath && o > best) {
					a.Node, a.Phase, a.OnPath, best = s.Node, s.Phase, on, o
				}
			}
			if a.Node == "" {
				attributeAfter(&a, rep.Steps)
			}
			rep.Windows = append(rep.Windows, a)
		}
	}
	slices.SortFunc(rep.Windows, func(a, b Attributed) int { return a.Start.Compare(b.Start) })
}

// attributeAfter ties a window no step overlapped to the last step that
// ended before it, one on a node of the path when there is one.
func attributeAfter(a *Attributed, steps []Step) {
	var last time.Time
	for _, s := range steps {
		if s.End.After(a.Start) {
			continue
		}
		on := s.Node == a.From || s.Node == a.To
		if (on && !a.OnPath) || (on == a.OnPath && s.End.After(last)) {
			a.Node, a.Phase, a.OnPath, a.After, last = s.Node, s.Phase, on, true, s.End
		}
	}
}

// during says what a window happened in.
func (a Attributed) during(operation string) string {
	if a.Node == "" {
		return "no step of " + operation
	}
	s := a.Phase + " of " + a.Node
	if a.After {
		s = "after " + s
	}
	if !a.OnPath {
		s += " (not on this path)"
	}
	return s
}

// PrintTable writes the report for a terminal.
func PrintTable(w io.Writer, rep *Report) {
	s := rep.Summary
	_, _ = fmt.Fprintf(w, "Probe session %s: %d agents, %d paths, %s at %d probes/s per peer\n",
		rep.Session, len(rep.Agents), s.Paths, rep.Ended.Sub(rep.Started).Round(time.Second), rep.Rate)
	if len(rep.Missing) > 0 {
		_, _ = fmt.Fprintf(w, "No final numbers from: %s\n", strings.Join(rep.Missing, ", "))
	}
	if len(rep.Loaded) > 0 {
		_, _ = fmt.Fprintf(w, "LOADED: %s during the session: short gaps there may be the CPU's, not the network's\n", strings.Join(rep.Loaded, ", "))
	}
	if len(rep.Modeled) > 0 {
		_, _ = fmt.Fprintf(w, "MODEL: the data plane of %s is the lab's model (a node's link follows its data-plane pod): their losses are made, not measured\n", strings.Join(rep.Modeled, ", "))
	}
	_, _ = fmt.Fprintln(w, "\nFROM\tTO\tSENT\tLOST\tLOSS%\tLONGEST OUTAGE\tWINDOWS\tP50 MS\tP99 MS\tTCP RESETS")
	for _, p := range rep.Paths {
		_, _ = fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%.3f\t%.0f ms\t%d\t%.3f\t%.3f\t%d\n", p.From, p.To, p.Sent, p.Lost, p.LossPct,
			p.LongestOutageMs, len(p.Windows), p.Latency.P50, p.Latency.P99, p.TCPResets)
	}
	if len(rep.Windows) > 0 {
		_, _ = fmt.Fprintf(w, "\nLOSS WINDOW\tPATH\tDURATION\tLOST\tDURING\n")
		for _, a := range rep.Windows {
			_, _ = fmt.Fprintf(w, "%s\t%s -> %s\t%.0f ms\t%d\t%s\n", a.Start.Format("15:04:05.000"), a.From, a.To, a.DurationMs, a.Lost, a.during(rep.Operation))
		}
	}
	_, _ = fmt.Fprintf(w, "\n%d of %d probes lost (%.3f%%), longest outage %.0f ms%s, %d TCP resets.\n",
		s.Lost, s.Sent, s.LossPct, s.LongestOutageMs, map[bool]string{true: " on " + s.WorstPath, false: ""}[s.WorstPath != ""], s.TCPResets)
	if s.LossAt != "" {
		_, _ = fmt.Fprintf(w, "The loss was at node %s: every path with loss goes to or from it, and all of its paths lost.\n", s.LossAt)
	}
}

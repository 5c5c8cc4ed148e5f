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
			rep.Windows = append(rep.Windows, a)
		}
	}
	slices.SortFunc(rep.Windows, func(a, b Attributed) int { return a.Start.Compare(b.Start) })
}

// PrintTable writes the report for a terminal.
func PrintTable(w io.Writer, rep *Report) {
	s := rep.Summary
	_, _ = fmt.Fprintf(w, "Probe session %s: %d agents, %d paths, %s at %d probes/s per peer\n",
		rep.Session, len(rep.Agents), s.Paths, rep.Ended.Sub(rep.Started).Round(time.Second), rep.Rate)
	if len(rep.Missing) > 0 {
		_, _ = fmt.Fprintf(w, "No final numbers from: %s\n", strings.Join(rep.Missing, ", "))
	}
	_, _ = fmt.Fprintln(w, "\nFROM\tTO\tSENT\tLOST\tLOSS%\tLONGEST OUTAGE\tWINDOWS\tP50 MS\tP99 MS\tTCP RESETS")
	for _, p := range rep.Paths {
		_, _ = fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%.3f\t%.0f ms\t%d\t%.3f\t%.3f\t%d\n", p.From, p.To, p.Sent, p.Lost, p.LossPct,
			p.LongestOutageMs, len(p.Windows), p.Latency.P50, p.Latency.P99, p.TCPResets)
	}
	if len(rep.Windows) > 0 {
		_, _ = fmt.Fprintf(w, "\nLOSS WINDOW\tPATH\tDURATION\tLOST\tDURING\n")
		for _, a := range rep.Windows {
			during := "no step of " + rep.Operation
			if a.Node != "" {
				during = a.Phase + " of " + a.Node
				if !a.OnPath {
					during += " (not on this path)"
				}
			}
			_, _ = fmt.Fprintf(w, "%s\t%s -> %s\t%.0f ms\t%d\t%s\n", a.Start.Format("15:04:05.000"), a.From, a.To, a.DurationMs, a.Lost, during)
		}
	}
	_, _ = fmt.Fprintf(w, "\n%d of %d probes lost (%.3f%%), longest outage %.0f ms%s, %d TCP resets.\n",
		s.Lost, s.Sent, s.LossPct, s.LongestOutageMs, map[bool]string{true: " on " + s.WorstPath, false: ""}[s.WorstPath != ""], s.TCPResets)
}

package measure

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/measure/agent"
	"github.com/hitless-dev/hitless/internal/measure/probe"
)

// Options shape a session.
type Options struct {
	Rate     int           // probes per second per peer (default 100)
	Sample   int           // peers per agent, 0 for all
	Duration time.Duration // for Run; a live session runs until stopped
}

// Report is a session's numbers across the cluster.
type Report struct {
	Session string    `json:"session"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	Rate    int       `json:"rate"`
	Agents  []string  `json:"agents"`
	Missing []string  `json:"missing,omitempty"` // agents with no final numbers
	// Modeled are the nodes whose data plane is the lab's model (a node's
	// link follows its data-plane pod): their losses are made, not
	// measured.
	Modeled []string `json:"modeled,omitempty"`
	// Loaded are the nodes whose load average reached their CPUs during
	// the session: a gap of tens of milliseconds there may be the CPU's.
	Loaded    []string     `json:"loaded,omitempty"`
	Paths     []probe.Path `json:"paths"`
	Summary   Summary      `json:"summary"`
	Operation string       `json:"operation,omitempty"`
	// Windows lists every loss window with what the operation was doing
	// when it happened, when the report is tied to an operation.
	Windows []Attributed `json:"windows,omitempty"`
	Steps   []Step       `json:"steps,omitempty"`
}

// Summary is the whole session in a few numbers.
type Summary struct {
	Paths           int     `json:"paths"`
	PathsWithLoss   int     `json:"pathsWithLoss"`
	Sent            int64   `json:"sent"`
	Lost            int64   `json:"lost"`
	LossPct         float64 `json:"lossPct"`
	LongestOutageMs float64 `json:"longestOutageMs"`
	WorstPath       string  `json:"worstPath,omitempty"`
	TCPResets       int64   `json:"tcpResets"`
	// LossAt names the node the loss was at, when there is one: every
	// path with loss has it at an end, and every path between it and
	// another agent lost (a node whose data plane failed).
	LossAt string `json:"lossAt,omitempty"`
}

func newID() string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return "probe-" + time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

// Live is a session running for an operation.
type Live struct {
	cs      kubernetes.Interface
	id      string
	opts    Options
	started time.Time
}

// ErrNoAgents is returned when no node agent runs to measure anything.
var ErrNoAgents = errors.New("no node agent runs in this cluster, so nothing would be measured: deploy them (hitless agent manifest | kubectl apply -f -) or give the local cluster its netns data plane")

func needAgents(ctx context.Context, cs kubernetes.Interface) error {
	known, _, err := agent.Reports(ctx, cs)
	if err != nil {
		return err
	}
	if len(known) == 0 {
		return ErrNoAgents
	}
	return nil
}

// Start asks every agent to probe until Stop.
func Start(ctx context.Context, cs kubernetes.Interface, opts Options) (*Live, error) {
	if opts.Rate <= 0 {
		opts.Rate = 100
	}
	if err := needAgents(ctx, cs); err != nil {
		return nil, err
	}
	l := &Live{cs: cs, id: newID(), opts: opts, started: time.Now()}
	if err := agent.AskProbe(ctx, cs, agent.ProbeRequest{ID: l.id, Rate: opts.Rate, Sample: opts.Sample, Asked: l.started}); err != nil {
		return nil, err
	}
	return l, nil
}

// Stop ends the session and waits (up to wait) for every agent's final
// numbers.
func (l *Live) Stop(ctx context.Context, wait time.Duration) (*Report, error) {
	if err := agent.AskProbe(ctx, l.cs, agent.ProbeRequest{ID: l.id, Rate: l.opts.Rate, Stop: true, Asked: l.started}); err != nil {
		return nil, err
	}
	return l.collect(ctx, wait)
}

func (l *Live) collect(ctx context.Context, wait time.Duration) (*Report, error) {
	known, _, err := agent.Reports(ctx, l.cs)
	if err != nil {
		return nil, err
	}
	res, err := l.await(ctx, wait, 250*time.Millisecond, func(res map[string]*agent.ProbeResult) bool {
		final := 0
		for _, r := range res {
			if r.Final {
				final++
			}
		}
		return final >= len(known)
	})
	if err != nil {
		return nil, err
	}
	rep := l.report(res, time.Now())
	for n := range known {
		if r := res[n]; r == nil || !r.Final {
			rep.Missing = append(rep.Missing, n)
		}
	}
	slices.Sort(rep.Missing)
	return rep, nil
}

// await reads the session's numbers every interval until done says they
// are complete or wait has passed, and returns the last read.
func (l *Live) await(ctx context.Context, wait, every time.Duration, done func(map[string]*agent.ProbeResult) bool) (map[string]*agent.ProbeResult, error) {
	deadline := time.Now().Add(wait)
	for {
		res, err := agent.ProbeResults(ctx, l.cs, l.id)
		if err != nil {
			return nil, err
		}
		if done(res) || time.Now().After(deadline) {
			return res, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(every):
		}
	}
}

// Run measures for opts.Duration and returns the report.
func Run(ctx context.Context, cs kubernetes.Interface, opts Options) (*Report, error) {
	if opts.Rate <= 0 {
		opts.Rate = 100
	}
	if err := needAgents(ctx, cs); err != nil {
		return nil, err
	}
	l := &Live{cs: cs, id: newID(), opts: opts, started: time.Now()}
	req := agent.ProbeRequest{ID: l.id, Rate: opts.Rate, Sample: opts.Sample, Duration: opts.Duration, Asked: l.started}
	if err := agent.AskProbe(ctx, cs, req); err != nil {
		return nil, err
	}
	klog.FromContext(ctx).V(1).Info("probe session asked", "session", l.id, "duration", opts.Duration)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(opts.Duration):
	}
	// Each agent stops at its own end, then waits a probe timeout for the
	// last answers.
	return l.collect(ctx, 15*time.Second)
}

func (l *Live) report(res map[string]*agent.ProbeResult, now time.Time) *Report {
	rep := &Report{Session: l.id, Started: l.started, Ended: now, Rate: l.opts.Rate}
	for _, n := range slices.Sorted(maps.Keys(res)) {
		rep.Agents = append(rep.Agents, n)
		rep.Paths = append(rep.Paths, res[n].Paths...)
		if res[n].Modeled {
			rep.Modeled = append(rep.Modeled, n)
		}
		if r := res[n]; r.CPUs > 0 && r.MaxLoad >= float64(r.CPUs) {
			rep.Loaded = append(rep.Loaded, fmt.Sprintf("%s (load %.1f on %d CPUs)", n, r.MaxLoad, r.CPUs))
		}
	}
	rep.Summary = summarize(rep.Paths)
	return rep
}

// PathsOf returns the report's paths of one kind ("udp": the agents'
// probes of each other).
func PathsOf(kind string, r *Report) []probe.Path {
	var out []probe.Path
	for _, p := range r.Paths {
		if p.Kind == kind {
			out = append(out, p)
		}
	}
	return out
}

func summarize(paths []probe.Path) Summary {
	s := Summary{Paths: len(paths)}
	for _, p := range paths {
		s.Sent += p.Sent
		s.Lost += p.Lost
		s.TCPResets += p.TCPResets
		if p.Lost > 0 {
			s.PathsWithLoss++
		}
		if p.LongestOutageMs > s.LongestOutageMs {
			s.LongestOutageMs = p.LongestOutageMs
			s.WorstPath = p.From + " -> " + p.To
		}
	}
	if s.Sent > 0 {
		s.LossPct = float64(s.Lost) / float64(s.Sent) * 100
	}
	s.LossAt = lossAt(paths)
	return s
}

// lossAt returns the one node every path with loss goes to or from and
// whose every path to or from another agent lost, or "".
func lossAt(paths []probe.Path) string {
	agents := map[string]bool{}
	for _, p := range paths {
		agents[p.From] = true
	}
	found := ""
	for n := range agents {
		touched, lost := 0, 0
		only := true
		for _, p := range paths {
			at := p.From == n || p.To == n
			switch {
			case p.Lost > 0 && !at:
				only = false
			case at && agents[p.From] && agents[p.To] && p.From != p.To:
				touched++
				if p.Lost > 0 {
					lost++
				}
			}
		}
		if !only || touched == 0 || lost < touched {
			continue
		}
		if found != "" {
			return "" // two nodes fit (two agents only): not one
		}
		found = n
	}
	return found
}

// Budget is the disruption an operation may cause.
type Budget struct {
	MaxOutage  time.Duration `json:"maxOutage,omitempty"`  // longest outage on any path; 0 for no limit
	MaxLossPct float64       `json:"maxLossPct,omitempty"` // loss over all paths; 0 for no limit
}

// Exceeded says why rep is over the budget, or "".
func (b Budget) Exceeded(rep *Report) string {
	s := rep.Summary
	if b.MaxOutage > 0 && s.LongestOutageMs > float64(b.MaxOutage.Milliseconds()) {
		return fmt.Sprintf("longest outage %.0f ms on %s exceeds `maxOutage` %s", s.LongestOutageMs, s.WorstPath, b.MaxOutage)
	}
	if b.MaxLossPct > 0 && s.LossPct > b.MaxLossPct {
		return fmt.Sprintf("loss %.3f%% (%d of %d probes) exceeds `maxLoss` %g%%", s.LossPct, s.Lost, s.Sent, b.MaxLossPct)
	}
	return ""
}

// Fresh returns the numbers once every agent has published after since,
// or what there is after timeout.
func (l *Live) Fresh(ctx context.Context, since time.Time, timeout time.Duration) (*Report, error) {
	res, err := l.await(ctx, timeout, 100*time.Millisecond, func(res map[string]*agent.ProbeResult) bool {
		for _, r := range res {
			if r.Updated.Before(since) {
				return false
			}
		}
		return len(res) > 0
	})
	if err != nil {
		return nil, err
	}
	return l.report(res, time.Now()), nil
}

// Settle returns once no path has lost a probe for quiet, counted from
// the call at the earliest, or after limit.
func (l *Live) Settle(ctx context.Context, quiet, limit time.Duration) error {
	start := time.Now()
	deadline := start.Add(limit)
	for {
		rep, err := l.Fresh(ctx, time.Now(), 3*time.Second)
		if err != nil {
			return err
		}
		last := lastLoss(rep, start)
		if time.Since(last) >= quiet || time.Now().After(deadline) {
			klog.FromContext(ctx).V(1).Info("network settled", "session", l.id, "waited", time.Since(start), "lastLoss", last)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(quiet-time.Since(last), time.Second)):
		}
	}
}

// lastLoss is when the report last saw a probe lost (now for a window
// still open), or since when it saw none after it.
func lastLoss(rep *Report, since time.Time) time.Time {
	last := since
	for _, p := range rep.Paths {
		for _, w := range p.Windows {
			end := w.End
			if w.Open {
				end = time.Now()
			}
			if end.After(last) {
				last = end
			}
		}
	}
	return last
}

// BudgetError is a disruption budget exceeded before a node.
type BudgetError struct {
	Node string
	Why  string
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("disruption budget exceeded before %s: %s", operation.Before(e.Node), e.Why)
}

// Gate returns a check for the roll engine: before each node, the latest
// numbers (every agent's published after the previous node ended) are held
// against the budget.
func (l *Live) Gate(b Budget) func(ctx context.Context, next string) error {
	return func(ctx context.Context, next string) error {
		rep, err := l.Fresh(ctx, time.Now(), 3*time.Second)
		if ctx.Err() != nil {
			return nil // the operation is stopping: nothing to gate
		}
		if err != nil {
			klog.FromContext(ctx).Error(err, "reading probe numbers for the disruption budget", "node", next)
			return nil
		}
		if why := b.Exceeded(rep); why != "" {
			return &BudgetError{Node: next, Why: why}
		}
		return nil
	}
}

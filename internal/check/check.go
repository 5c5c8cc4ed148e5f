package check

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// Status is a check's outcome.
type Status string

// The statuses, from best to worst.
const (
	Pass  Status = "pass"
	Skip  Status = "skip"
	Warn  Status = "warn"
	Fail  Status = "fail"
	Error Status = "error" // the check itself could not run
)

// Severity says whether a failure stops the operation.
type Severity string

// The severities.
const (
	Hard Severity = "hard" // a failure exits 1 and stops the operation
	Soft Severity = "soft" // a failure is reported, the exit code stays 0
)

// Result is one check's outcome. Objects are "Kind/namespace/name" or
// "Kind/name".
type Result struct {
	ID          string   `json:"id"`
	Title       string   `json:"title"`
	Node        string   `json:"node,omitempty"` // set on node-level results from an agent
	Status      Status   `json:"status"`
	Severity    Severity `json:"severity"`
	Message     string   `json:"message"`
	Objects     []string `json:"objects"`
	Remediation string   `json:"remediation,omitempty"`
	DurationMs  int64    `json:"durationMs"`
}

// Blocking reports whether r fails the run: a hard check that failed or
// could not run.
func (r Result) Blocking() bool {
	return r.Severity == Hard && (r.Status == Fail || r.Status == Error)
}

// Outcome is what a check's Run returns; the runner adds id, title,
// severity and timing.
type Outcome struct {
	Status      Status
	Message     string
	Objects     []string
	Remediation string
}

// Passed is a passing outcome with a message.
func Passed(format string, args ...any) Outcome {
	return Outcome{Status: Pass, Message: fmt.Sprintf(format, args...)}
}

// Skipped is a skipped outcome saying why.
func Skipped(format string, args ...any) Outcome {
	return Outcome{Status: Skip, Message: fmt.Sprintf(format, args...)}
}

// Errored is the outcome of a check that could not run.
func Errored(err error) Outcome { return Outcome{Status: Error, Message: err.Error()} }

// Check is one named test of the cluster or a node. In is what the check
// reads: a cluster snapshot, or a node's view of itself.
type Check[In any] interface {
	ID() string
	Title() string
	Run(ctx context.Context, in In) Outcome
}

// Func adapts a function to Check.
type Func[In any] struct {
	Name    string
	Heading string
	Fn      func(ctx context.Context, in In) Outcome
}

// ID implements Check.
func (f Func[In]) ID() string { return f.Name }

// Title implements Check.
func (f Func[In]) Title() string { return f.Heading }

// Run implements Check.
func (f Func[In]) Run(ctx context.Context, in In) Outcome { return f.Fn(ctx, in) }

// Run runs checks in parallel over in, each bounded by timeout, and
// returns their results in the order of checks. severity gives each
// check's severity. A check that panics or overruns its timeout is an
// Error result; the others are unaffected.
func Run[In any](ctx context.Context, checks []Check[In], in In, severity func(id string) Severity, timeout time.Duration) []Result {
	results := make([]Result, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			start := time.Now()
			out := runOne(ctx, c, in, timeout)
			results[i] = Result{
				ID: c.ID(), Title: c.Title(), Severity: severity(c.ID()),
				Status: out.Status, Message: out.Message, Objects: out.Objects, Remediation: out.Remediation,
				DurationMs: time.Since(start).Milliseconds(),
			}
			if results[i].Objects == nil {
				results[i].Objects = []string{}
			}
			sort.Strings(results[i].Objects)
		})
	}
	wg.Wait()
	return results
}

func runOne[In any](ctx context.Context, c Check[In], in In, timeout time.Duration) Outcome {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan Outcome, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- Outcome{Status: Error, Message: fmt.Sprintf("check panicked: %v", p)}
			}
		}()
		done <- c.Run(cctx, in)
	}()
	select {
	case out := <-done:
		return out
	case <-cctx.Done():
		return Outcome{Status: Error, Message: fmt.Sprintf("did not finish within %s", timeout)}
	}
}

// Summary counts results by status.
type Summary struct {
	Total    int  `json:"total"`
	Pass     int  `json:"pass"`
	Warn     int  `json:"warn"`
	Fail     int  `json:"fail"`
	Skip     int  `json:"skip"`
	Error    int  `json:"error"`
	Blocking int  `json:"blocking"` // hard checks that failed or errored
	OK       bool `json:"ok"`       // no blocking result: exit 0
}

// Report is one run of checks, as printed and recorded.
type Report struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"` // preflight or postflight
	Profile    string    `json:"profile"`
	Started    time.Time `json:"started"`
	DurationMs int64     `json:"durationMs"`
	Results    []Result  `json:"results"`
	Summary    Summary   `json:"summary"`
}

// Summarize fills r.Summary from r.Results and orders the results: worst
// first, then by id and node, so the eye lands on what blocks.
func (r *Report) Summarize() {
	rank := map[Status]int{Error: 0, Fail: 1, Warn: 2, Skip: 3, Pass: 4}
	slices.SortStableFunc(r.Results, func(a, b Result) int {
		if a.Blocking() != b.Blocking() {
			if a.Blocking() {
				return -1
			}
			return 1
		}
		if d := rank[a.Status] - rank[b.Status]; d != 0 {
			return d
		}
		if a.ID != b.ID {
			if a.ID < b.ID {
				return -1
			}
			return 1
		}
		switch {
		case a.Node < b.Node:
			return -1
		case a.Node > b.Node:
			return 1
		}
		return 0
	})
	s := Summary{Total: len(r.Results)}
	for _, res := range r.Results {
		switch res.Status {
		case Pass:
			s.Pass++
		case Warn:
			s.Warn++
		case Fail:
			s.Fail++
		case Skip:
			s.Skip++
		case Error:
			s.Error++
		}
		if res.Blocking() {
			s.Blocking++
		}
	}
	s.OK = s.Blocking == 0
	r.Summary = s
}

// Find returns the results with the given id (one per node for node
// checks).
func (r *Report) Find(id string) []Result {
	var out []Result
	for _, res := range r.Results {
		if res.ID == id {
			out = append(out, res)
		}
	}
	return out
}

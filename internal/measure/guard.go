package measure

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/engine/operation"
)

// Budget policies: what an exceeded budget does.
const (
	OnBudgetPause = "pause"
	OnBudgetAbort = "abort"
)

// GuardSpec is a guard's settings, journaled with the operation it
// watches.
type GuardSpec struct {
	Rate   int    `json:"rate"`
	Sample int    `json:"sample,omitempty"`
	Budget Budget `json:"budget"`
	// OnBudget is pause (default) or abort.
	OnBudget string `json:"onBudget,omitempty"`
	// Settle keeps the session going after the operation until no path
	// has lost a probe for this long (at most MaxSettle): a data plane may
	// lose packets after its pods are Ready (BGP peers withdrawing routes,
	// an overlay relearning), and that loss is the operation's too. 0
	// stops at once.
	Settle time.Duration `json:"settle,omitempty"`
}

// MaxSettle bounds the wait for a quiet network after an operation.
const MaxSettle = 2 * time.Minute

// Guard is one probe session for the length of an operation, with its
// disruption budget checked before each node: the operation.Guard every
// operation (a roll, a component upgrade and its rolls, the demo's) is
// measured by.
type Guard struct {
	spec GuardSpec
	live *Live
	gate func(ctx context.Context, next string) error
	hit  atomic.Bool
}

// StartGuard starts the agents probing under spec.
func StartGuard(ctx context.Context, cs kubernetes.Interface, spec GuardSpec) (*Guard, error) {
	if spec.OnBudget == "" {
		spec.OnBudget = OnBudgetPause
	}
	if spec.OnBudget != OnBudgetPause && spec.OnBudget != OnBudgetAbort {
		return nil, &operation.FieldError{Field: "onBudget", Msg: fmt.Sprintf("%q: want pause or abort", spec.OnBudget)}
	}
	live, err := Start(ctx, cs, Options{Rate: spec.Rate, Sample: spec.Sample})
	if err != nil {
		return nil, err
	}
	spec.Rate = live.opts.Rate
	return &Guard{spec: spec, live: live, gate: live.Gate(spec.Budget)}, nil
}

// Guards starts guards from journaled specs, for resumed operations.
func Guards(cs kubernetes.Interface, started func(*Guard)) operation.Guards {
	return func(ctx context.Context, raw json.RawMessage) (operation.Guard, error) {
		var spec GuardSpec
		if err := json.Unmarshal(raw, &spec); err != nil {
			return nil, fmt.Errorf("reading the journaled guard: %w", err)
		}
		g, err := StartGuard(ctx, cs, spec)
		if err != nil {
			return nil, err
		}
		started(g)
		return g, nil
	}
}

// Check holds the latest numbers against the budget.
func (g *Guard) Check(ctx context.Context, next string) error {
	err := g.gate(ctx, next)
	if err != nil {
		g.hit.Store(true)
	}
	return err
}

// Aborts implements operation.Guard.
func (g *Guard) Aborts() bool { return g.spec.OnBudget == OnBudgetAbort }

// Spec implements operation.Guard.
func (g *Guard) Spec() json.RawMessage {
	b, _ := json.Marshal(g.spec)
	return b
}

// Hit reports whether the budget stopped the operation.
func (g *Guard) Hit() bool { return g.hit.Load() }

// Stop ends the session and returns its report, every loss window tied
// to the step of ops (the operation and the rolls inside it) that
// overlapped it; id names the operation.
func (g *Guard) Stop(ctx context.Context, id string, ops ...Steps) (*Report, error) {
	ctx = context.WithoutCancel(ctx)
	if g.spec.Settle > 0 {
		if err := g.live.Settle(ctx, g.spec.Settle, MaxSettle); err != nil {
			return nil, err
		}
	}
	rep, err := g.live.Stop(ctx, 15*time.Second)
	if err != nil {
		return nil, err
	}
	Attribute(rep, id, ops...)
	return rep, nil
}

// Session is how a front end (the CLI, the demo, the controller) runs an
// operation under a guard: Start starts one when the operation asks for
// probing; Guards lets the engine start the journaled one when it resumes
// an operation that ran under a guard; Finish stops whichever ran and
// ties its report to the operation's steps.
type Session struct {
	cs    kubernetes.Interface
	spec  *GuardSpec
	guard *Guard
}

// NewSession prepares a session; spec nil probes only a resumed
// operation that was probed before.
func NewSession(cs kubernetes.Interface, spec *GuardSpec) *Session {
	return &Session{cs: cs, spec: spec}
}

// Start starts the guard when the session has a spec.
func (s *Session) Start(ctx context.Context) error {
	if s.spec == nil {
		return nil
	}
	g, err := StartGuard(ctx, s.cs, *s.spec)
	if err != nil {
		return err
	}
	s.guard = g
	return nil
}

// Guard is the running guard, or nil.
func (s *Session) Guard() operation.Guard {
	if s.guard == nil {
		return nil
	}
	return s.guard
}

// Hit reports whether the budget stopped the operation.
func (s *Session) Hit() bool { return s.guard != nil && s.guard.Hit() }

// Guards starts the journaled guard of a resumed operation.
func (s *Session) Guards() operation.Guards {
	return Guards(s.cs, func(g *Guard) { s.guard = g })
}

// Finish stops the guard, if one ran, and returns its report tied to
// ops; nil when nothing was measured.
func (s *Session) Finish(ctx context.Context, id string, ops ...Steps) (*Report, error) {
	if s.guard == nil {
		return nil, nil
	}
	return s.guard.Stop(ctx, id, ops...)
}

package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/kube/condition"
)

// Kind is the journal kind of a migration.
const Kind = "migrate"

// Options configure Run.
type Options struct {
	// Plan is the parsed plan (plan.Parse or plan.Builtin).
	Plan *plan.Plan
	// Set are the user's parameter values, as text.
	Set map[string]string
	// DryRun checks the plan against the cluster and stops.
	DryRun  bool
	Command string
	// Approver answers the plan's pause steps and its rolls' questions.
	Approver operation.Approver
	// Progress receives one line per step and wait. May be nil.
	Progress func(string)
	// RollProgress receives the rolls' node events. May be nil.
	RollProgress func(roll.Event)
	// Guard, when set, watches the whole migration and gates every node
	// of its rolls; Guards starts the journaled one again on a resume.
	Guard  operation.Guard
	Guards operation.Guards
	// Actions is the per-node action registry of the roll steps (nil:
	// roll.DefaultActions plus reboot).
	Actions *roll.Actions
	// Sources are the releases the component steps deploy, by the name
	// a step's `source` gives.
	Sources map[string]*component.Source
	// OnBackup, when set, is given the objects a backup step saved and
	// returns where it kept them (the CLI's 0600 file).
	OnBackup func(ctx context.Context, step string, objs []*unstructured.Unstructured) (string, error)
	// AgentTimeout is how long the profile's checks wait for the node
	// agents' fresh results (MTU, kernel, ports, connectivity); 0 runs
	// them without the agents.
	AgentTimeout time.Duration
	// Poll is how often waits and gates read the cluster (default 1s).
	Poll time.Duration
	// Started, when set, is told the operation's ID once its journal is
	// open (new or resumed), before the first step.
	Started func(id string)
}

func (o *Options) progressf(format string, args ...any) {
	if o.Progress != nil {
		o.Progress(fmt.Sprintf(format, args...))
	}
}

// Result is what Run (or Rollback) did.
type Result struct {
	Operation string         `json:"operation,omitempty"`
	Plan      *plan.Plan     `json:"plan"`
	Params    map[string]any `json:"params"`
	// Skipped are the steps whose `when` is false with these parameters.
	Skipped []string `json:"skipped,omitempty"`
	// Rollbacks say how each step is undone.
	Rollbacks map[string]string `json:"rollbacks"`
	// Warnings are what the check against the cluster could not verify.
	Warnings []string       `json:"warnings,omitempty"`
	Resumed  bool           `json:"resumed"`
	DryRun   bool           `json:"dryRun"`
	Steps    []journal.Step `json:"steps,omitempty"`
	// RollJournals are the journals of the rolls this run ran, by step,
	// for the guard's report.
	RollJournals map[string][]*roll.Journal `json:"-"`
}

// Spans are the migration's steps and its rolls' node phases (named
// step/phase), for tying measured loss to the step and node that caused
// it.
func (r *Result) Spans(now time.Time) []journal.Span {
	var out []journal.Span
	for _, s := range r.Steps {
		end := now
		if s.Finished != nil {
			end = *s.Finished
		}
		out = append(out, journal.Span{Phase: s.Name, Start: s.Started, End: end})
	}
	for step, ops := range r.RollJournals {
		for _, op := range ops {
			for _, sp := range op.Record.Spans(now) {
				sp.Phase = step + "/" + sp.Phase
				out = append(out, sp)
			}
		}
	}
	return out
}

// PausedError stops a migration before a step, or inside one (In: a
// roll paused before its next node), with the reason (a gate that does
// not hold, a wait that timed out, a disruption budget exceeded): fixing
// the cause and running the same command again continues.
type PausedError struct {
	Step   string
	Reason string
	In     bool
}

func (e *PausedError) Error() string {
	where := "before"
	if e.In {
		where = "in"
	}
	return fmt.Sprintf("paused %s step %s: %s (fix it and run the same command again to continue)", where, e.Step, e.Reason)
}

// Record is a migration's own part of its journal.
type Record struct {
	// Plan is the plan as given, so that a rollback needs no file.
	Plan    *plan.Plan     `json:"plan"`
	Params  map[string]any `json:"params"`
	Skipped []string       `json:"skipped,omitempty"`
	// Rolls are the roll operations a step started, by step.
	Rolls map[string][]string `json:"rolls,omitempty"`
	// Groups are the nodes of each group of a roll step, worked out once.
	Groups map[string][][]string `json:"groups,omitempty"`
	// Components are the revisions a component step replaced, by step.
	Components map[string]componentRecord `json:"components,omitempty"`
	// Undone are the steps a rollback has undone.
	Undone []string `json:"undone,omitempty"`
	// Returned are the nodes a roll step moved that were rolled back
	// (alone or with the whole migration), by step.
	Returned map[string][]string `json:"returned,omitempty"`
	// Again are the nodes moved a second time after a per-node
	// rollback, with the reason.
	Again []Again `json:"again,omitempty"`
}

// Again is one second move of nodes, and why.
type Again struct {
	Step   string   `json:"step"`
	Nodes  []string `json:"nodes"`
	Roll   string   `json:"roll"`
	Reason string   `json:"reason"`
}

type componentRecord struct {
	Name     string `json:"name"`
	Action   string `json:"action"`
	Previous int    `json:"previous"`
	Revision int    `json:"revision"`
	// InFlight: journaled before the component operation, not yet
	// marked done (Revision is not known yet).
	InFlight bool `json:"inFlight,omitempty"`
}

// Journal is a migration's journal.
type Journal = journal.Entry[Record]

// spec identifies a migration for resume: the same plan document and
// parameters resume the same operation.
type spec struct {
	Plan       string         `json:"plan"`
	PlanDigest string         `json:"planDigest"`
	Params     map[string]any `json:"params"`
}

func specOf(p *plan.Plan, params map[string]any) spec {
	return spec{Plan: p.Metadata.Name, PlanDigest: operation.Hash(p), Params: params}
}

// SpecHash identifies the migration of p with the parameters set: a
// front end finds its unfinished journal by it (journal.Store.Resumable).
func SpecHash(ctx context.Context, p *plan.Plan, set map[string]string) (string, error) {
	params, err := p.Params(ctx, set)
	if err != nil {
		return "", err
	}
	return operation.Hash(specOf(p, params)), nil
}

// Run checks the plan against the cluster and, unless DryRun, runs it: a
// new operation, or the unfinished one of the same plan and parameters.
func Run(ctx context.Context, c operation.Cluster, opts Options) (*Result, error) {
	if opts.Plan == nil {
		return nil, &plan.Error{Field: "plan", Msg: "no plan given"}
	}
	if opts.Poll == 0 {
		opts.Poll = time.Second
	}
	params, err := opts.Plan.Params(ctx, opts.Set)
	if err != nil {
		return nil, err
	}
	rendered, skipped, err := opts.Plan.Render(ctx, params)
	if err != nil {
		return nil, err
	}
	res := &Result{Plan: rendered, Params: params, Skipped: skipped, DryRun: opts.DryRun, Rollbacks: map[string]string{}}
	for _, s := range rendered.Steps {
		res.Rollbacks[s.Name] = DescribeRollback(s)
	}
	objs, err := newObjects(c)
	if err != nil {
		return nil, err
	}
	cel := condition.NewCompiler(condition.Discovery(c.Client.Discovery()))
	sp := specOf(opts.Plan, params)
	// A resumed run does not check what the steps it finished named: a
	// later step may have removed it (the source uninstalled).
	finished, err := finishedSteps(ctx, c, sp)
	if err != nil {
		return res, err
	}
	if res.Warnings, err = checkPlan(ctx, objs, cel, withoutSteps(rendered, finished), opts); err != nil {
		return res, err
	}
	if opts.DryRun {
		return res, nil
	}
	r := &runner{c: c, opts: opts, objs: objs, res: res, plan: rendered, cel: cel}
	if err := r.start(ctx, sp); err != nil {
		return res, err
	}
	defer r.lock.Close(ctx)
	if opts.Started != nil {
		opts.Started(res.Operation)
	}
	// An abort (hitless abort ID) marks the journal Aborting: the run
	// stops wherever it is, even inside a long wait.
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go r.store.WatchStatus(runCtx, res.Operation, func(s journal.Status) {
		if s == journal.Aborting {
			cancel(journal.ErrAborted)
		}
	})
	runErr := r.run(runCtx)
	if errors.Is(context.Cause(runCtx), journal.ErrAborted) {
		runErr = journal.ErrAborted
	}
	return res, r.close(ctx, runErr)
}

// finishedSteps are the steps the unfinished migration of sp finished
// (none for a new one).
func finishedSteps(ctx context.Context, c operation.Cluster, sp spec) (map[string]bool, error) {
	raw, err := journal.NewStore(c.Client).Resumable(ctx, Kind, operation.Hash(sp))
	if err != nil || raw == nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, s := range raw.Steps {
		if s.Finished != nil && s.Error == "" {
			out[s.Name] = true
		}
	}
	return out, nil
}

// withoutSteps is p less the steps named in drop; an earlier component
// step among them still counts as bringing kinds and objects.
func withoutSteps(p *plan.Plan, drop map[string]bool) *plan.Plan {
	if len(drop) == 0 {
		return p
	}
	out := *p
	out.Steps = nil
	for _, s := range p.Steps {
		if !drop[s.Name] {
			out.Steps = append(out.Steps, s)
		}
	}
	return &out
}

// runner is one process's run of a migration (or its rollback).
type runner struct {
	c     operation.Cluster
	opts  Options
	objs  *objects
	res   *Result
	plan  *plan.Plan // rendered
	w     *journal.Writer[Record]
	lock  *lock.Lock
	store *journal.Store
	cel   *condition.Compiler
	// compiled are the conditions compiled so far, by kind and text.
	compiled map[string][2]*condition.Program
	// ctx is the run's context, which run-syncs live in; syncs are the
	// run-syncs going on.
	ctx   context.Context
	syncs map[string]*runSync
	// mu guards what a run-sync shares with the steps: the backups'
	// read-modify-write and the compiled transforms.
	mu         sync.Mutex
	transforms map[string]*condition.Program
}

func (r *runner) start(ctx context.Context, sp spec) error {
	r.store = journal.NewStore(r.c.Client)
	raw, err := r.store.Resumable(ctx, Kind, operation.Hash(sp))
	if err != nil {
		return err
	}
	var existing *Journal
	if raw != nil {
		if err := journal.Current(&raw.Operation); err != nil {
			return err
		}
		if existing, err = journal.Decode[Record](raw); err != nil {
			return err
		}
		if r.opts.Guard, err = operation.Attach(ctx, r.opts.Guard, existing.Guard, r.opts.Guards); err != nil {
			return err
		}
	}
	id := journal.NewID(Kind)
	if existing != nil {
		id = existing.ID
	}
	if r.lock, err = lock.Acquire(ctx, r.c.Client, lock.Self(id, r.opts.Command)); err != nil {
		return err
	}
	r.res.Operation = id
	if existing != nil {
		r.res.Resumed = true
		r.w = journal.NewWriter(r.store, existing)
		return r.w.Update(ctx, func(op *Journal) {
			op.Runs++
			op.Status, op.Message = journal.Running, ""
		})
	}
	specJSON, err := json.Marshal(sp)
	if err != nil {
		return fmt.Errorf("encoding the spec: %w", err)
	}
	op := &Journal{
		Operation: journal.Operation{ID: id, Kind: Kind, Command: r.opts.Command, SpecHash: operation.Hash(sp), Spec: specJSON, Status: journal.Running, Started: time.Now().UTC(), Runs: 1},
		Record:    Record{Plan: r.opts.Plan, Params: r.res.Params, Skipped: r.res.Skipped},
	}
	if r.opts.Guard != nil {
		op.Guard = r.opts.Guard.Spec()
	}
	if err := journal.Create(ctx, r.store, op); err != nil {
		r.lock.Close(ctx)
		return err
	}
	r.w = journal.NewWriter(r.store, op)
	return nil
}

// run runs the profile's preflight, the steps in order and the
// postflight; each is skipped when an earlier run finished it.
func (r *runner) run(ctx context.Context) error {
	r.ctx = ctx
	defer r.stopAllRunSyncs()
	if p := r.plan.Profile; p != "" {
		if err := r.step(ctx, "preflight", func(ctx context.Context) ([]string, error) {
			return r.runCheck(ctx, plan.Check{Profile: p, Kind: "preflight"})
		}); err != nil {
			return err
		}
	}
	for _, s := range r.plan.Steps {
		if done := r.w.Snapshot().StepByName(s.Name); done != nil && done.Finished != nil && done.Error == "" {
			r.opts.progressf("%-10s done before the restart", s.Name)
			r.resumeRunSync(s)
			continue
		}
		if err := r.guard(ctx, s.Name); err != nil {
			return err
		}
		if !s.SkipGates {
			if err := r.gates(ctx, s.Name); err != nil {
				return err
			}
		}
		if err := r.step(ctx, s.Name, func(ctx context.Context) ([]string, error) {
			return r.forward(ctx, s)
		}); err != nil {
			return err
		}
	}
	if p := r.plan.Profile; p != "" {
		return r.step(ctx, "postflight", func(ctx context.Context) ([]string, error) {
			return r.runCheck(ctx, plan.Check{Profile: p, Kind: "postflight", NetworkType: r.plan.NetworkType})
		})
	}
	return nil
}

// guard asks the migration's guard before a step: a refusal pauses the
// migration before it (a guard that aborts fails it instead).
func (r *runner) guard(ctx context.Context, step string) error {
	g := r.opts.Guard
	if g == nil {
		return nil
	}
	if err := g.Check(ctx, operation.StepTarget(step)); err != nil {
		if g.Aborts() {
			return fmt.Errorf("before step %s: %w", step, err)
		}
		return &PausedError{Step: step, Reason: err.Error()}
	}
	return nil
}

func (r *runner) step(ctx context.Context, name string, fn func(ctx context.Context) ([]string, error)) error {
	return operation.Step(ctx, r.w, name, r.opts.Progress, fn)
}

// close journals how the run ended: a pause is Paused (resumable), a
// cancellation Interrupted.
func (r *runner) close(ctx context.Context, runErr error) error {
	status, msg := journal.Succeeded, ""
	var paused *PausedError
	if runErr != nil {
		status, msg = journal.Failed, runErr.Error()
		switch {
		case errors.As(runErr, &paused):
			status = journal.Paused
		case errors.Is(runErr, context.Canceled):
			status = journal.Interrupted
		case errors.Is(runErr, journal.ErrAborted):
			// Someone asked for an abort: stop here and leave it Aborting;
			// the abort takes the lock once it is free and undoes the
			// steps (the kind's Undo).
			r.res.Steps = r.w.Snapshot().Steps
			return runErr
		}
	}
	now := time.Now().UTC()
	err := r.w.Force(context.WithoutCancel(ctx), func(op *Journal) {
		op.Status, op.Message = status, msg
		if status == journal.Succeeded {
			op.Finished = &now
		}
	})
	r.res.Steps = r.w.Snapshot().Steps
	if runErr != nil {
		return runErr
	}
	return err
}

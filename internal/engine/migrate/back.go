package migrate

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// invertible tells whether every action of a roll step has an inverse
// in the default registry (a cutover does; a reboot, an exec do not).
func invertible(p *plan.Roll) bool {
	if len(p.Actions) == 0 {
		return false
	}
	_, err := Actions().Inverse(p.Actions)
	return err == nil
}

func actionNames(p *plan.Roll) string {
	var out []string
	for _, a := range p.Actions {
		out = append(out, a.Name)
	}
	return strings.Join(out, ", ")
}

// touchedNodes lists, in the order they were rolled, the nodes of a roll step
// whose actions started (a node in flight counts: its action may have
// acted), read from the step's roll journals.
func (r *runner) touchedNodes(ctx context.Context, step string, p *plan.Roll) ([]string, error) {
	var out []string
	var raws []*journal.Raw
	for _, id := range r.w.Snapshot().Record.Rolls[step] {
		raw, err := r.store.Get(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("reading roll %s of step %s: %w", id, step, err)
		}
		raws = append(raws, raw)
	}
	// A roll interrupted before it returned is not in the record yet:
	// it is found by its spec.
	err := r.openRolls(ctx, step, p, func(_ int, raw *journal.Raw) error {
		if !slices.ContainsFunc(raws, func(x *journal.Raw) bool { return x.ID == raw.ID }) {
			raws = append(raws, raw)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, raw := range raws {
		op, err := journal.Decode[roll.Record](raw)
		if err != nil {
			return nil, err
		}
		for _, n := range op.Record.Nodes {
			if n.ActionRuns > 0 && !slices.Contains(out, n.Name) {
				out = append(out, n.Name)
			}
		}
	}
	return out, nil
}

// rollBack rolls nodes of a roll step back, newest first, with the
// step's inverse actions: one roll, journaled by its spec (a rerun
// resumes it), under the migration's lock and guard. The nodes are
// then journaled as returned, so nothing rolls them back twice.
func (r *runner) rollBack(ctx context.Context, step string, p *plan.Roll, nodes []string) ([]string, error) {
	inv, err := r.actions().Inverse(p.Actions)
	if err != nil {
		return nil, err
	}
	back := slices.Clone(nodes)
	slices.Reverse(back)
	spec := rollSpec(p, plan.RollGroup{Batch: "1"}, back)
	spec.Actions = inv
	r.opts.progressf("%-10s rolling %d node(s) back: %s", step, len(back), strings.Join(back, ", "))
	res, err := r.runRoll(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("rolling %s back: %w", strings.Join(back, ", "), err)
	}
	if err := r.w.Update(ctx, func(op *Journal) {
		if op.Record.Returned == nil {
			op.Record.Returned = map[string][]string{}
		}
		for _, n := range back {
			if !slices.Contains(op.Record.Returned[step], n) {
				op.Record.Returned[step] = append(op.Record.Returned[step], n)
			}
		}
	}); err != nil {
		return nil, err
	}
	return []string{fmt.Sprintf("rolled %s back (%s)", strings.Join(back, ", "), res.Operation.ID)}, nil
}

// returnAll rolls back every node of the step whose action ran and that
// is not back already.
func (r *runner) returnAll(ctx context.Context, step string, p *plan.Roll) ([]string, error) {
	touched, err := r.touchedNodes(ctx, step, p)
	if err != nil {
		return nil, err
	}
	returned := r.w.Snapshot().Record.Returned[step]
	var todo []string
	for _, n := range touched {
		if !slices.Contains(returned, n) {
			todo = append(todo, n)
		}
	}
	if len(todo) == 0 {
		return []string{"no node to roll back"}, nil
	}
	return r.rollBack(ctx, step, p, todo)
}

// returnNodes is a per-node rollback: the named nodes, and only they,
// are rolled back by the roll steps that moved them; the migration's
// other nodes and steps are untouched. A node no invertible step moved
// is refused before anything changes.
func (r *runner) returnNodes(ctx context.Context, nodes []string) error {
	plans := map[string][]string{}
	left := slices.Clone(nodes)
	var steps []plan.Step
	for _, s := range r.plan.Steps {
		if s.Roll == nil || !invertible(s.Roll) {
			continue
		}
		touched, err := r.touchedNodes(ctx, s.Name, s.Roll)
		if err != nil {
			return err
		}
		returned := r.w.Snapshot().Record.Returned[s.Name]
		for _, n := range touched {
			if i := slices.Index(left, n); i >= 0 {
				left = slices.Delete(left, i, i+1)
				if !slices.Contains(returned, n) {
					plans[s.Name] = append(plans[s.Name], n)
				}
			}
		}
		steps = append(steps, s)
	}
	if len(left) > 0 {
		return &operation.FieldError{Field: "nodes", Msg: fmt.Sprintf("migration %s moved no node named %s (only the nodes a roll step with an inverse action moved can be rolled back alone)", r.res.Operation, strings.Join(left, ", "))}
	}
	// The newest step's nodes first.
	slices.Reverse(steps)
	for _, s := range steps {
		todo := plans[s.Name]
		if len(todo) == 0 {
			continue
		}
		name := "return-" + strings.Join(todo, ",")
		if err := r.step(ctx, name, func(ctx context.Context) ([]string, error) {
			return r.rollBack(ctx, s.Name, s.Roll, todo)
		}); err != nil {
			return err
		}
		// The step is open again: the next run of the migration moves
		// these nodes again, saying why.
		if err := r.w.Update(ctx, func(op *Journal) {
			if js := op.StepByName(s.Name); js != nil && js.Finished != nil && js.Error == "" {
				js.Error = "node(s) " + strings.Join(todo, ", ") + " rolled back alone; the next run moves them again"
			}
		}); err != nil {
			return err
		}
	}
	return nil
}

// again moves the nodes a per-node rollback returned, with the step's
// own actions: a second cutover of a node, journaled with its reason.
func (r *runner) again(ctx context.Context, step string, p *plan.Roll) ([]string, error) {
	nodes := r.w.Snapshot().Record.Returned[step]
	if len(nodes) == 0 {
		return nil, nil
	}
	r.opts.progressf("%-10s moving %s again (rolled back alone before)", step, strings.Join(nodes, ", "))
	spec := rollSpec(p, plan.RollGroup{Batch: "1"}, nodes)
	res, err := r.runRoll(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("moving %s again: %w", strings.Join(nodes, ", "), err)
	}
	if err := r.w.Update(ctx, func(op *Journal) {
		op.Record.Again = append(op.Record.Again, Again{Step: step, Nodes: nodes, Roll: res.Operation.ID, Reason: "rolled back alone before"})
		op.Record.Returned[step] = slices.DeleteFunc(op.Record.Returned[step], func(n string) bool { return slices.Contains(nodes, n) })
		if !slices.Contains(op.Record.Rolls[step], res.Operation.ID) {
			op.Record.Rolls[step] = append(op.Record.Rolls[step], res.Operation.ID)
		}
	}); err != nil {
		return nil, err
	}
	return []string{fmt.Sprintf("moved %s again (%s): rolled back alone before", strings.Join(nodes, ", "), res.Operation.ID)}, nil
}

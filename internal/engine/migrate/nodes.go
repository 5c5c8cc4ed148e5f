package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/klog/v2"

	"github.com/hitless-dev/hitless/internal/check/catalog"
	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/component/manifest"
	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/cutover"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// roll rolls the step's groups in order, each a roll under the
// migration's lock. The nodes of each group are journaled before the
// first roll starts, so a resumed step rolls the same nodes (a roll
// resumes by its spec).
func (r *runner) roll(ctx context.Context, step string, p *plan.Roll) ([]string, error) {
	groups, err := r.groupNodes(ctx, step, p)
	if err != nil {
		return nil, err
	}
	var lines []string
	for i, g := range p.Groups {
		nodes := groups[i]
		if len(nodes) == 0 {
			lines = append(lines, fmt.Sprintf("group %s: no node", groupName(g, i)))
			continue
		}
		spec := rollSpec(p, g, nodes)
		r.opts.progressf("%-10s group %s: %d node(s), batch %s", step, groupName(g, i), len(nodes), batchOf(g))
		res, err := r.runRoll(ctx, spec)
		if res != nil && res.Operation != nil {
			if r.res.RollJournals == nil {
				r.res.RollJournals = map[string][]*roll.Journal{}
			}
			r.res.RollJournals[step] = append(r.res.RollJournals[step], res.Operation)
			if jerr := r.w.Update(ctx, func(op *Journal) {
				if op.Record.Rolls == nil {
					op.Record.Rolls = map[string][]string{}
				}
				if !slices.Contains(op.Record.Rolls[step], res.Operation.ID) {
					op.Record.Rolls[step] = append(op.Record.Rolls[step], res.Operation.ID)
				}
			}); jerr != nil && err == nil {
				err = jerr
			}
		}
		var incomplete *roll.IncompleteError
		if errors.As(err, &incomplete) && incomplete.Status == journal.Paused {
			// A paused roll (a disruption budget, a drain that timed out)
			// pauses the migration inside the step: the same command
			// resumes the roll at its next node.
			return lines, &PausedError{Step: step, In: true, Reason: fmt.Sprintf("group %s: %s", groupName(g, i), err)}
		}
		if err != nil {
			return lines, fmt.Errorf("group %s: %w", groupName(g, i), err)
		}
		lines = append(lines, fmt.Sprintf("group %s: %d node(s) rolled (%s)", groupName(g, i), len(nodes), res.Operation.ID))
	}
	more, err := r.again(ctx, step, p)
	return append(lines, more...), err
}

// runRoll runs (or resumes) one roll of the migration's nodes.
func (r *runner) runRoll(ctx context.Context, spec roll.Spec) (*roll.Result, error) {
	return roll.Run(ctx, r.c.Client, roll.Options{Spec: spec, Command: r.opts.Command, Approver: r.opts.Approver,
		Progress: r.opts.RollProgress, Guard: r.opts.Guard, Guards: r.opts.Guards, Actions: r.actions(), Lock: r.lock})
}

func rollSpec(p *plan.Roll, g plan.RollGroup, nodes []string) roll.Spec {
	return roll.Spec{Nodes: nodes, Batch: g.Batch, Actions: p.Actions, MaxFailures: p.MaxFailures,
		DrainTimeout: plan.Duration(p.DrainTimeout, 0), ActionTimeout: plan.Duration(p.ActionTimeout, 0)}
}

// openRolls calls fn with each group of a step whose roll was
// interrupted before it returned (found by its spec), and its journal.
func (r *runner) openRolls(ctx context.Context, step string, p *plan.Roll, fn func(group int, raw *journal.Raw) error) error {
	for i, nodes := range r.w.Snapshot().Record.Groups[step] {
		if i >= len(p.Groups) || len(nodes) == 0 {
			continue
		}
		spec := rollSpec(p, p.Groups[i], nodes)
		spec.Defaults()
		raw, err := r.store.Resumable(ctx, roll.Kind, spec.Hash())
		if err != nil {
			return err
		}
		if raw != nil {
			if err := fn(i, raw); err != nil {
				return err
			}
		}
	}
	return nil
}

// undoRolls aborts the rolls of a step that did not finish (their nodes
// in flight are uncordoned); rolled nodes stay rolled.
func (r *runner) undoRolls(ctx context.Context, step string, p *plan.Roll) ([]string, error) {
	var lines []string
	err := r.openRolls(ctx, step, p, func(i int, raw *journal.Raw) error {
		if err := roll.OperationKind().Undo(ctx, r.c, raw); err != nil {
			return err
		}
		if _, err := r.store.Close(ctx, raw.ID, journal.Aborted, "aborted with migration "+r.res.Operation); err != nil {
			return err
		}
		lines = append(lines, "aborted roll "+raw.ID+" of group "+groupName(p.Groups[i], i))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if invertible(p) {
		more, err := r.returnAll(ctx, step, p)
		return append(lines, more...), err
	}
	if len(lines) == 0 {
		lines = append(lines, "no roll in flight; rolled nodes stay rolled")
	}
	return lines, nil
}

// groupNodes returns the nodes of each group, worked out once and
// journaled: a node in two groups rolls with the first.
func (r *runner) groupNodes(ctx context.Context, step string, p *plan.Roll) ([][]string, error) {
	if g, ok := r.w.Snapshot().Record.Groups[step]; ok {
		return g, nil
	}
	seen := map[string]bool{}
	out := make([][]string, len(p.Groups))
	for i, g := range p.Groups {
		l, err := r.c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: g.Selector})
		if err != nil {
			return nil, fmt.Errorf("listing the nodes of group %s: %w", groupName(g, i), err)
		}
		for _, n := range l.Items {
			if !seen[n.Name] {
				seen[n.Name] = true
				out[i] = append(out[i], n.Name)
			}
		}
	}
	err := r.w.Update(ctx, func(op *Journal) {
		if op.Record.Groups == nil {
			op.Record.Groups = map[string][][]string{}
		}
		op.Record.Groups[step] = out
	})
	return out, err
}

func (r *runner) actions() *roll.Actions {
	if r.opts.Actions != nil {
		return r.opts.Actions
	}
	return Actions()
}

// Actions is roll.DefaultActions plus reboot and cutover.
func Actions() *roll.Actions {
	a := roll.DefaultActions()
	// A fresh registry has neither yet.
	_ = a.Register(RebootAction())
	_ = a.Register(cutover.Type())
	return a
}

func groupName(g plan.RollGroup, i int) string {
	if g.Name != "" {
		return g.Name
	}
	return fmt.Sprintf("#%d (%s)", i+1, g.Selector)
}

func batchOf(g plan.RollGroup) string {
	if g.Batch == "" {
		return "1"
	}
	return g.Batch
}

// component installs, upgrades or uninstalls through the lifecycle engine
// under the migration's lock, recording the revision it replaced.
func (r *runner) component(ctx context.Context, step string, p *plan.Component) ([]string, error) {
	opts := lifecycle.Options{Name: p.Name, Command: r.opts.Command, Lock: r.lock, Guard: r.opts.Guard, Guards: r.opts.Guards,
		RollProgress: r.opts.RollProgress}
	if p.Source != "" {
		src, ok := r.opts.Sources[p.Source]
		if !ok {
			return nil, &plan.Error{Step: step, Field: "component.source", Msg: fmt.Sprintf("no release %q was given", p.Source)}
		}
		opts.Source = src
		if len(p.NodeSelector) > 0 {
			sel, err := selectNodes(src, p.NodeSelector)
			if err != nil {
				return nil, &plan.Error{Step: step, Field: "component.nodeSelector", Msg: err.Error()}
			}
			opts.Source = sel
		}
	}
	// The step is journaled before it acts, with the revision it
	// replaces: a run killed after the component operation ended but
	// before the step was marked done finds the install it made (an
	// install run again would be refused: the component is installed),
	// and a rollback knows what to undo.
	cur, err := r.deployed(ctx, p.Name)
	if err != nil {
		return nil, err
	}
	before := 0
	if cur != nil {
		before = cur.Number
	}
	// A record in flight is an earlier run's, killed in the act; any
	// other (none, or a step done before and now run again) starts anew.
	rec, started := r.w.Snapshot().Record.Components[step]
	if !started || !rec.InFlight {
		rec = componentRecord{Name: p.Name, Action: p.Action, Previous: before, InFlight: true}
		if err := r.recordComponent(ctx, step, rec); err != nil {
			return nil, err
		}
	}
	var res *lifecycle.Result
	switch {
	case p.Action == plan.ComponentInstall && rec.InFlight && before > rec.Previous:
		klog.FromContext(ctx).Info("the install of an earlier run is done", "component", p.Name, "revision", cur.Number, "operation", cur.Operation)
		res = &lifecycle.Result{Revision: cur.Number, Previous: rec.Previous, Operation: cur.Operation}
	case p.Action == plan.ComponentInstall:
		res, err = lifecycle.Install(ctx, r.c, opts)
	case p.Action == plan.ComponentUpgrade:
		res, err = lifecycle.Upgrade(ctx, r.c, opts)
	case p.Action == plan.ComponentUninstall:
		res, err = lifecycle.Uninstall(ctx, r.c, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", p.Action, p.Name, err)
	}
	rec.InFlight, rec.Revision = false, res.Revision
	if err := r.recordComponent(ctx, step, rec); err != nil {
		return nil, err
	}
	return []string{fmt.Sprintf("%s %s: revision %d (operation %s)", p.Action, p.Name, res.Revision, res.Operation)}, nil
}

// deployed is the component's deployed revision, nil when none is.
func (r *runner) deployed(ctx context.Context, name string) (*release.Revision, error) {
	revs, err := release.NewStore(r.c.Client).List(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("reading the revisions of %s: %w", name, err)
	}
	return release.Current(revs), nil
}

// recordComponent journals a component step.
func (r *runner) recordComponent(ctx context.Context, step string, rec componentRecord) error {
	return r.w.Update(ctx, func(op *Journal) {
		if op.Record.Components == nil {
			op.Record.Components = map[string]componentRecord{}
		}
		op.Record.Components[step] = rec
	})
}

// runCheck runs a profile's checks with the plan's network parameters,
// asking the node agents when the options say so; a hard failure stops
// the plan.
func (r *runner) runCheck(ctx context.Context, chk plan.Check) ([]string, error) {
	network, err := r.plan.NetworkParams()
	if err != nil {
		return nil, err
	}
	prep, err := catalog.Prepare(catalog.Options{Kind: chk.Kind, Profile: chk.Profile, NetworkType: chk.NetworkType,
		Network: network, AgentTimeout: r.opts.AgentTimeout})
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(r.c.Config)
	if err != nil {
		return nil, fmt.Errorf("creating a dynamic client: %w", err)
	}
	rep, err := prep.Run(ctx, r.c.Client, dyn)
	if err != nil {
		return nil, err
	}
	lines := []string{fmt.Sprintf("%s %s (%s): %d pass, %d warn, %d fail, %d skip", chk.Kind, chk.Profile, rep.ID, rep.Summary.Pass, rep.Summary.Warn, rep.Summary.Fail, rep.Summary.Skip)}
	if !rep.Summary.OK {
		var failed []string
		for _, res := range rep.Results {
			if res.Blocking() {
				failed = append(failed, res.ID+": "+res.Message)
			}
		}
		return lines, fmt.Errorf("%s %s failed: %s", chk.Kind, chk.Profile, strings.Join(failed, "; "))
	}
	return lines, nil
}

// selectNodes returns a copy of the release whose DaemonSets carry the
// node selector; the release's own objects are not changed. A release
// without a DaemonSet is refused: the selector would place nothing.
func selectNodes(src *component.Source, sel map[string]string) (*component.Source, error) {
	out := *src
	out.Objects = make([]manifest.Object, len(src.Objects))
	n := 0
	for i, o := range src.Objects {
		out.Objects[i] = o
		if o.GetKind() != "DaemonSet" {
			continue
		}
		u := o.DeepCopy()
		for k, v := range sel {
			if err := unstructured.SetNestedField(u.Object, v, "spec", "template", "spec", "nodeSelector", k); err != nil {
				return nil, fmt.Errorf("DaemonSet %s/%s: %w", u.GetNamespace(), u.GetName(), err)
			}
		}
		out.Objects[i] = manifest.Object{Unstructured: u, File: o.File, Document: o.Document}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("release %s has no DaemonSet to place", src.Path)
	}
	return &out, nil
}

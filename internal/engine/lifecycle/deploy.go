package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/hitless-dev/hitless/internal/check/profile"
	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/component/apply"
	"github.com/hitless-dev/hitless/internal/component/chart"
	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/kube/store"
)

// Install deploys a component that is not installed: revision 1, or the
// next after an uninstall.
func Install(ctx context.Context, c Cluster, opts Options) (*Result, error) {
	return deploy(ctx, c, ActionInstall, opts)
}

// Upgrade deploys a new release of an installed component with the
// user's customizations carried over.
func Upgrade(ctx context.Context, c Cluster, opts Options) (*Result, error) {
	return deploy(ctx, c, ActionUpgrade, opts)
}

// Rollback re-deploys an earlier revision's release, customizations
// carried, and prunes what that revision did not have.
func Rollback(ctx context.Context, c Cluster, opts Options) (*Result, error) {
	return deploy(ctx, c, ActionRollback, opts)
}

// deploy is install, upgrade and rollback: work out the next revision's
// objects (or take them from the unfinished operation being resumed),
// plan, then run the journaled steps.
func deploy(ctx context.Context, c Cluster, action string, opts Options) (*Result, error) {
	opts.defaults()
	if err := validateDeploy(opts); err != nil {
		return nil, err
	}
	store := release.NewStore(c.Client)
	revs, err := store.List(ctx, opts.Name)
	if err != nil {
		return nil, err
	}
	current := release.Current(revs)
	in, err := sources(ctx, c, action, opts, revs, current)
	if err != nil {
		return nil, err
	}
	if in.source != nil {
		opts.Source = in.source
	}
	sp, vendor, from, target := in.spec, in.vendor, in.from, in.target

	jstore := journal.NewStore(c.Client)
	existing, err := resumable(ctx, jstore, action, sp.hash())
	if err != nil {
		return nil, err
	}
	var (
		rev *release.Revision
		st  state
	)
	if existing != nil {
		st = existing.Record
		rev = release.Find(revs, st.Revision)
	}
	res := &Result{Component: opts.Name, Action: action, DryRun: opts.DryRun}
	a, err := apply.New(c.Config)
	if err != nil {
		return nil, err
	}
	if rev == nil {
		// A new operation, or one killed before it recorded its revision:
		// that one is taken over with the revision worked out afresh.
		if rev, err = nextRevision(ctx, a, action, opts, revs, current, target, vendor, from, res); err != nil {
			return res, err
		}
		rev.Chart = in.chart
		st = state{Revision: rev.Number}
		if current != nil {
			st.Previous = current.Number
		}
	} else {
		res.Resumed = true
	}
	res.Revision, res.Previous = rev.Number, st.Previous
	describe(res, rev, opts.Source, in.skipped)
	desired := release.Objects(rev.Applied)
	prev := release.Find(revs, st.Previous) // nil for 0: an install
	prune := pruned(prev, revs, rev.Number, desired)
	res.Plan = deployPlan(opts.Name, action, rev, prev, desired, prune, opts.NodeSelectors)
	res.Warnings = strategyWarnings(desired, rev.DataPlane)
	if err := roomToDrain(ctx, c, res.Resumed); err != nil {
		return res, err
	}
	if opts.DryRun {
		if res.Plan.Changes, err = diffs(ctx, a, opts.Name, desired, prune, previous(prev)); err != nil {
			return res, err
		}
		return res, nil
	}

	r, err := start(ctx, c, action, opts, existing, res)
	if err != nil {
		return res, err
	}
	defer r.unlock(ctx)
	r.applier, r.store, r.rev, r.prev, r.st = a, store, rev, prev, st
	if err := r.open(ctx, jstore, existing, res.Operation, sp); err != nil {
		return res, err
	}
	if err := recordPending(ctx, store, revs, rev, res); err != nil {
		return res, err
	}
	runErr := r.deploySteps(ctx, desired, prune)
	return res, r.close(ctx, runErr)
}

// roomToDrain refuses a new operation when a node has no free pod slot:
// a drain would have nowhere to put its pods.
func roomToDrain(ctx context.Context, c Cluster, resumed bool) error {
	full, err := freeSlots(ctx, c.Client)
	if err != nil {
		return err
	}
	if len(full) > 0 && !resumed {
		return &StateError{Msg: "no free pod slot on node(s) " + strings.Join(full, ", ") + ": a drain has nowhere to put their pods and new pods may not fit; nothing was changed"}
	}
	return nil
}

// describe fills in what the result says of the revision: the source's
// images, the customizations carried, the notes and the chart.
func describe(res *Result, rev *release.Revision, src *component.Source, skipped []chart.Hook) {
	if src != nil {
		v := component.ImageVersions(src)
		res.Images = &v
	}
	res.Carried, res.Conflicts, res.Notes = rev.Carried, rev.Conflicts, rev.Notes
	for _, h := range skipped {
		res.Notes = append(res.Notes, "Helm hook left out: "+h.String())
	}
	if rev.Chart != nil {
		res.Chart = &ChartSummary{Name: rev.Chart.Name, Version: rev.Chart.Version, Namespace: rev.Chart.Namespace, Values: len(rev.Chart.Values)}
	}
}

// start attaches the guard of a resumed operation and takes the lock.
func start(ctx context.Context, c Cluster, action string, opts Options, existing *Journal, res *Result) (*runner, error) {
	if existing != nil {
		var err error
		if opts.Guard, err = operation.Attach(ctx, opts.Guard, existing.Guard, opts.Guards); err != nil {
			return nil, err
		}
	}
	id, lk, unlock, err := lockFor(ctx, c, action, existing, opts)
	if err != nil {
		return nil, err
	}
	res.Operation = id
	return &runner{c: c, opts: opts, lock: lk, unlock: unlock, res: res}, nil
}

// recordPending records the revision, pending, before anything changes:
// a resumed run deploys exactly these objects. A new operation marks the
// pending revisions nobody resumed failed first.
func recordPending(ctx context.Context, store *release.Store, revs []*release.Revision, rev *release.Revision, res *Result) error {
	if !res.Resumed {
		if err := abandon(ctx, store, revs); err != nil {
			return err
		}
	}
	if rev.Status == release.Deployed { // killed after its record step
		return nil
	}
	rev.Status, rev.Operation = release.Pending, res.Operation
	return store.Put(ctx, rev)
}

// validateDeploy checks the options that need no cluster.
func validateDeploy(opts Options) error {
	if err := validateName(opts.Name); err != nil {
		return err
	}
	if err := validateDurations(opts); err != nil {
		return err
	}
	if opts.Chart != nil && opts.Source != nil {
		return &InputError{Field: "source", Msg: "give manifests or a Helm chart, not both"}
	}
	if opts.Prefer != component.PreferNone && opts.Prefer != component.PreferUser && opts.Prefer != component.PreferVendor {
		return &InputError{Field: "prefer", Msg: fmt.Sprintf("%q: want vendor or user", opts.Prefer)}
	}
	if _, _, err := roll.ParseBatch(opts.Batch); err != nil {
		return &InputError{Field: "batch", Msg: err.Error()}
	}
	for _, sel := range opts.NodeSelectors {
		if _, err := labels.Parse(sel); err != nil {
			return &InputError{Field: "nodeSelectors", Msg: fmt.Sprintf("%q: %v", sel, err)}
		}
	}
	return nil
}

// inputs are what an install, upgrade or rollback deploys from, and the
// spec that identifies the operation for resume.
type inputs struct {
	spec         spec
	vendor, from []*unstructured.Unstructured
	target       *release.Revision // a rollback's
	// source and chart are a rendered chart's manifests and release.
	source  *component.Source
	chart   *release.Chart
	skipped []chart.Hook
}

// sources validates the sources against the cluster (or, for a rollback,
// finds the target revision) and works out the spec.
func sources(ctx context.Context, c Cluster, action string, opts Options, revs []*release.Revision, current *release.Revision) (*inputs, error) {
	in := &inputs{spec: spec{Action: action, Name: opts.Name, Prefer: opts.Prefer, DataPlane: opts.DataPlane, NodeSelectors: opts.NodeSelectors, Batch: opts.Batch}}
	var err error
	switch action {
	case ActionInstall, ActionUpgrade:
		if opts.Chart != nil {
			if err := render(ctx, c, action, opts, current, in); err != nil {
				return nil, err
			}
			opts.Source = in.source
		}
		if opts.Source == nil {
			return nil, &InputError{Field: "source", Msg: "required: the component's manifests (file, directory, kustomization or Helm chart)"}
		}
		p, err := profile.Get(opts.Profile)
		if err != nil {
			return nil, &InputError{Field: "profile", Msg: err.Error()}
		}
		if in.vendor, err = load(ctx, c.Client, opts.Source, component.Checks{MixedVersions: opts.MixedVersions, OneRelease: p.OneRelease}); err != nil {
			return nil, err
		}
		in.spec.Source, in.spec.SourceDigest = opts.Source.Path, digest(in.vendor)
		if in.chart != nil {
			// A chart may render afresh what it generates (certificates):
			// the operation is the chart and its values.
			in.spec.SourceDigest = operation.Hash(in.chart)
		}
	case ActionRollback:
		if in.target, err = rollbackTarget(opts.Name, revs, current, opts.Revision); err != nil {
			return nil, err
		}
		in.chart = in.target.Chart
		in.vendor = release.Objects(in.target.Vendor)
		in.spec.Revision = in.target.Number
	}
	if opts.From != nil {
		if action != ActionUpgrade {
			return nil, &InputError{Field: "from", Msg: "only upgrade takes `from`"}
		}
		if in.from, err = load(ctx, c.Client, opts.From, component.Checks{MixedVersions: true}); err != nil {
			return nil, err
		}
		in.spec.FromDigest = digest(in.from)
	}
	return in, nil
}

// render renders the operation's chart with the cluster's capabilities:
// an upgrade's values are the deployed revision's with the given ones
// laid over, unless ResetValues.
func render(ctx context.Context, c Cluster, action string, opts Options, current *release.Revision, in *inputs) error {
	vals := opts.Values
	if action == ActionUpgrade && !opts.ResetValues && current != nil && current.Chart != nil {
		vals = chart.Merge(current.Chart.Values, opts.Values)
	}
	caps, err := chart.Discover(c.Client.Discovery())
	if err != nil {
		return err
	}
	scope, err := component.NewClusterScope(ctx, c.Client)
	if err != nil {
		return err
	}
	ns := opts.Namespace
	if ns == "" {
		ns = "default"
	}
	r, err := chart.Render(ctx, opts.Chart, chart.Options{Release: opts.Name, Namespace: ns, Values: vals, Caps: caps, SkipHooks: opts.SkipHooks}, scope)
	if err != nil {
		return err
	}
	in.source, in.skipped = r.Source, r.Skipped
	in.chart = &release.Chart{Name: opts.Chart.Name(), Version: opts.Chart.Version(), Namespace: ns, Values: vals}
	return nil
}

// abandon marks failed the pending revisions of operations nobody resumed:
// a new operation replaces them. Their objects stay in the uninstall
// inventory until a deployed revision supersedes them.
func abandon(ctx context.Context, store *release.Store, revs []*release.Revision) error {
	for _, r := range revs {
		if r.Status == release.Pending {
			r.Status = release.Failed
			if err := store.Put(ctx, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// lockFor takes the cluster lock for the operation resumed, or a new one
// of kind (or uses the caller's, Options.Lock), and returns its id and
// how to let the lock go.
func lockFor(ctx context.Context, c Cluster, kind string, existing *Journal, opts Options) (string, *lock.Lock, func(context.Context), error) {
	id := journal.NewID(kind)
	if existing != nil {
		id = existing.ID
	}
	if opts.Lock != nil {
		return id, opts.Lock, func(context.Context) {}, nil
	}
	lk, err := lock.Acquire(ctx, c.Client, lock.Self(id, opts.Command))
	if err != nil {
		return "", nil, nil, err
	}
	return id, lk, lk.Close, nil
}

func rollbackTarget(name string, revs []*release.Revision, current *release.Revision, n int) (*release.Revision, error) {
	if current == nil {
		return nil, &StateError{Msg: fmt.Sprintf("nothing to roll back: no revision of %s is deployed", name)}
	}
	if n == 0 {
		for i := len(revs) - 1; i >= 0; i-- {
			if revs[i].Number < current.Number && len(revs[i].Vendor) > 0 && revs[i].Action != ActionUninstall {
				return revs[i], nil
			}
		}
		return nil, &StateError{Msg: fmt.Sprintf("revision %d of %s is the first: there is nothing before it to roll back to", current.Number, name)}
	}
	t := release.Find(revs, n)
	if t == nil || len(t.Vendor) == 0 {
		return nil, &InputError{Field: "revision", Msg: fmt.Sprintf("%d: no such revision of %s (its history lists them)", n, current.Component)}
	}
	if t.Number == current.Number {
		return nil, &InputError{Field: "revision", Msg: fmt.Sprintf("%d is the deployed revision", n)}
	}
	return t, nil
}

// nextRevision works out the next revision's objects: the vendor
// manifests as they are for an install, with the customizations ported
// for an upgrade or rollback.
func nextRevision(ctx context.Context, a *apply.Applier, action string, opts Options, revs []*release.Revision, current, target *release.Revision, vendor, from []*unstructured.Unstructured, res *Result) (*release.Revision, error) {
	switch {
	case action == ActionInstall && current != nil:
		return nil, &StateError{Msg: fmt.Sprintf("%s is installed (revision %d); use hitless upgrade", opts.Name, current.Number)}
	case action != ActionInstall && current == nil:
		return nil, &StateError{Msg: fmt.Sprintf("%s is not installed by hitless; use hitless install first", opts.Name)}
	}
	rev := &release.Revision{Component: opts.Name, Number: release.Next(revs), Action: action, Command: opts.Command, Source: sourcePath(opts.Source), Created: time.Now().UTC(), Vendor: release.Maps(vendor)}
	desired := vendor
	if current != nil {
		user := from
		if user == nil {
			var err error
			if user, err = userVersions(ctx, a, release.Objects(current.Applied)); err != nil {
				return nil, err
			}
		}
		ported, err := component.Port(release.Objects(current.Vendor), user, vendor, opts.Prefer)
		if ported != nil {
			res.Carried, res.Conflicts, res.Notes = ported.Carried, ported.Conflicts, ported.Notes
		}
		if err != nil {
			return nil, err
		}
		desired = ported.Objects
		rev.Carried, rev.Conflicts, rev.Notes = ported.Carried, ported.Conflicts, ported.Notes
	}
	if target != nil {
		rev.RollbackTo, rev.Source = target.Number, target.Source
	}
	dp, err := dataPlanes(desired, opts.DataPlane)
	if err != nil {
		return nil, err
	}
	rev.Applied, rev.DataPlane = release.Maps(desired), dp
	return rev, nil
}

// userVersions reads the user's version of every applied object from the
// cluster: what hitless applied with the fields others changed laid over.
// An object the user deleted is left out.
func userVersions(ctx context.Context, a *apply.Applier, applied []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, 0, len(applied))
	for _, o := range applied {
		live, err := a.Live(ctx, o)
		if err != nil {
			return nil, err
		}
		if live == nil {
			continue
		}
		u, err := component.UserVersion(o, live, apply.FieldManager)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// pruned is what prev had, or a later revision that never got deployed
// (its operation failed or was replaced) may have created, and desired
// does not have.
// previous is what the revision applied, by object: the vendor's fields
// as opposed to the server's defaults (apply.Options.Previous).
func previous(prev *release.Revision) map[string]*unstructured.Unstructured {
	if prev == nil {
		return nil
	}
	out := map[string]*unstructured.Unstructured{}
	for _, o := range release.Objects(prev.Applied) {
		out[apply.Name(o)] = o
	}
	return out
}

func pruned(prev *release.Revision, revs []*release.Revision, next int, desired []*unstructured.Unstructured) []*unstructured.Unstructured {
	if prev == nil {
		return nil
	}
	had := release.Objects(prev.Applied)
	for _, r := range revs {
		if r.Number > prev.Number && r.Number != next && (r.Status == release.Failed || r.Status == release.Pending) {
			had = append(had, release.Objects(r.Applied)...)
		}
	}
	keep := map[release.Ref]bool{}
	for _, o := range desired {
		r := release.RefOf(o)
		r.Version = ""
		keep[r] = true
	}
	var out []*unstructured.Unstructured
	for _, o := range had {
		r := release.RefOf(o)
		r.Version = ""
		if !keep[r] {
			keep[r] = true // once
			out = append(out, o)
		}
	}
	return out
}

func deployPlan(name, action string, rev, prev *release.Revision, desired, prune []*unstructured.Unstructured, groups []string) *Plan {
	p := &Plan{Component: name, Action: action, Revision: rev.Number, Source: rev.Source, DataPlane: rev.DataPlane, Objects: len(desired), Prune: names(prune), Groups: groups}
	if prev != nil {
		p.Previous = prev.Number
	}
	stages := split(desired)
	for _, s := range []string{StageConfig, StageWorkloads, StageDataPlane, StageAPI} {
		objs := names(stages[s])
		if s == StageDataPlane {
			objs = rev.DataPlane
		}
		if len(objs) > 0 {
			p.Stages = append(p.Stages, StagePlan{Name: s, Objects: objs})
		}
	}
	if len(prune) > 0 {
		p.Stages = append(p.Stages, StagePlan{Name: StagePrune, Objects: p.Prune})
	}
	return p
}

// runner runs the journaled steps of one operation.
type runner struct {
	c       Cluster
	opts    Options
	applier *apply.Applier
	store   *release.Store
	lock    *lock.Lock
	unlock  func(context.Context)
	w       *journal.Writer[state]
	rev     *release.Revision
	prev    *release.Revision
	st      state
	res     *Result
}

func (r *runner) open(ctx context.Context, jstore *journal.Store, existing *Journal, id string, sp spec) error {
	if err := r.journal(ctx, jstore, existing, id, sp); err != nil {
		return err
	}
	if r.opts.Started != nil {
		r.opts.Started(id)
	}
	return nil
}

// journal opens the operation's journal: the existing one resumed, or a
// new one.
func (r *runner) journal(ctx context.Context, jstore *journal.Store, existing *Journal, id string, sp spec) error {
	if existing != nil {
		r.w = journal.NewWriter(jstore, existing)
		return r.w.Update(ctx, func(op *Journal) {
			op.Runs++
			op.Status, op.Message, op.Record = journal.Running, "", r.st
		})
	}
	specJSON, err := json.Marshal(sp)
	if err != nil {
		return fmt.Errorf("encoding the spec: %w", err)
	}
	op := &Journal{Operation: journal.Operation{ID: id, Kind: sp.Action, Command: r.opts.Command, SpecHash: sp.hash(), Spec: specJSON, Status: journal.Running, Started: time.Now().UTC(), Runs: 1}, Record: r.st}
	if r.opts.Guard != nil {
		op.Guard = r.opts.Guard.Spec()
	}
	if err := journal.Create(ctx, jstore, op); err != nil {
		return err
	}
	r.w = journal.NewWriter(jstore, op)
	return nil
}

// resumable returns the unfinished operation of kind with the spec hash,
// decoded, or nil; one journaled in another format is refused.
func resumable(ctx context.Context, jstore *journal.Store, kind, hash string) (*Journal, error) {
	raw, err := jstore.Resumable(ctx, kind, hash)
	if err != nil || raw == nil {
		return nil, err
	}
	if err := journal.Current(&raw.Operation); err != nil {
		return nil, err
	}
	return journal.Decode[state](raw)
}

// close journals how the operation ended.
func (r *runner) close(ctx context.Context, runErr error) error {
	status, msg := journal.Succeeded, ""
	if runErr != nil {
		status, msg = journal.Failed, runErr.Error()
		switch {
		case errors.Is(runErr, context.Canceled):
			status = journal.Interrupted
		case errors.Is(runErr, journal.ErrAborted):
			status = journal.Aborted
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

// step runs fn as the journaled step name (operation.Step).
func (r *runner) step(ctx context.Context, name string, fn func(ctx context.Context) ([]string, error)) error {
	return operation.Step(ctx, r.w, name, r.opts.Progress, fn)
}

// saveState journals the operation's state (the rolls it started).
func (r *runner) saveState(ctx context.Context) error {
	return r.w.Update(ctx, func(op *Journal) { op.Record = r.st })
}

func (r *runner) deploySteps(ctx context.Context, desired, prune []*unstructured.Unstructured) error {
	stages := split(desired)
	steps := []struct {
		name string
		fn   func(ctx context.Context) ([]string, error)
	}{
		{"backup", func(ctx context.Context) ([]string, error) {
			return r.backup(ctx, append(slices.Clone(desired), prune...))
		}},
		{StageConfig, func(ctx context.Context) ([]string, error) { return r.applyConfig(ctx, stages[StageConfig]) }},
		{StageWorkloads, func(ctx context.Context) ([]string, error) { return r.applyWorkloads(ctx, stages[StageWorkloads]) }},
		{StageDataPlane, func(ctx context.Context) ([]string, error) { return r.dataPlane(ctx, stages[StageWorkloads]) }},
		{StageAPI, func(ctx context.Context) ([]string, error) { return r.applyAPI(ctx, stages[StageAPI]) }},
		{StagePrune, func(ctx context.Context) ([]string, error) { return r.prune(ctx, prune) }},
		{"record", func(ctx context.Context) ([]string, error) { return r.finish(ctx) }},
	}
	for _, s := range steps {
		if err := r.step(ctx, s.name, s.fn); err != nil {
			return err
		}
		if err := r.lock.Lost(); err != nil {
			return err
		}
	}
	return nil
}

// backup keeps the live state of every object the operation may change
// or delete, in the cluster and, with --backup-dir, in a 0600 file.
func (r *runner) backup(ctx context.Context, objs []*unstructured.Unstructured) ([]string, error) {
	var live []*unstructured.Unstructured
	for _, o := range objs {
		l, err := r.applier.Live(ctx, o)
		if err != nil {
			return nil, err
		}
		if l != nil {
			live = append(live, l)
		}
	}
	all, err := r.store.Backup(ctx, r.rev.Component, r.rev.Number, live)
	if err != nil {
		return nil, err
	}
	detail := []string{fmt.Sprintf("%d objects backed up in %s/%s", len(all), store.Namespace, release.BackupName(r.rev.Component, r.rev.Number))}
	if r.opts.OnBackup != nil && len(all) > 0 {
		path, err := r.opts.OnBackup(ctx, r.rev.Component, r.rev.Number, all)
		if err != nil {
			return nil, err
		}
		r.res.Backup = path
		detail = append(detail, "backup file "+path)
	}
	return detail, nil
}

func (r *runner) apply(ctx context.Context, objs []*unstructured.Unstructured, noWait map[string]bool) ([]string, error) {
	if len(objs) == 0 {
		return nil, nil
	}
	entries, err := r.applier.Apply(ctx, objs, apply.Options{Set: r.rev.Component, Wait: r.opts.Wait, NoWait: noWait, Previous: previous(r.prev)})
	r.record(entries)
	counts := map[string]int{}
	for _, e := range entries {
		counts[e.Action]++
	}
	var parts []string
	for _, a := range []string{"created", "configured", "unchanged"} {
		if counts[a] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[a], a))
		}
	}
	return []string{strings.Join(parts, ", ")}, err
}

// record adds what an apply did to the result; an object applied twice
// (a data-plane DaemonSet, switched to OnDelete then restored) keeps the
// change it got.
func (r *runner) record(entries []apply.Entry) {
	for _, e := range entries {
		i := slices.IndexFunc(r.res.Applied, func(x apply.Entry) bool { return x.Object == e.Object })
		switch {
		case i < 0:
			r.res.Applied = append(r.res.Applied, e)
		case e.Action != "unchanged":
			r.res.Applied[i] = e
		}
	}
}

// finish marks the revision deployed and the one before superseded.
func (r *runner) finish(ctx context.Context) ([]string, error) {
	if r.prev != nil && r.prev.Status == release.Deployed {
		r.prev.Status = release.Superseded
		if err := r.store.Put(ctx, r.prev); err != nil {
			return nil, err
		}
	}
	r.rev.Status = release.Deployed
	if err := r.store.Put(ctx, r.rev); err != nil {
		return nil, err
	}
	return []string{fmt.Sprintf("revision %d deployed", r.rev.Number)}, nil
}

// applyConfig applies the configuration stage. Custom resources whose CRD
// the release also changes go once before the CRDs, tolerating failure:
// a CRD that drops a field (a rollback) would otherwise refuse every
// later apply of an object still holding it, so the objects shed the
// field while the old schema still has it. They go again after the CRDs,
// for a CRD that adds fields (an upgrade).
func (r *runner) applyConfig(ctx context.Context, objs []*unstructured.Unstructured) ([]string, error) {
	crds := customKinds(objs)
	var early []*unstructured.Unstructured
	for _, o := range objs {
		if crds[gk(o)] {
			early = append(early, o)
		}
	}
	if len(early) > 0 {
		if _, err := r.applier.Apply(ctx, early, apply.Options{Set: r.rev.Component, Previous: previous(r.prev)}); err != nil {
			klog.FromContext(ctx).V(1).Info("custom resources not applicable before their CRDs", "err", err)
		}
	}
	detail, err := r.apply(ctx, objs, nil)
	if err == nil || !strings.Contains(err.Error(), "field not declared in schema") {
		return detail, err
	}
	// A run interrupted between the CRDs and their objects left objects
	// with fields the CRDs dropped: written back, the server prunes them.
	for _, o := range early {
		if err := r.applier.Rewrite(ctx, o); err != nil {
			return detail, err
		}
	}
	return r.apply(ctx, objs, nil)
}

func sourcePath(src *component.Source) string {
	if src == nil {
		return ""
	}
	return src.Path
}

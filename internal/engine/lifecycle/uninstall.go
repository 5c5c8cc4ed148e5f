package lifecycle

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"

	"github.com/hitless-dev/hitless/internal/component/apply"
	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/journal"
)

// IncompleteError reports an uninstall that left objects behind; running
// it again continues.
type IncompleteError struct{ Remaining []string }

func (e *IncompleteError) Error() string {
	return fmt.Sprintf("%d object(s) remain; run the same command again to continue:\n  %s", len(e.Remaining), strings.Join(e.Remaining, "\n  "))
}

// OutsideError refuses to delete namespaces that hold objects outside the
// component's inventory; nothing was changed.
type OutsideError struct{ Objects []string }

func (e *OutsideError) Error() string {
	return fmt.Sprintf("the component's namespaces hold %d object(s) it did not create; nothing was changed (`forceNamespaces` deletes them with the namespaces):\n  %s", len(e.Objects), strings.Join(e.Objects, "\n  "))
}

// Uninstall deletes exactly the component's inventory in reverse
// dependency order, backing every object up first.
func Uninstall(ctx context.Context, c Cluster, opts Options) (*Result, error) {
	if err := validateDurations(opts); err != nil {
		return nil, err
	}
	opts.defaults()
	if err := validateName(opts.Name); err != nil {
		return nil, err
	}
	store := release.NewStore(c.Client)
	revs, err := store.List(ctx, opts.Name)
	if err != nil {
		return nil, err
	}
	sp := spec{Action: ActionUninstall, Name: opts.Name, Force: opts.ForceNamespaces}
	jstore := journal.NewStore(c.Client)
	existing, err := resumable(ctx, jstore, ActionUninstall, sp.hash())
	if err != nil {
		return nil, err
	}
	var st state
	if existing != nil {
		st = existing.Record
	}
	inv := inventory(revs, st.Revision)
	if len(inv) == 0 && existing != nil {
		// Killed after its last step: only the journal is left to close.
		w := journal.NewWriter(jstore, existing)
		now := time.Now().UTC()
		// This run counts too: the journal explains every run.
		if err := w.Force(ctx, func(op *Journal) { op.Runs, op.Status, op.Finished = op.Runs+1, journal.Succeeded, &now }); err != nil {
			return nil, err
		}
		return &Result{Component: opts.Name, Action: ActionUninstall, Resumed: true, Operation: existing.ID, Revision: st.Revision}, nil
	}
	if len(inv) == 0 {
		return uninstalled(opts, revs)
	}
	res := &Result{Component: opts.Name, Action: ActionUninstall, DryRun: opts.DryRun, Resumed: existing != nil}
	plan := &Plan{Component: opts.Name, Action: ActionUninstall, Objects: len(inv)}
	for i, g := range deleteGroups(inv) {
		if len(g) > 0 {
			plan.Delete = append(plan.Delete, DeleteGroup{Name: deleteOrder[i], Objects: names(g)})
		}
	}
	res.Plan = plan
	if plan.Outside, err = outside(ctx, c, inv); err != nil {
		return res, err
	}
	if len(plan.Outside) > 0 && !opts.ForceNamespaces {
		return res, &OutsideError{Objects: plan.Outside}
	}
	if opts.DryRun {
		return res, nil
	}
	a, err := apply.New(c.Config)
	if err != nil {
		return res, err
	}
	id, lk, unlock, err := lockFor(ctx, c, ActionUninstall, existing, opts)
	if err != nil {
		return res, err
	}
	defer unlock(ctx)
	rev := release.Find(revs, st.Revision)
	if rev == nil {
		rev = &release.Revision{Component: opts.Name, Number: release.Next(revs), Action: ActionUninstall, Command: opts.Command, Created: time.Now().UTC()}
		st = state{Revision: rev.Number}
	}
	if cur := release.Current(revs); cur != nil {
		st.Previous = cur.Number
	}
	r := &runner{c: c, opts: opts, applier: a, store: store, lock: lk, rev: rev, st: st, res: res}
	if err := r.open(ctx, jstore, existing, id, sp); err != nil {
		return res, err
	}
	res.Operation, res.Revision, res.Previous = id, rev.Number, st.Previous
	rev.Status, rev.Operation = release.Pending, id
	if err := store.Put(ctx, rev); err != nil {
		return res, err
	}
	runErr := r.uninstallSteps(ctx, inv, revs)
	return res, r.close(ctx, runErr)
}

// inventory is every object of the deployed revision and of any later
// revision an unfinished operation was deploying.
func inventory(revs []*release.Revision, uninstallRev int) []*unstructured.Unstructured {
	cur := release.Current(revs)
	seen := map[release.Ref]bool{}
	var out []*unstructured.Unstructured
	for _, r := range revs {
		live := r.Status == release.Deployed || r.Status == release.Pending || r.Status == release.Failed
		if r.Number == uninstallRev || !live || (cur != nil && r.Number < cur.Number) {
			continue
		}
		for _, o := range release.Objects(r.Applied) {
			ref := release.RefOf(o)
			ref.Version = ""
			if !seen[ref] {
				seen[ref] = true
				out = append(out, o)
			}
		}
	}
	return out
}

func (r *runner) uninstallSteps(ctx context.Context, inv []*unstructured.Unstructured, revs []*release.Revision) error {
	if err := r.step(ctx, "backup", func(ctx context.Context) ([]string, error) { return r.backup(ctx, inv) }); err != nil {
		return err
	}
	for i, group := range deleteGroups(inv) {
		if len(group) == 0 {
			continue
		}
		name := deleteOrder[i]
		// A group that does not go stops the uninstall there: what comes
		// after (CRDs after their custom resources, namespaces) would hang
		// on it. The same command runs the group again.
		err := r.step(ctx, "delete "+name, func(ctx context.Context) ([]string, error) {
			before := len(r.res.Remaining)
			detail, err := r.deleteGroup(ctx, name, group)
			if err == nil && len(r.res.Remaining) > before {
				err = &IncompleteError{Remaining: r.res.Remaining[before:]}
			}
			return detail, err
		})
		if err != nil {
			return err
		}
	}
	// What is left is what the report says remains, read afresh: a
	// resumed run skips the groups an earlier run finished.
	r.res.Remaining = nil
	for _, o := range inv {
		live, err := r.applier.Live(ctx, o)
		if err != nil {
			return err
		}
		if live != nil {
			r.res.Remaining = append(r.res.Remaining, stillThere(live))
		}
	}
	if len(r.res.Remaining) > 0 {
		return &IncompleteError{Remaining: r.res.Remaining}
	}
	return r.step(ctx, "record", func(ctx context.Context) ([]string, error) {
		for _, rev := range revs {
			if rev.Status == release.Deployed || rev.Status == release.Pending || rev.Status == release.Failed {
				rev.Status = release.Uninstalled
				if err := r.store.Put(ctx, rev); err != nil {
					return nil, err
				}
			}
		}
		r.rev.Status = release.Uninstalled
		if err := r.store.Put(ctx, r.rev); err != nil {
			return nil, err
		}
		return []string{fmt.Sprintf("%d objects deleted", len(inv))}, nil
	})
}

// skipOutside are kinds whose objects in a namespace are made by the
// control plane, not by users: they go with the namespace.
var skipOutside = map[schema.GroupResource]bool{
	{Group: "", Resource: "events"}:                         true,
	{Group: "events.k8s.io", Resource: "events"}:            true,
	{Group: "", Resource: "endpoints"}:                      true,
	{Group: "discovery.k8s.io", Resource: "endpointslices"}: true,
	{Group: "coordination.k8s.io", Resource: "leases"}:      true,
	{Group: "metrics.k8s.io", Resource: "pods"}:             true,
}

// outside lists the objects in the namespaces the component creates that
// are not in its inventory and not owned by another object: what deleting
// the namespace would take with it (the users' overlay networks, their
// own Secrets).
func outside(ctx context.Context, c Cluster, inv []*unstructured.Unstructured) ([]string, error) {
	var namespaces []string
	have := map[string]bool{}
	for _, o := range inv {
		if o.GetKind() == "Namespace" && o.GroupVersionKind().Group == "" {
			namespaces = append(namespaces, o.GetName())
		}
		have[o.GroupVersionKind().GroupKind().String()+"/"+o.GetNamespace()+"/"+o.GetName()] = true
	}
	if len(namespaces) == 0 {
		return nil, nil
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	lists, err := dc.ServerPreferredNamespacedResources()
	if err != nil && len(lists) == 0 {
		return nil, fmt.Errorf("reading the cluster's API resources: %w", err)
	}
	mc, err := metadata.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, res := range l.APIResources {
			gr := schema.GroupResource{Group: gv.Group, Resource: res.Name}
			if strings.Contains(res.Name, "/") || !slices.Contains(res.Verbs, "list") || skipOutside[gr] {
				continue
			}
			for _, ns := range namespaces {
				items, err := mc.Resource(gv.WithResource(res.Name)).Namespace(ns).List(ctx, metav1.ListOptions{})
				if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || apierrors.IsMethodNotSupported(err) {
					continue
				}
				if err != nil {
					return nil, fmt.Errorf("listing %s in namespace %s: %w", gr, ns, err)
				}
				for _, it := range items.Items {
					k := schema.GroupKind{Group: gv.Group, Kind: res.Kind}.String() + "/" + ns + "/" + it.Name
					if have[k] || len(it.OwnerReferences) > 0 || builtin(res.Kind, it.Name) {
						continue
					}
					out = append(out, res.Kind+"/"+ns+"/"+it.Name)
				}
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// builtin reports objects the control plane puts in every namespace.
func builtin(kind, name string) bool {
	return (kind == "ServiceAccount" && name == "default") || (kind == "ConfigMap" && name == "kube-root-ca.crt")
}

// uninstalled answers an uninstall of a component no revision holds
// objects of: done, when its last revision is an uninstall that finished
// (the same command again after a crash that came after the end), else
// refused.
func uninstalled(opts Options, revs []*release.Revision) (*Result, error) {
	if last := latest(revs); last != nil && last.Action == ActionUninstall && last.Status == release.Uninstalled && !opts.DryRun {
		return &Result{Component: opts.Name, Action: ActionUninstall, Operation: last.Operation, Revision: last.Number,
			Notes: []string{fmt.Sprintf("%s was already uninstalled by operation %s (revision %d)", opts.Name, last.Operation, last.Number)}}, nil
	}
	return nil, &StateError{Msg: fmt.Sprintf("%s is not installed by hitless: no revision holds objects", opts.Name)}
}

// latest is the newest revision, or nil.
func latest(revs []*release.Revision) *release.Revision {
	var out *release.Revision
	for _, r := range revs {
		if out == nil || r.Number > out.Number {
			out = r
		}
	}
	return out
}

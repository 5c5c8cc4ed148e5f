package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	ssautils "github.com/fluxcd/pkg/ssa/utils"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/client-go/applyconfigurations"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/kube/transient"
)

// FieldManager is the server-side apply field manager of hitless.
const FieldManager = "hitless"

// OwnerGroup prefixes the labels that tie applied objects to their set.
const OwnerGroup = "hitless.dev"

// Applier applies object sets to one cluster.
type Applier struct {
	rm     *ssa.ResourceManager
	client client.Client
	// types reads built-in objects' fields (component.Husks).
	types managedfields.TypeConverter
}

// New returns an Applier for the cluster cfg points at.
func New(cfg *rest.Config) (*Applier, error) {
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating HTTP client: %w", err)
	}
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("creating REST mapper: %w", err)
	}
	c, err := client.New(cfg, client.Options{HTTPClient: httpClient, Mapper: mapper})
	if err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	poller := polling.NewStatusPoller(c, mapper, polling.Options{})
	rm := ssa.NewResourceManager(c, poller, ssa.Owner{Field: FieldManager, Group: OwnerGroup})
	rm.SetConcurrency(8)
	return &Applier{rm: rm, client: c, types: applyconfigurations.NewTypeConverter(scheme.Scheme)}, nil
}

// Entry is what happened to one object.
type Entry struct {
	Object string `json:"object"` // Kind/namespace/name
	Action string `json:"action"` // created, configured, unchanged
}

// Options tune Apply.
type Options struct {
	// Set names the object set; its objects are labelled with it.
	Set string
	// Wait is how long to wait for every object to be ready; 0 skips waiting.
	Wait time.Duration
	// NoWait lists objects (Kind/namespace/name, as in Entry) not waited
	// for: APIServices nobody serves, DaemonSets rolled node by node.
	NoWait map[string]bool
	// Previous are the objects as hitless applied them last, by Name:
	// the structures they held that the new ones drop are removed whole
	// (component.Husks).
	Previous map[string]*unstructured.Unstructured
}

// Apply server-side applies objs (CRDs, namespaces and cluster roles first,
// then the rest) and waits until kstatus reports every object Current.
func (a *Applier) Apply(ctx context.Context, objs []*unstructured.Unstructured, opts Options) ([]Entry, error) {
	objs = deepCopy(objs)
	if opts.Set != "" {
		a.rm.SetOwnerLabels(objs, opts.Set, "")
	}
	for _, o := range objs {
		if _, err := a.RemoveHusks(ctx, o, opts.Previous[Name(o)], false); err != nil {
			return nil, err
		}
	}
	ao := ssa.DefaultApplyOptions()
	ao.WaitInterval, ao.WaitTimeout = 500*time.Millisecond, time.Minute
	cs, err := a.rm.ApplyAllStaged(ctx, objs, ao)
	entries := make([]Entry, 0, len(objs))
	if cs != nil {
		for _, e := range cs.Entries {
			entries = append(entries, Entry{Object: e.Subject, Action: string(e.Action)})
		}
	}
	if err != nil {
		return entries, fmt.Errorf("applying %s: %w", opts.Set, err)
	}
	if opts.Wait > 0 {
		klog.FromContext(ctx).V(1).Info("waiting for objects to be ready", "set", opts.Set, "objects", len(objs))
		var wait []*unstructured.Unstructured
		for _, o := range objs {
			if !opts.NoWait[Name(o)] {
				wait = append(wait, o)
			}
		}
		set := object.UnstructuredSetToObjMetadataSet(wait)
		if err := a.rm.WaitForSetWithContext(ctx, set, ssa.WaitOptions{Interval: time.Second, Timeout: opts.Wait}); err != nil {
			return entries, fmt.Errorf("waiting for %s to be ready: %w", opts.Set, err)
		}
	}
	return entries, nil
}

// RemoveHusks removes from the live object the structures previous held
// and u drops, when nobody but hitless set anything in them
// (component.Husks): server-side apply would leave their defaulted
// fields behind. With dryRun nothing changes. It returns the object as
// it is (or would be) after the removal; nil when u does not exist or
// previous is nil.
func (a *Applier) RemoveHusks(ctx context.Context, u, previous *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
	if previous == nil {
		return nil, nil // nothing applied before: nothing dropped
	}
	live, err := a.Live(ctx, u)
	if err != nil || live == nil {
		return live, err
	}
	paths, err := component.Husks(a.types, u, live, previous, FieldManager)
	if err != nil || len(paths) == 0 {
		return live, err
	}
	body, err := component.RemovePatch(live, paths)
	if err != nil {
		return nil, err
	}
	if body, err = holdRollout(u, live, body); err != nil {
		return nil, err
	}
	opts := []client.PatchOption{client.FieldOwner(FieldManager)}
	if dryRun {
		opts = append(opts, client.DryRunAll)
	}
	out := live.DeepCopy()
	if err := a.client.Patch(ctx, out, client.RawPatch(types.JSONPatchType, body), opts...); err != nil {
		return nil, fmt.Errorf("removing the structures %s dropped from %s: %w", paths, Name(u), err)
	}
	klog.FromContext(ctx).V(1).Info("removed dropped structures", "object", Name(u), "paths", fmt.Sprint(paths), "dryRun", dryRun)
	return out, nil
}

// holdRollout adds to a patch that removes structures from a DaemonSet's
// pod template the switch to OnDelete that u (the object about to be
// applied) asks for, in the same request: the template changes under the
// strategy the apply sets, so the DaemonSet controller never replaces a
// pod on a node nobody drained between the patch and the apply.
func holdRollout(u, live *unstructured.Unstructured, body []byte) ([]byte, error) {
	want, _, _ := unstructured.NestedString(u.Object, "spec", "updateStrategy", "type")
	have, _, _ := unstructured.NestedString(live.Object, "spec", "updateStrategy", "type")
	if u.GetKind() != "DaemonSet" || want != string(appsv1.OnDeleteDaemonSetStrategyType) || have == want {
		return body, nil
	}
	var ops []map[string]any
	if err := json.Unmarshal(body, &ops); err != nil {
		return nil, fmt.Errorf("patch of %s: %w", Name(u), err)
	}
	// After the resourceVersion test, before any removal; removals inside
	// the strategy are the replacement's to make.
	held := []map[string]any{ops[0], {"op": "replace", "path": "/spec/updateStrategy", "value": map[string]any{"type": want}}}
	for _, op := range ops[1:] {
		if path, _ := op["path"].(string); !strings.HasPrefix(path, "/spec/updateStrategy/") {
			held = append(held, op)
		}
	}
	return json.Marshal(held)
}

func deepCopy(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		out[i] = o.DeepCopy()
	}
	return out
}

// Name is how entries name an object: Kind/namespace/name, or Kind/name
// for a cluster-scoped one (fluxcd/pkg/ssa's change set subject).
func Name(u *unstructured.Unstructured) string {
	return ssautils.FmtUnstructured(u)
}

// Live reads the object u names; nil when it does not exist.
func (a *Applier) Live(ctx context.Context, u *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(u.GroupVersionKind())
	// An API server restarting is waited out, not a failed operation.
	err := transient.Retry(ctx, func() error { return a.client.Get(ctx, client.ObjectKeyFromObject(u), live) })
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", Name(u), err)
	}
	return live, nil
}

// Diff server-side dry-runs u, labelled as a member of set, and returns what applying it would do
// (created, configured, unchanged), with the live and the would-be
// objects when it changes something; Secret values are masked.
func (a *Applier) Diff(ctx context.Context, u *unstructured.Unstructured, set string) (string, *unstructured.Unstructured, *unstructured.Unstructured, error) {
	objs := []*unstructured.Unstructured{u.DeepCopy()}
	if set != "" {
		a.rm.SetOwnerLabels(objs, set, "")
	}
	e, live, merged, err := a.rm.Diff(ctx, objs[0], ssa.DefaultDiffOptions())
	if err != nil {
		return "", nil, nil, fmt.Errorf("dry-run of %s: %w", Name(u), err)
	}
	return string(e.Action), live, merged, nil
}

// Delete deletes objs and returns what it did to each; absent objects are
// skipped. Deletion is in the foreground: an object goes once what it
// owns is gone (a DaemonSet once its pods are), so no orphan of it is
// left terminating after it.
func (a *Applier) Delete(ctx context.Context, objs []*unstructured.Unstructured) ([]Entry, error) {
	opts := ssa.DefaultDeleteOptions()
	opts.PropagationPolicy = metav1.DeletePropagationForeground
	var cs *ssa.ChangeSet
	// Deleting again what is gone is skipped: a retry after an API server
	// restart is safe.
	err := transient.Retry(ctx, func() (err error) {
		cs, err = a.rm.DeleteAll(ctx, objs, opts)
		return err
	})
	var entries []Entry
	if cs != nil {
		for _, e := range cs.Entries {
			entries = append(entries, Entry{Object: e.Subject, Action: string(e.Action)})
		}
	}
	if err != nil {
		return entries, fmt.Errorf("deleting: %w", err)
	}
	return entries, nil
}

// WaitGone waits up to timeout for objs to be gone and returns those
// still there, with their finalizers.
func (a *Applier) WaitGone(ctx context.Context, objs []*unstructured.Unstructured, timeout time.Duration) ([]*unstructured.Unstructured, error) {
	deadline := time.Now().Add(timeout)
	for {
		var left []*unstructured.Unstructured
		for _, o := range objs {
			live, err := a.Live(ctx, o)
			if err != nil {
				return nil, err
			}
			if live != nil {
				left = append(left, live)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left, nil
		}
		select {
		case <-ctx.Done():
			return left, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Rewrite reads the object u names and writes it back, so the API server
// prunes the fields its CRD's schema no longer has, without hitless's
// field ownership record that still names them: server-side apply refuses
// any object holding such a field.
func (a *Applier) Rewrite(ctx context.Context, u *unstructured.Unstructured) error {
	live, err := a.Live(ctx, u)
	if err != nil || live == nil {
		return err
	}
	// Our own apply record names the dropped fields too, and server-side
	// apply reads it: it goes, the users' records stay; the next apply
	// writes ours afresh.
	var keep []metav1.ManagedFieldsEntry
	for _, mf := range live.GetManagedFields() {
		if mf.Manager != FieldManager {
			keep = append(keep, mf)
		}
	}
	if len(keep) == 0 {
		keep = []metav1.ManagedFieldsEntry{{}} // an empty entry clears the list
	}
	live.SetManagedFields(keep)
	if err := a.client.Update(ctx, live, client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("rewriting %s through its CRD's schema: %w", Name(u), err)
	}
	return nil
}

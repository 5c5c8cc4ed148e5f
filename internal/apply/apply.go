// Package apply server-side applies sets of objects in dependency order and
// waits until they are really ready, through fluxcd/pkg/ssa and kstatus.
package apply

import (
	"context"
	"fmt"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/pkg/ssa"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// FieldManager is the server-side apply field manager of hitless.
const FieldManager = "hitless"

// OwnerGroup prefixes the labels that tie applied objects to their set.
const OwnerGroup = "hitless.dev"

// Applier applies object sets to one cluster.
type Applier struct {
	rm *ssa.ResourceManager
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
	return &Applier{rm: rm}, nil
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
}

// Apply server-side applies objs (CRDs, namespaces and cluster roles first,
// then the rest) and waits until kstatus reports every object Current.
func (a *Applier) Apply(ctx context.Context, objs []*unstructured.Unstructured, opts Options) ([]Entry, error) {
	objs = deepCopy(objs)
	if opts.Set != "" {
		a.rm.SetOwnerLabels(objs, opts.Set, "")
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
		if err := a.rm.WaitForSetWithContext(ctx, cs.ToObjMetadataSet(), ssa.WaitOptions{Interval: time.Second, Timeout: opts.Wait}); err != nil {
			return entries, fmt.Errorf("waiting for %s to be ready: %w", opts.Set, err)
		}
	}
	return entries, nil
}

func deepCopy(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		out[i] = o.DeepCopy()
	}
	return out
}

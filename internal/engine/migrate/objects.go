package migrate

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
)

// objects reads and writes the objects a plan names.
type objects struct {
	dyn    dynamic.Interface
	mapper meta.ResettableRESTMapper
	disc   discovery.DiscoveryInterface
}

func newObjects(c operation.Cluster) (*objects, error) {
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return nil, fmt.Errorf("creating a dynamic client: %w", err)
	}
	disc := memory.NewMemCacheClient(c.Client.Discovery())
	return &objects{dyn: dyn, disc: disc, mapper: restmapper.NewDeferredDiscoveryRESTMapper(disc)}, nil
}

// resource maps a ref to its resource; an unknown kind is read again
// from discovery once (an earlier step may have created its CRD).
func (o *objects) resource(ref plan.ObjectRef) (dynamic.ResourceInterface, error) {
	m, err := o.mapping(ref)
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return o.dyn.Resource(m.Resource).Namespace(ref.Namespace), nil
	}
	return o.dyn.Resource(m.Resource), nil
}

// namespaced tells whether the ref's kind is namespaced.
func (o *objects) namespaced(ref plan.ObjectRef) (bool, error) {
	m, err := o.mapping(ref)
	if err != nil {
		return false, err
	}
	return m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

// mapping maps a ref's kind; an unknown kind is read again from
// discovery once (an earlier step may have created its CRD).
func (o *objects) mapping(ref plan.ObjectRef) (*meta.RESTMapping, error) {
	gvk := ref.GVK()
	m, err := o.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		o.mapper.Reset()
		m, err = o.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	return m, nil
}

// get reads the named object; nil when it does not exist.
func (o *objects) get(ctx context.Context, ref plan.ObjectRef) (*unstructured.Unstructured, error) {
	ri, err := o.resource(ref)
	if err != nil {
		return nil, err
	}
	u, err := ri.Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", ref, err)
	}
	return u, nil
}

// list reads the object a ref names, or every object it selects, sorted
// by namespace and name.
func (o *objects) list(ctx context.Context, ref plan.ObjectRef) ([]*unstructured.Unstructured, error) {
	if ref.Name != "" {
		u, err := o.get(ctx, ref)
		if err != nil || u == nil {
			return nil, err
		}
		return []*unstructured.Unstructured{u}, nil
	}
	ri, err := o.resource(ref)
	if err != nil {
		return nil, err
	}
	l, err := ri.List(ctx, metav1.ListOptions{LabelSelector: ref.Selector})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", ref, err)
	}
	out := make([]*unstructured.Unstructured, 0, len(l.Items))
	for i := range l.Items {
		out = append(out, &l.Items[i])
	}
	slices.SortFunc(out, func(a, b *unstructured.Unstructured) int {
		return strings.Compare(a.GetNamespace()+"/"+a.GetName(), b.GetNamespace()+"/"+b.GetName())
	})
	return out, nil
}

// refOf names an object.
func refOf(u *unstructured.Unstructured) plan.ObjectRef {
	return plan.ObjectRef{APIVersion: u.GetAPIVersion(), Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()}
}

// key identifies an object in backups.
func key(ref plan.ObjectRef) string {
	return ref.APIVersion + "/" + ref.Kind + "/" + ref.Namespace + "/" + ref.Name
}

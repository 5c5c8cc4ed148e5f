package component

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
)

// ClusterScope answers Scope from a cluster: its discovery for the kinds
// (read once) and its namespaces (read once).
type ClusterScope struct {
	kinds      map[schema.GroupKind]bool
	namespaces map[string]bool
}

// NewClusterScope reads the cluster's served kinds and its namespaces.
func NewClusterScope(ctx context.Context, cs kubernetes.Interface) (*ClusterScope, error) {
	s := &ClusterScope{kinds: map[schema.GroupKind]bool{}, namespaces: map[string]bool{}}
	_, lists, err := cs.Discovery().ServerGroupsAndResources()
	if err != nil && len(lists) == 0 {
		// Partial discovery (an aggregated API down) still lists the rest.
		return nil, fmt.Errorf("reading the cluster's API resources: %w", err)
	}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			s.kinds[schema.GroupKind{Group: gv.Group, Kind: r.Kind}] = r.Namespaced
		}
	}
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsForbidden(err) {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	if nss != nil {
		for _, n := range nss.Items {
			s.namespaces[n.Name] = true
		}
	}
	return s, nil
}

// Namespaced implements Scope.
func (s *ClusterScope) Namespaced(gk schema.GroupKind) (namespaced, ok bool) {
	namespaced, ok = s.kinds[gk]
	return namespaced, ok
}

// NamespaceExists implements Scope.
func (s *ClusterScope) NamespaceExists(name string) bool { return s.namespaces[name] }

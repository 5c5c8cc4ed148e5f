package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// Objects is every object of a cluster, each as JSON without what the
// server and the controllers write on their own (status, uid,
// resourceVersion, generation, creation time, managed fields), keyed
// "resource.group namespace/name".
type Objects map[string]string

// Ignore leaves an object out of a snapshot.
type Ignore func(gr schema.GroupResource, obj *unstructured.Unstructured) bool

// churn says whether a resource is what a cluster changes on its own,
// second by second: events, leases (heartbeats, leader election) and
// component statuses.
func churn(gr schema.GroupResource) bool {
	switch gr {
	case schema.GroupResource{Resource: "events"},
		schema.GroupResource{Group: "events.k8s.io", Resource: "events"},
		schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"},
		schema.GroupResource{Resource: "componentstatuses"}: // not stored: probed when read

		return true
	}
	return false
}

// Snapshot reads every object of every listable resource of the cluster,
// except churn and what ignore (which may be nil) leaves out.
func Snapshot(t testing.TB, cfg *rest.Config, ignore Ignore) Objects {
	t.Helper()
	ctx := context.Background()
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = rest.NoWarnings{} // deprecated kinds are read as well
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := dc.ServerPreferredResources()
	if err != nil {
		t.Fatalf("discovering the cluster's resources: %v", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := Objects{}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			gr := schema.GroupResource{Group: gv.Group, Resource: r.Name}
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") || churn(gr) {
				continue
			}
			items, err := dyn.Resource(gv.WithResource(r.Name)).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatalf("listing %s: %v", gr, err)
			}
			for i := range items.Items {
				u := &items.Items[i]
				if ignore != nil && ignore(gr, u) {
					continue
				}
				out[gr.String()+" "+u.GetNamespace()+"/"+u.GetName()] = canonical(t, u)
			}
		}
	}
	return out
}

// Canonical is a copy of the object without what the server and its
// controllers write on their own: status, uid, resourceVersion,
// generation, creation time, managed fields.
func Canonical(u *unstructured.Unstructured) *unstructured.Unstructured {
	c := u.DeepCopy()
	delete(c.Object, "status")
	for _, f := range []string{"managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink"} {
		unstructured.RemoveNestedField(c.Object, "metadata", f)
	}
	return c
}

// canonical is Canonical as JSON.
func canonical(t testing.TB, u *unstructured.Unstructured) string {
	b, err := json.Marshal(Canonical(u).Object)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Diff lists what changed from o to after: "+ key" created, "- key"
// deleted, "~ key" changed (with both versions), sorted.
func (o Objects) Diff(after Objects) []string {
	var out []string
	for k, v := range o {
		switch w, ok := after[k]; {
		case !ok:
			out = append(out, "- "+k)
		case w != v:
			out = append(out, fmt.Sprintf("~ %s\n    before %s\n    after  %s", k, v, w))
		}
	}
	for k := range after {
		if _, ok := o[k]; !ok {
			out = append(out, "+ "+k)
		}
	}
	slices.Sort(out)
	return out
}

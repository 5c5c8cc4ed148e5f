package release

import (
	"testing"

	"github.com/hitless-dev/hitless/internal/kube/store"
)

func packed(t *testing.T, b []byte) []byte {
	z, err := store.Compress(b)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// FuzzRevision: a stored revision (or backup) of any shape is decoded or
// refused; what decodes yields its inventory and objects, one per
// manifest, each named by its own kind and name.
func FuzzRevision(f *testing.F) {
	f.Add([]byte(`{"component":"c","number":2,"applied":[{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"a","namespace":"n"}}],"dataPlane":["n/a"]}`))
	f.Add([]byte(`{"applied":[null,{"metadata":7},{"apiVersion":1}]}`))
	f.Add([]byte(`[{"kind":"Secret","metadata":{"name":"s"},"data":{"k":"dg=="}}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var rev Revision
		if store.Unpack(packed(t, b), &rev) == nil {
			inv := rev.Inventory()
			objs := Objects(rev.Applied)
			if len(inv) != len(rev.Applied) || len(objs) != len(rev.Applied) {
				t.Fatalf("%d manifests, %d in the inventory, %d objects", len(rev.Applied), len(inv), len(objs))
			}
			for i, o := range objs {
				if RefOf(o) != inv[i] {
					t.Fatalf("object %d is %v, the inventory says %v", i, RefOf(o), inv[i])
				}
			}
		}
		var backup []map[string]any
		if store.Unpack(packed(t, b), &backup) == nil {
			for _, o := range Objects(backup) {
				_ = RefOf(o).String()
			}
		}
	})
}

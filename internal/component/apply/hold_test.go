package apply

import (
	"encoding/json"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func obj(kind, strategy string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": kind, "metadata": map[string]any{"name": "x", "namespace": "n"}}}
	if strategy != "" {
		_ = unstructured.SetNestedField(u.Object, strategy, "spec", "updateStrategy", "type")
	}
	return u
}

// A patch that changes a DaemonSet's pod template switches it to OnDelete
// in the same request when the apply after it does: never between.
func TestHoldRollout(t *testing.T) {
	removal := []byte(`[{"op":"test","path":"/metadata/resourceVersion","value":"7"},{"op":"remove","path":"/spec/updateStrategy/rollingUpdate"},{"op":"remove","path":"/spec/template/spec/volumes/1"}]`)
	tests := []struct {
		name      string
		u, live   *unstructured.Unstructured
		wantHeld  bool
		wantCount int
	}{
		// The replacement makes the removal inside the strategy: a
		// removal of a path it no longer has would fail the patch.
		{"DaemonSet switched to OnDelete by the apply", obj("DaemonSet", "OnDelete"), obj("DaemonSet", "RollingUpdate"), true, 3},
		{"DaemonSet already OnDelete", obj("DaemonSet", "OnDelete"), obj("DaemonSet", "OnDelete"), false, 3},
		{"DaemonSet the apply leaves rolling", obj("DaemonSet", ""), obj("DaemonSet", "RollingUpdate"), false, 3},
		{"Deployment", obj("Deployment", "OnDelete"), obj("Deployment", "RollingUpdate"), false, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := holdRollout(tt.u, tt.live, removal)
			if err != nil {
				t.Fatal(err)
			}
			var ops []map[string]any
			if err := json.Unmarshal(out, &ops); err != nil {
				t.Fatal(err)
			}
			if len(ops) != tt.wantCount || ops[0]["op"] != "test" || ops[len(ops)-1]["op"] != "remove" {
				t.Fatalf("ops %v", ops)
			}
			held := ops[1]["path"] == "/spec/updateStrategy"
			if held != tt.wantHeld {
				t.Fatalf("held %v, want %v: %v", held, tt.wantHeld, ops)
			}
		})
	}
}

package config_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/hitless-dev/hitless/config"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

// The agent's copies in config/agent and the chart are what `hitless agent
// manifest` prints, but its Namespace (hack/gen.sh writes them).
func TestAgentCopiesAreCurrent(t *testing.T) {
	objs, err := config.Decode([]byte(agent.Manifest(agent.ManifestOptions{})))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, o := range objs {
		if o.GetKind() != "Namespace" {
			b, _ := json.Marshal(o.Object)
			want = append(want, string(b))
		}
	}
	for _, path := range []string{"agent/agent.yaml", "../charts/hitless/files/agent.yaml"} {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := config.Decode(raw)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var got []string
		for _, o := range objs {
			b, _ := json.Marshal(o.Object)
			got = append(got, string(b))
		}
		if len(got) != len(want) {
			t.Errorf("%s holds %d objects, the agent's manifest %d besides its namespace: run hack/gen.sh", path, len(got), len(want))
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s, object %d is stale: run hack/gen.sh\nhave %s\nwant %s", path, i, got[i], want[i])
			}
		}
	}
}

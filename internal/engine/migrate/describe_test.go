package migrate

import (
	"strings"
	"testing"

	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
)

func TestDescribePatchHidesSecrets(t *testing.T) {
	body := []byte(`{"data":{"password":"aHVudGVyMg=="}}`)
	tests := []struct {
		name   string
		ref    plan.ObjectRef
		hidden bool
	}{
		{name: "Secret", ref: plan.ObjectRef{APIVersion: "v1", Kind: "Secret", Namespace: "a", Name: "s"}, hidden: true},
		{name: "ConfigMap", ref: plan.ObjectRef{APIVersion: "v1", Kind: "ConfigMap", Namespace: "a", Name: "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			line := describePatch(&plan.Patch{Object: tc.ref}, body)
			if got := strings.Contains(line, "aHVudGVyMg=="); got == tc.hidden {
				t.Errorf("%q: value shown %v, want %v", line, got, !tc.hidden)
			}
		})
	}
}

package localcluster

import (
	"strings"
	"testing"
)

// The pod-delete stage waits for a pod's grace period, or with quick
// termination for nothing; the replacement must find its expression.
func TestStagesTermination(t *testing.T) {
	for _, tc := range []struct {
		quick      bool
		want, lose string
	}{
		{false, graceDelay, `// "0s"`},
		{true, `.metadata.annotations["hitless.dev/termination-delay"] // "0s"`, "deletionGracePeriodSeconds"},
	} {
		t.Run(map[bool]string{false: "grace period", true: "quick"}[tc.quick], func(t *testing.T) {
			got := stages(tc.quick)
			if !strings.Contains(got, tc.want) || strings.Contains(got, tc.lose) {
				t.Errorf("stages lack %q or hold %q", tc.want, tc.lose)
			}
		})
	}
}

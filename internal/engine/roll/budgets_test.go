package roll

import (
	"testing"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestBudgetsAnswerAnEvictionOnlyAfterItsWrite: the wait for the
// disruption controller's answer to an eviction ends when the budget's
// status listed the pod (the eviction's own write) and then no longer
// does; a write that never listed it, or another budget's, does not end
// it.
func TestBudgetsAnswerAnEvictionOnlyAfterItsWrite(t *testing.T) {
	pdb := func(name string, disrupted ...string) *policyv1.PodDisruptionBudget {
		p := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		if len(disrupted) > 0 {
			p.Status.DisruptedPods = map[string]metav1.Time{}
			for _, d := range disrupted {
				p.Status.DisruptedPods[d] = metav1.Now()
			}
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		writes   []*policyv1.PodDisruptionBudget
		answered bool
	}{
		{"listed then answered", []*policyv1.PodDisruptionBudget{pdb("web", "web-1"), pdb("web")}, true},
		{"answered among others", []*policyv1.PodDisruptionBudget{pdb("web", "web-0", "web-1"), pdb("web", "web-0")}, true},
		{"a write before the eviction's own", []*policyv1.PodDisruptionBudget{pdb("web")}, false},
		{"still listed", []*policyv1.PodDisruptionBudget{pdb("web"), pdb("web", "web-1")}, false},
		{"another budget", []*policyv1.PodDisruptionBudget{pdb("api", "web-1"), pdb("api")}, false},
		{"a pod of the same name prefix", []*policyv1.PodDisruptionBudget{pdb("web", "web-10"), pdb("web")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBudgets(nil)
			answered := b.Expect("ns/web", "web-1")
			h := b.handler()
			for _, w := range tc.writes {
				h.OnUpdate(nil, w)
			}
			select {
			case <-answered:
				if !tc.answered {
					t.Fatal("answered before the disruption controller's write")
				}
			case <-time.After(10 * time.Millisecond):
				if tc.answered {
					t.Fatal("not answered")
				}
			}
			b.Forget("ns/web", "web-1")
			if len(b.evicted) != 0 {
				t.Errorf("Forget left %d awaited evictions", len(b.evicted))
			}
		})
	}
}

package localcluster

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/hitless-dev/hitless/internal/localcluster/kubelet"
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
			got := stages(tc.quick, nil)
			if !strings.Contains(got, tc.want) || strings.Contains(got, tc.lose) {
				t.Errorf("stages lack %q or hold %q", tc.want, tc.lose)
			}
		})
	}
}

// With a lab kubelet every pod stage, and no node stage, leaves its pods
// alone, and the stages still parse.
func TestStagesLeaveLabPods(t *testing.T) {
	images := kubelet.Images{"cloudnativelabs/kube-router": {Repository: "cloudnativelabs/kube-router"}}
	exclusion := images.StageExclusion()
	pods := 0
	for _, doc := range strings.Split(stages(false, images), "\n---\n") {
		var st struct {
			Metadata struct{ Name string }
			Spec     struct {
				ResourceRef struct{ Kind string } `json:"resourceRef"`
				Selector    struct {
					MatchExpressions []struct {
						Key, Operator string
						Values        []string
					} `json:"matchExpressions"`
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &st); err != nil {
			t.Fatalf("a stage does not parse: %v\n%s", err, doc)
		}
		excluded := false
		for _, e := range st.Spec.Selector.MatchExpressions {
			if e.Key == exclusion && e.Operator == "NotIn" && len(e.Values) == 1 && e.Values[0] == "true" {
				excluded = true
			}
		}
		if st.Spec.ResourceRef.Kind == "Pod" {
			pods++
		}
		if excluded != (st.Spec.ResourceRef.Kind == "Pod") {
			t.Errorf("stage %s (%s): leaves the lab kubelet's pods alone: %t", st.Metadata.Name, st.Spec.ResourceRef.Kind, excluded)
		}
	}
	if pods < 3 {
		t.Errorf("%d pod stages; want ready, complete and delete", pods)
	}
	if n := strings.Count(stages(false, nil), exclusion); n != 0 {
		t.Errorf("without a lab kubelet the stages exclude pods %d times", n)
	}
}

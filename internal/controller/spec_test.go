package controller

import (
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

func TestRollSpec(t *testing.T) {
	base := func() *v1alpha1.NodeRoll {
		return &v1alpha1.NodeRoll{Spec: v1alpha1.NodeRollSpec{
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "blue"}},
			Batch:        intstr.FromString("10%"), Order: roll.OrderZone, MaxFailures: 2,
			Drain: &v1alpha1.DrainPolicy{Timeout: &metav1.Duration{Duration: time.Minute}, OnTimeout: roll.OnDrainTimeoutSkip, DeleteEmptyDirData: true},
		}}
	}
	t.Run("carried into the engine's spec", func(t *testing.T) {
		s, err := rollSpec(base(), roll.DefaultActions())
		if err != nil {
			t.Fatal(err)
		}
		if s.Selector != "pool=blue" || s.Batch != "10%" || s.Order != roll.OrderZone || s.MaxFailures != 2 ||
			s.DrainTimeout != time.Minute || s.OnDrainTimeout != roll.OnDrainTimeoutSkip || !s.DeleteEmptyDirData || s.ActionTimeout != 10*time.Minute {
			t.Errorf("engine spec %+v", s)
		}
		nr := base()
		nr.Spec.Batch = intstr.FromInt32(3)
		if s, _ := rollSpec(nr, roll.DefaultActions()); s.Batch != "3" {
			t.Errorf("batch 3 became %q", s.Batch)
		}
	})
	for _, tc := range []struct {
		name   string
		mutate func(*v1alpha1.NodeRoll)
		field  string
	}{
		{"unknown action", func(nr *v1alpha1.NodeRoll) { nr.Spec.Actions = []v1alpha1.NodeAction{{Name: "nope"}} }, "spec.actions[0].name"},
		{"unknown hook action", func(nr *v1alpha1.NodeRoll) {
			nr.Spec.Hooks = &v1alpha1.NodeHooks{PreNode: []v1alpha1.NodeHook{{Action: &v1alpha1.NodeAction{Name: "nope"}}}}
		}, "spec.hooks.preNode[0].action.name"},
		{"bad selector operator", func(nr *v1alpha1.NodeRoll) {
			nr.Spec.NodeSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}
		}, "spec.nodeSelector"},
		{"unknown time zone", func(nr *v1alpha1.NodeRoll) {
			nr.Spec.MaintenanceWindow = &v1alpha1.MaintenanceWindow{Start: "01:00", Duration: metav1.Duration{Duration: time.Hour}, TimeZone: "Nowhere/Atall"}
		}, "spec.maintenanceWindow.timeZone"},
		{"drain policy the engine refuses", func(nr *v1alpha1.NodeRoll) { nr.Spec.Drain.OnTimeout = "ignore" }, "spec.drain.onTimeout"},
		{"negative duration", func(nr *v1alpha1.NodeRoll) { nr.Spec.Drain.Timeout = &metav1.Duration{Duration: -time.Second} }, "spec.drain.timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nr := base()
			tc.mutate(nr)
			_, err := rollSpec(nr, roll.DefaultActions())
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("error %v; want a FieldError naming %s", err, tc.field)
			}
			if !strings.HasPrefix(err.Error(), tc.field+": ") {
				t.Errorf("message %q does not start with the field", err)
			}
		})
	}
}

package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hitless-dev/hitless/api/v1alpha1"
)

// PutMigration creates the bundles of its releases and the Migration
// name, or, when it exists, sets its spec: what `hitless migrate run
// --in-cluster` does. Its plan, parameters and releases are immutable: a
// Migration of that name for another plan is refused at admission
// (apierrors.IsInvalid), before any bundle is created.
func PutMigration(ctx context.Context, c client.Client, kube kubernetes.Interface, bundles []*corev1.ConfigMap, name string, spec v1alpha1.MigrationSpec) (*v1alpha1.Migration, bool, error) {
	return put(ctx, c, kube, bundles, func() *v1alpha1.Migration {
		return &v1alpha1.Migration{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion().String(), Kind: "Migration"},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       spec,
		}
	}, func(live *v1alpha1.Migration) {
		// A rollback asked for stays asked for (admission keeps it so).
		spec.Rollback = spec.Rollback || live.Spec.Rollback
		live.Spec = spec
	})
}

// MigrationOver says whether the Migration's status is a verdict on its
// current generation: Succeeded, RolledBack, Failed, or Paused for a
// reason that is not an error tried again (a gate that does not hold is
// one: the controller runs the migration again later, the command that
// follows it stops there as `hitless migrate run` does).
func MigrationOver(m *v1alpha1.Migration) bool {
	if m.Status.ObservedGeneration != m.Generation {
		return false
	}
	switch m.Status.Phase {
	case v1alpha1.PhaseSucceeded, v1alpha1.PhaseRolledBack, v1alpha1.PhaseFailed:
		return true
	case v1alpha1.PhasePaused:
		cond := meta.FindStatusCondition(m.Status.Conditions, v1alpha1.ConditionPaused)
		return cond != nil && cond.Status == metav1.ConditionTrue && cond.Reason != reasonError
	}
	return false
}

// AwaitingApproval says which pause step the Migration waits on, with
// its question, or ok false.
func AwaitingApproval(m *v1alpha1.Migration) (step, msg string, ok bool) {
	cond := meta.FindStatusCondition(m.Status.Conditions, v1alpha1.ConditionPaused)
	if m.Status.Phase != v1alpha1.PhasePaused || cond == nil || cond.Reason != reasonAwaitStep {
		return "", "", false
	}
	return m.Status.Step, cond.Message, true
}

// FollowMigration reads the Migration every interval until its status is
// a verdict on a generation at least gen (MigrationOver), calling changed
// whenever its status moved.
func FollowMigration(ctx context.Context, c client.Client, name string, gen int64, interval time.Duration, changed func(*v1alpha1.Migration)) (*v1alpha1.Migration, error) {
	return follow(ctx, c, name, interval, func() *v1alpha1.Migration { return &v1alpha1.Migration{} }, MigrationLine,
		func(m *v1alpha1.Migration) bool { return m.Generation >= gen && MigrationOver(m) }, changed)
}

// MigrationLine sums a Migration's status up in a line.
func MigrationLine(m *v1alpha1.Migration) string {
	phase := m.Status.Phase
	if phase == "" {
		phase = v1alpha1.PhasePending
	}
	done := 0
	for _, s := range m.Status.Steps {
		if s.Phase == v1alpha1.StepDone || s.Phase == v1alpha1.StepSkipped || s.Phase == v1alpha1.StepUndone {
			done++
		}
	}
	parts := []string{phase}
	if n := len(m.Status.Steps); n > 0 {
		parts = append(parts, fmt.Sprintf("%d/%d steps", done, n))
	}
	if m.Status.Step != "" {
		parts = append(parts, "step "+m.Status.Step)
	}
	for _, c := range m.Status.Conditions {
		if c.Status == metav1.ConditionTrue && c.Type != v1alpha1.ConditionRolledBack {
			parts = append(parts, c.Reason+": "+c.Message)
		}
	}
	return strings.Join(parts, "; ")
}

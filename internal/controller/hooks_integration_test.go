package controller_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/controller"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// hookNamespace makes sure the controller's hook namespace exists, as the
// install does; it is shared by the tests and left in place.
func hookNamespace(t *testing.T) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controller.DefaultHookNamespace}}
	if _, err := env.Client(t).CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// jobTemplate is a Job hook's template: one container, the pod annotated
// with annotations (the local cluster's KWOK fails a Job pod annotated
// kwok.hitless.dev/exit-code with that code: a model of a failing
// container).
func jobTemplate(annotations string) runtime.RawExtension {
	return runtime.RawExtension{Raw: []byte(`{"metadata":{"labels":{"test":"hooks"}},"spec":{"backoffLimit":0,"template":{"metadata":{"annotations":{` + annotations + `}},"spec":{"containers":[{"name":"lb","image":"registry.example/lb-tool:1.0","command":["lb-tool","drain"]}]}}}}`)}
}

// A NodeRoll's hooks as Jobs: the pre-node Job runs before each node's
// drain, the post-node one on the node before its uncordon, both in
// hitless-hooks with the node in their environment, and the journal keeps
// their outcome. A Job that fails fails its node (uncordoned, nothing
// evicted) and the roll, with the Job, the exit code and the container's
// message in the status.
func TestNodeRollJobHooks(t *testing.T) {
	env.InstallCRDs(t)
	hookNamespace(t)
	c := env.APIClient(t)
	cs := env.Client(t)
	ctx := context.Background()
	sel, nodes := pool(t, 3, 1, 1)
	env.StartController(t)
	t.Cleanup(func() {
		background := metav1.DeletePropagationBackground
		_ = cs.BatchV1().Jobs(controller.DefaultHookNamespace).DeleteCollection(context.Background(), metav1.DeleteOptions{PropagationPolicy: &background}, metav1.ListOptions{LabelSelector: "test=hooks"})
	})

	nr := nodeRoll("job-hooks", sel)
	nr.Spec.Hooks = &v1alpha1.NodeHooks{
		PreNode:  []v1alpha1.NodeHook{{Job: &v1alpha1.JobHook{Template: jobTemplate("")}}},
		PostNode: []v1alpha1.NodeHook{{Job: &v1alpha1.JobHook{OnNode: true, Template: jobTemplate("")}}},
	}
	if err := c.Create(ctx, nr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), nr) })
	nr = waitPhase(t, c, nr.Name, v1alpha1.PhaseSucceeded, 3*time.Minute)
	raw, err := journal.NewStore(cs).Get(ctx, nr.Status.Operation)
	if err != nil {
		t.Fatal(err)
	}
	op, err := journal.Decode[roll.Record](raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range op.Record.Nodes {
		got := map[string]bool{}
		for _, h := range n.Hooks {
			got[h.Name] = h.ExitCode == 0 && strings.Contains(h.Command, "job "+controller.DefaultHookNamespace+"/")
		}
		if !got["pre-node job"] || !got["post-node job"] || n.Phase != roll.PhaseDone {
			t.Errorf("node %s: %s, hooks %+v", n.Name, n.Phase, n.Hooks)
		}
	}
	jobs, err := cs.BatchV1().Jobs(controller.DefaultHookNamespace).List(ctx, metav1.ListOptions{LabelSelector: roll.LabelJobOperation + "=" + op.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs.Items) != 2*len(nodes) {
		t.Errorf("%d Jobs in %s for operation %s, want %d", len(jobs.Items), controller.DefaultHookNamespace, op.ID, 2*len(nodes))
	}
	for _, j := range jobs.Items {
		pod := j.Spec.Template.Spec
		node := j.Labels[roll.LabelJobNode]
		if j.Status.Succeeded != 1 || pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("Job %s: %d succeeded, automountServiceAccountToken %v", j.Name, j.Status.Succeeded, pod.AutomountServiceAccountToken)
		}
		if onNode := pod.NodeName == node; onNode != (j.Labels[roll.LabelJobPhase] == roll.PhasePostNode) {
			t.Errorf("Job %s (%s of %s) placed on %q", j.Name, j.Labels[roll.LabelJobPhase], node, pod.NodeName)
		}
	}
	if left := cordoned(t, nodes); len(left) != 0 {
		t.Errorf("left cordoned: %v", left)
	}

	failing := nodeRoll("job-hook-fails", sel)
	failing.Spec.Hooks = &v1alpha1.NodeHooks{PreNode: []v1alpha1.NodeHook{{Job: &v1alpha1.JobHook{Template: jobTemplate(`"kwok.hitless.dev/exit-code":"4","kwok.hitless.dev/message":"backend pool locked"`)}}}}
	if err := c.Create(ctx, failing); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), failing) })
	failing = waitPhase(t, c, failing.Name, v1alpha1.PhaseFailed, 2*time.Minute)
	cond := conditionTrue(failing, v1alpha1.ConditionFailed)
	if cond == nil || !strings.Contains(cond.Message, "exited 4") || !strings.Contains(cond.Message, "backend pool locked") {
		t.Errorf("Failed condition %+v; want the Job's exit code and message", cond)
	}
	if failing.Status.Summary.Failed != 1 || failing.Status.Summary.Done != 0 {
		t.Errorf("summary %+v, want the first node failed and no other started", failing.Status.Summary)
	}
	if left := cordoned(t, nodes); len(left) != 0 {
		t.Errorf("a failed hook left cordoned: %v", left)
	}
}

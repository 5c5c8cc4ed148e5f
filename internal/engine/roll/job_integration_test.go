package roll_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// jobFile writes a job action's parameters: a Job of one container that
// runs cmd, with the pod annotations given (the local cluster's KWOK
// fails a Job pod annotated kwok.hitless.dev/exit-code with that code).
func jobFile(t *testing.T, name, extra, podAnnotations string) string {
	t.Helper()
	doc := extra + `template:
  metadata:
    labels: {team: network}
  spec:
    backoffLimit: 0
    template:
      metadata:
        annotations: {` + podAnnotations + `}
      spec:
        containers:
        - name: hook
          image: registry.example/lb-tool:1.0
          command: [sh, -c, 'lb-tool drain "$HITLESS_NODE"']
`
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// hookJobs lists the Jobs the roll ran for node in phase.
func hookJobs(t *testing.T, cs kubernetes.Interface, op, node, phase string) []batchv1.Job {
	t.Helper()
	sel := roll.LabelJobOperation + "=" + op + "," + roll.LabelJobNode + "=" + node + "," + roll.LabelJobPhase + "=" + phase
	l, err := cs.BatchV1().Jobs(roll.DefaultJobNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func containerEnv(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// TestJobHooks: pre- and post-node hooks as Kubernetes Jobs. A Job the
// API server would refuse stops the roll before anything changes; Jobs
// that complete run once per node (the pre-node one before its drain, the
// post-node one on the node itself) with the node in their environment,
// and the journal keeps their outcome; a Job that fails fails its node
// with the Job, the exit code and the container's message named, leaves
// the node uncordoned with its pods, and a re-run replaces the failed Job.
func TestJobHooks(t *testing.T) {
	cs := env.Client(t)
	_, selector, nodes, g := pool(t, 2, 1)
	t.Cleanup(func() {
		background := metav1.DeletePropagationBackground
		_ = cs.BatchV1().Jobs(roll.DefaultJobNamespace).DeleteCollection(context.Background(), metav1.DeleteOptions{PropagationPolicy: &background}, metav1.ListOptions{LabelSelector: "team=network"})
	})

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("template:\n  spec:\n    template:\n      spec:\n        containers: [{name: hook}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := lastRollOrNil(t, cs)
	code, _, errOut := hitless(t, "roll", "--selector", selector, "--pre-node-action", "job=@"+bad)
	if code != 2 || !strings.Contains(errOut, "--pre-node-action") || !strings.Contains(errOut, "image") {
		t.Errorf("a Job without an image: exit %d, want 2 naming --pre-node-action and the image\n%s", code, errOut)
	}
	if after := lastRollOrNil(t, cs); after != nil && (before == nil || after.ID != before.ID) {
		t.Errorf("a refused Job template journaled operation %s", after.ID)
	}
	if left := cordoned(t, cs, nodes); len(left) != 0 {
		t.Errorf("a refused Job template cordoned %v", left)
	}

	pre := jobFile(t, "pre.yaml", "", "")
	post := jobFile(t, "post.yaml", "onNode: true\n", "")
	code, out, errOut := hitless(t, "roll", "--selector", selector, "--pre-node-action", "job=@"+pre, "--post-node-action", "job=@"+post)
	if code != 0 {
		t.Fatalf("roll with Job hooks: exit %d\n%s%s", code, out, errOut)
	}
	op := lastRoll(t, cs)
	for _, n := range op.Record.Nodes {
		var drainStarted metav1.Time
		for _, p := range n.Phases {
			if p.Name == roll.PhaseDrain {
				drainStarted = metav1.NewTime(p.Started)
			}
		}
		hooks := map[string]roll.HookRecord{}
		for _, h := range n.Hooks {
			hooks[h.Name] = h
		}
		for _, phase := range []string{roll.PhasePreNode, roll.PhasePostNode} {
			h, ok := hooks[phase+" job"]
			if !ok || h.ExitCode != 0 || !strings.Contains(h.Command, "job "+roll.DefaultJobNamespace+"/hitless-") || !strings.Contains(h.Output, "complete") {
				t.Errorf("node %s: journaled %s hook %+v (ok %t)", n.Name, phase, h, ok)
			}
			jobs := hookJobs(t, cs, op.ID, n.Name, phase)
			if len(jobs) != 1 {
				t.Fatalf("node %s: %d %s Jobs, want 1", n.Name, len(jobs), phase)
			}
			j := jobs[0]
			c := j.Spec.Template.Spec.Containers[0]
			if containerEnv(c, "HITLESS_NODE") != n.Name || containerEnv(c, "HITLESS_OPERATION") != op.ID || containerEnv(c, "HITLESS_HOOK") != phase || containerEnv(c, "HITLESS_NODE_IP") == "" {
				t.Errorf("node %s %s Job's environment: %v", n.Name, phase, c.Env)
			}
			if j.Labels["team"] != "network" || j.Status.Succeeded != 1 {
				t.Errorf("node %s %s Job: labels %v, %d succeeded", n.Name, phase, j.Labels, j.Status.Succeeded)
			}
			onNode := j.Spec.Template.Spec.NodeName == n.Name
			if onNode != (phase == roll.PhasePostNode) {
				t.Errorf("node %s %s Job placed on %q", n.Name, phase, j.Spec.Template.Spec.NodeName)
			}
			if phase == roll.PhasePreNode && (j.Status.CompletionTime == nil || drainStarted.IsZero() || drainStarted.Before(j.Status.CompletionTime)) {
				t.Errorf("node %s: pre-node Job completed at %v, drain started at %v", n.Name, j.Status.CompletionTime, drainStarted)
			}
		}
		if n.Phase != roll.PhaseDone {
			t.Errorf("node %s ended %s: %s", n.Name, n.Phase, n.Error)
		}
	}
	if left := cordoned(t, cs, nodes); len(left) != 0 {
		t.Errorf("left cordoned: %v", left)
	}

	failing := jobFile(t, "failing.yaml", "", `kwok.hitless.dev/exit-code: "3", kwok.hitless.dev/message: "load balancer refused"`)
	args := []string{"roll", "--selector", selector, "--pre-node-action", "job=@" + failing}
	var firstUID string
	for run := 1; run <= 2; run++ {
		code, out, _ = hitless(t, args...)
		if code == 0 {
			t.Fatalf("run %d: a failing pre-node Job: exit 0\n%s", run, out)
		}
		op = lastRoll(t, cs)
		first := op.Record.NodeByName(nodes[0])
		if first == nil || first.Phase != roll.PhaseFailed || !strings.Contains(first.Error, "exited 3") || !strings.Contains(first.Error, "load balancer refused") || len(first.Evicted) != 0 {
			t.Errorf("run %d: node %s: %+v", run, nodes[0], first)
		}
		jobs := hookJobs(t, cs, op.ID, nodes[0], roll.PhasePreNode)
		if len(jobs) != 1 || jobs[0].Status.Failed != 1 {
			t.Fatalf("run %d: %d failed pre-node Jobs, want one that failed once", run, len(jobs))
		}
		switch uid := string(jobs[0].UID); {
		case run == 1:
			firstUID = uid
		case uid == firstUID:
			t.Errorf("the re-run kept the failed Job %s instead of running it again", jobs[0].Name)
		}
		if left := cordoned(t, cs, nodes); len(left) != 0 {
			t.Errorf("run %d: a failed hook left cordoned %v", run, left)
		}
	}
	if op.Runs != 2 {
		t.Errorf("the re-run is run %d of %s, want 2: it resumes the failed operation", op.Runs, op.ID)
	}
	if code, out, errOut := hitless(t, "abort", op.ID); code != 0 {
		t.Errorf("abort %s: exit %d\n%s%s", op.ID, code, out, errOut)
	}
	if v := g.Take(false); len(v) > 0 {
		t.Errorf("guard: %s", strings.Join(v, "; "))
	}
	assertLockFree(t, cs)
}

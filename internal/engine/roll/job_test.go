package roll

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/hitless-dev/hitless/internal/engine/operation"
)

const jobContainers = `"template":{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"x","env":[{"name":"HITLESS_NODE","value":"spoofed"}]}]}}}}`

func TestJobParams(t *testing.T) {
	for _, tc := range []struct {
		name, params, pinned string
		field                string // "" for good parameters
	}{
		{"defaults", `{` + jobContainers + `}`, "", ""},
		{"pinned namespace filled in", `{` + jobContainers + `}`, "hitless-hooks", ""},
		{"pinned namespace named", `{"namespace":"hitless-hooks",` + jobContainers + `}`, "hitless-hooks", ""},
		{"another namespace than the pinned one", `{"namespace":"kube-system",` + jobContainers + `}`, "hitless-hooks", "job.namespace"},
		{"bad namespace", `{"namespace":"Kube_System",` + jobContainers + `}`, "", "job.namespace"},
		{"no container", `{"template":{"spec":{"template":{"spec":{}}}}}`, "", "job.template.spec.template.spec.containers"},
		{"restart always", `{"template":{"spec":{"template":{"spec":{"restartPolicy":"Always","containers":[{"name":"a","image":"x"}]}}}}}`, "", "job.template.spec.template.spec.restartPolicy"},
		{"onNode with a nodeSelector", `{"onNode":true,"template":{"spec":{"template":{"spec":{"nodeSelector":{"a":"b"},"containers":[{"name":"a","image":"x"}]}}}}}`, "", "job.onNode"},
		{"unknown field", `{"templat":{}}`, "", "job"},
		{"unknown field deep", `{"template":{"spec":{"template":{"spec":{"containers":[{"name":"a","imagee":"x"}]}}}}}`, "", "job"},
		{"not JSON", `{`, "", "job"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newJob(json.RawMessage(tc.params), tc.pinned)
			var fe *operation.FieldError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
				t.Fatalf("error %v; want one naming %s", err, tc.field)
			}
		})
	}
}

// The Job of a node: its name is the same for the same node, phase and
// operation (a resumed roll finds it) and differs otherwise; the node is
// in every container's environment, whatever the template said; onNode
// places it on the node, tolerating the cordon; no token is mounted
// unless the template asks.
func TestJobForNode(t *testing.T) {
	act, err := newJob(json.RawMessage(`{"onNode":true,`+jobContainers+`}`), "hitless-hooks")
	if err != nil {
		t.Fatal(err)
	}
	j := act.(*jobAction)
	target := Target{Node: strings.Repeat("n", 70), NodeIP: "10.0.0.7", Operation: "roll-1", Batch: 3, Phase: PhasePreNode}
	job := j.job(target)
	if job.Namespace != "hitless-hooks" || job.Name != j.job(target).Name || len(job.Name) > validation.DNS1123LabelMaxLength {
		t.Errorf("Job %s/%s", job.Namespace, job.Name)
	}
	for _, other := range []Target{{Node: "n2", Operation: "roll-1", Phase: PhasePreNode}, {Node: target.Node, Operation: "roll-2", Phase: PhasePreNode}, {Node: target.Node, Operation: "roll-1", Phase: PhasePostNode}} {
		if j.job(other).Name == job.Name {
			t.Errorf("the Job of %+v is named as the one of %+v", other, target)
		}
	}
	if msgs := validation.IsValidLabelValue(job.Labels[LabelJobNode]); len(msgs) > 0 {
		t.Errorf("node label %q: %v", job.Labels[LabelJobNode], msgs)
	}
	pod := job.Spec.Template.Spec
	env := map[string]string{}
	for _, e := range pod.Containers[0].Env {
		if _, seen := env[e.Name]; seen {
			t.Errorf("%s set twice", e.Name)
		}
		env[e.Name] = e.Value
	}
	want := map[string]string{"HITLESS_NODE": target.Node, "HITLESS_NODE_IP": "10.0.0.7", "HITLESS_BATCH": "3", "HITLESS_OPERATION": "roll-1", "HITLESS_HOOK": PhasePreNode}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	if pod.NodeName != target.Node || len(pod.Tolerations) != 1 || pod.Tolerations[0].Key != corev1.TaintNodeUnschedulable {
		t.Errorf("onNode: nodeName %q, tolerations %+v", pod.NodeName, pod.Tolerations)
	}
	if pod.RestartPolicy != corev1.RestartPolicyNever || pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken || job.Spec.TTLSecondsAfterFinished == nil {
		t.Errorf("defaults: restartPolicy %q, automount %v, ttl %v", pod.RestartPolicy, pod.AutomountServiceAccountToken, job.Spec.TTLSecondsAfterFinished)
	}
}

// FuzzJobParams: any parameters either are refused with a field error or
// make a Job that names the node and has a container.
func FuzzJobParams(f *testing.F) {
	f.Add([]byte(`{` + jobContainers + `}`))
	f.Add([]byte(`{"onNode":true,"namespace":"x",` + jobContainers + `}`))
	f.Add([]byte(`{"template":{"metadata":{"name":"x","labels":{"a":"b"}},"spec":{"template":{"spec":{"initContainers":[{"name":"i"}],"containers":[{"name":"a"}]}}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		act, err := newJob(b, "")
		if err != nil {
			var fe *operation.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("refused without naming a field: %v", err)
			}
			return
		}
		job := act.(*jobAction).job(Target{Node: "n1", Operation: "op", Phase: PhaseAction})
		if len(job.Spec.Template.Spec.Containers) == 0 || job.Labels[LabelJobNode] != "n1" || job.Namespace == "" {
			t.Fatalf("a Job without a container, its node or a namespace: %+v", job)
		}
	})
}

package roll

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	kjson "sigs.k8s.io/json"

	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/kube/transient"
)

// ActionJob is the per-node action that runs a Kubernetes Job for the node
// and waits for it to complete.
const ActionJob = "job"

// DefaultJobNamespace is where a job action's Job runs unless its
// parameters say otherwise.
const DefaultJobNamespace = "hitless-system"

// Labels of a job action's Job and its pods.
const (
	LabelJobOperation = "hitless.dev/operation"
	LabelJobNode      = "hitless.dev/node"
	LabelJobPhase     = "hitless.dev/hook"
)

// JobParams are the parameters of the job action: a Job template run once
// per node and phase, with HITLESS_NODE, HITLESS_NODE_IP, HITLESS_BATCH,
// HITLESS_OPERATION and HITLESS_HOOK in every container's environment.
type JobParams struct {
	// Namespace is where the Job runs (default hitless-system).
	Namespace string `json:"namespace,omitempty"`
	// OnNode runs the Job's pod on the node being rolled (spec.nodeName,
	// tolerating its cordon); otherwise the scheduler places it.
	OnNode bool `json:"onNode,omitempty"`
	// Template is the Job's metadata and spec. restartPolicy defaults to
	// Never, automountServiceAccountToken to false and
	// ttlSecondsAfterFinished to one hour.
	Template batchv1.JobTemplateSpec `json:"template"`
}

// JobActionType returns the job action. A non-empty pinned namespace is the
// only one it runs Jobs in (the default, and any other is refused): how a
// controller keeps the Jobs of whoever may create a NodeRoll in a namespace
// whose ServiceAccounts an administrator chose.
func JobActionType(pinned string) ActionType {
	return ActionType{Name: ActionJob, New: func(params json.RawMessage) (Action, error) { return newJob(params, pinned) }}
}

// ParseJobParams reads a job action's parameters strictly: an unknown
// field is named with its path.
func ParseJobParams(params []byte) (JobParams, error) {
	var p JobParams
	if len(params) == 0 {
		params = []byte("{}")
	}
	strict, err := kjson.UnmarshalStrict(params, &p)
	if err != nil {
		return p, &operation.FieldError{Field: "job", Msg: fmt.Sprintf("parameters: %v", err)}
	}
	if len(strict) > 0 {
		return p, &operation.FieldError{Field: "job", Msg: fmt.Sprintf("parameters: %v", strict[0])}
	}
	return p, nil
}

func newJob(params json.RawMessage, pinned string) (Action, error) {
	p, err := ParseJobParams(params)
	if err != nil {
		return nil, err
	}
	switch {
	case p.Namespace == "" && pinned != "":
		p.Namespace = pinned
	case p.Namespace == "":
		p.Namespace = DefaultJobNamespace
	case pinned != "" && p.Namespace != pinned:
		return nil, &operation.FieldError{Field: "job.namespace", Msg: fmt.Sprintf("%q: Jobs run in %s only here", p.Namespace, pinned)}
	}
	if msgs := validation.IsDNS1123Label(p.Namespace); len(msgs) > 0 {
		return nil, &operation.FieldError{Field: "job.namespace", Msg: fmt.Sprintf("%q: %s", p.Namespace, strings.Join(msgs, "; "))}
	}
	pod := &p.Template.Spec.Template.Spec
	if len(pod.Containers) == 0 {
		return nil, &operation.FieldError{Field: "job.template.spec.template.spec.containers", Msg: "a Job needs at least one container"}
	}
	switch pod.RestartPolicy {
	case "":
		pod.RestartPolicy = corev1.RestartPolicyNever
	case corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure:
	default:
		return nil, &operation.FieldError{Field: "job.template.spec.template.spec.restartPolicy", Msg: fmt.Sprintf("%q: a Job's pods restart Never or OnFailure", pod.RestartPolicy)}
	}
	if p.OnNode && (pod.NodeName != "" || pod.NodeSelector != nil || pod.Affinity != nil) {
		return nil, &operation.FieldError{Field: "job.onNode", Msg: "onNode places the pod on the rolled node: leave nodeName, nodeSelector and affinity out of the template"}
	}
	if pod.AutomountServiceAccountToken == nil {
		no := false
		pod.AutomountServiceAccountToken = &no
	}
	if p.Template.Spec.TTLSecondsAfterFinished == nil {
		hour := int32(3600)
		p.Template.Spec.TTLSecondsAfterFinished = &hour
	}
	return &jobAction{p: p}, nil
}

type jobAction struct{ p JobParams }

// job returns the Job the action runs for t: its name is derived from the
// operation, the node, the phase and the parameters, so that a resumed
// roll finds the Job it started before a crash.
func (a *jobAction) job(t Target) *batchv1.Job {
	params, _ := json.Marshal(a.p)
	sum := sha256.Sum256([]byte(strings.Join([]string{t.Operation, t.Node, t.Phase, string(params)}, "\x00")))
	short := map[string]string{PhasePreNode: "pre", PhasePostNode: "post"}[t.Phase]
	if short == "" {
		short = "act"
	}
	j := &batchv1.Job{ObjectMeta: *a.p.Template.ObjectMeta.DeepCopy(), Spec: *a.p.Template.Spec.DeepCopy()}
	j.Name = "hitless-" + short + "-" + hex.EncodeToString(sum[:])[:16]
	j.Namespace = a.p.Namespace
	j.GenerateName = ""
	meta := map[string]string{LabelJobOperation: t.Operation, LabelJobNode: labelValue(t.Node), LabelJobPhase: t.Phase}
	for _, m := range []*metav1.ObjectMeta{&j.ObjectMeta, &j.Spec.Template.ObjectMeta} {
		if m.Labels == nil {
			m.Labels = map[string]string{}
		}
		for k, v := range meta {
			m.Labels[k] = v
		}
	}
	pod := &j.Spec.Template.Spec
	env := []corev1.EnvVar{
		{Name: "HITLESS_NODE", Value: t.Node},
		{Name: "HITLESS_NODE_IP", Value: t.NodeIP},
		{Name: "HITLESS_BATCH", Value: strconv.Itoa(t.Batch)},
		{Name: "HITLESS_OPERATION", Value: t.Operation},
		{Name: "HITLESS_HOOK", Value: t.Phase},
	}
	for _, cs := range [][]corev1.Container{pod.InitContainers, pod.Containers} {
		for i := range cs {
			cs[i].Env = append(slices.DeleteFunc(cs[i].Env, func(e corev1.EnvVar) bool { return strings.HasPrefix(e.Name, "HITLESS_") }), env...)
		}
	}
	if a.p.OnNode {
		pod.NodeName = t.Node
		pod.Tolerations = append(pod.Tolerations, corev1.Toleration{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
	}
	return j
}

// labelValue is a node name as a label value (at most 63 characters).
func labelValue(s string) string {
	if len(s) <= validation.LabelValueMaxLength {
		return s
	}
	return strings.TrimRight(s[:validation.LabelValueMaxLength], "-.")
}

// Check creates the Job as a server-side dry run for a placeholder node, so
// that what the API server would refuse in the template is refused before
// the roll changes anything.
func (a *jobAction) Check(ctx context.Context, cs kubernetes.Interface) error {
	j := a.job(Target{Node: "node-check", NodeIP: "192.0.2.1", Operation: "check", Batch: 1, Phase: PhaseAction})
	_, err := cs.BatchV1().Jobs(j.Namespace).Create(ctx, j, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	var status apierrors.APIStatus
	if err != nil && errors.As(err, &status) && apierrors.IsInvalid(err) {
		var causes []string
		if d := status.Status().Details; d != nil {
			for _, c := range d.Causes {
				causes = append(causes, strings.TrimSpace(c.Field+": "+c.Message))
			}
		}
		return &operation.FieldError{Field: "job.template", Msg: fmt.Sprintf("the API server refuses the Job: %s", strings.Join(causes, "; "))}
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("checking the Job template in namespace %s: %w", j.Namespace, err)
	}
	if apierrors.IsNotFound(err) {
		return &operation.FieldError{Field: "job.namespace", Msg: fmt.Sprintf("namespace %s does not exist", j.Namespace)}
	}
	return nil
}

// Run creates the node's Job (or finds the one a crashed run created) and
// waits for it: Complete is success; Failed fails the node, naming the
// Job, its reason and the failed container's exit code and message. A Job
// that failed before is replaced, so a retried node runs it again. When
// the wait ends without an outcome (timeout, abort), the Job is deleted
// with its pods.
func (a *jobAction) Run(ctx context.Context, t Target) error {
	want := a.job(t)
	jobs := t.Client.BatchV1().Jobs(want.Namespace)
	start := time.Now()
	ref := want.Namespace + "/" + want.Name
	rec := HookRecord{Name: t.Phase + " job", Command: "job " + ref}
	finish := func(exit int, out string, err error) error {
		rec.ExitCode, rec.Output, rec.Took = exit, tail(out, 2048), time.Since(start).Round(time.Millisecond).String()
		if t.Record != nil {
			if uerr := t.Record(rec); uerr != nil {
				return uerr
			}
		}
		return err
	}
	if err := createJob(ctx, jobs, want); err != nil {
		return finish(-1, err.Error(), err)
	}
	if t.Progress != nil {
		t.Progress("running Job " + ref)
	}
	var done *batchv1.Job
	err := transient.Poll(ctx, time.Second, func() (bool, error) {
		j, err := jobs.Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("reading Job %s: %w", ref, err)
		}
		if jobCondition(j, batchv1.JobComplete) != nil || jobCondition(j, batchv1.JobFailed) != nil {
			done = j
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		background := metav1.DeletePropagationBackground
		_ = jobs.Delete(dctx, want.Name, metav1.DeleteOptions{PropagationPolicy: &background})
		return finish(-1, "Job deleted: it did not finish in time", fmt.Errorf("%s on node %s: Job %s did not finish: %w", t.Phase, t.Node, ref, err))
	}
	if c := jobCondition(done, batchv1.JobFailed); c != nil {
		exit, why := failedPod(ctx, t.Client, done)
		msg := fmt.Sprintf("Job %s failed (%s: %s)%s", ref, c.Reason, c.Message, why)
		return finish(exit, msg, fmt.Errorf("%s on node %s: %s", t.Phase, t.Node, msg))
	}
	return finish(0, fmt.Sprintf("Job %s complete (%d pods succeeded)", ref, done.Status.Succeeded), nil)
}

// createJob creates the Job, or keeps the one already there unless it
// failed, which it deletes (with its pods) and creates again.
func createJob(ctx context.Context, jobs jobClient, want *batchv1.Job) error {
	ref := want.Namespace + "/" + want.Name
	return transient.Poll(ctx, 500*time.Millisecond, func() (bool, error) {
		_, err := jobs.Create(ctx, want, metav1.CreateOptions{})
		if err == nil {
			return true, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return false, fmt.Errorf("creating Job %s: %w", ref, err)
		}
		old, err := jobs.Get(ctx, want.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return false, nil
		case err != nil:
			return false, fmt.Errorf("reading Job %s: %w", ref, err)
		case old.Labels[LabelJobOperation] != want.Labels[LabelJobOperation]:
			return false, fmt.Errorf("creating Job %s: a Job of that name belongs to another operation (%q)", ref, old.Labels[LabelJobOperation])
		case old.DeletionTimestamp != nil:
			return false, nil // a failed run's Job on its way out
		case jobCondition(old, batchv1.JobFailed) == nil:
			return true, nil // this node's Job, started before a crash
		}
		foreground := metav1.DeletePropagationForeground
		if err := jobs.Delete(ctx, want.Name, metav1.DeleteOptions{PropagationPolicy: &foreground, Preconditions: &metav1.Preconditions{UID: &old.UID}}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return false, fmt.Errorf("deleting the failed Job %s to run it again: %w", ref, err)
		}
		return false, nil
	})
}

type jobClient interface {
	Create(ctx context.Context, j *batchv1.Job, opts metav1.CreateOptions) (*batchv1.Job, error)
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*batchv1.Job, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

func jobCondition(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

// failedPod finds the Job's last failed container: its exit code and what
// it said (its termination message, else the end of its log).
func failedPod(ctx context.Context, cs kubernetes.Interface, j *batchv1.Job) (int, string) {
	pods, err := cs.CoreV1().Pods(j.Namespace).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + j.Name})
	if err != nil {
		return -1, ""
	}
	exit, why := -1, ""
	var last time.Time
	for _, p := range pods.Items {
		for _, s := range p.Status.ContainerStatuses {
			term := s.State.Terminated
			if term == nil || term.ExitCode == 0 || term.FinishedAt.Time.Before(last) {
				continue
			}
			last, exit = term.FinishedAt.Time, int(term.ExitCode)
			why = fmt.Sprintf("; pod %s container %s exited %d (%s)", p.Name, s.Name, term.ExitCode, term.Reason)
			msg := strings.TrimSpace(term.Message)
			if msg == "" {
				msg = podLog(ctx, cs, p.Namespace, p.Name, s.Name)
			}
			if msg != "" {
				why += ": " + msg
			}
		}
	}
	return exit, why
}

// podLog is the end of a container's log, or nothing when it cannot be
// read (no kubelet, no right to pods/log).
func podLog(ctx context.Context, cs kubernetes.Interface, ns, pod, container string) string {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	lines := int64(20)
	limit := int64(2048)
	b, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, TailLines: &lines, LimitBytes: &limit}).DoRaw(lctx)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

package catalog

import (
	"context"
	"fmt"
	"strings"

	kstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/hitless-dev/hitless/internal/check"
)

func workloadChecks() []check.Check[*Input] {
	return []check.Check[*Input]{
		check.Func[*Input]{Name: "workloads.pods", Heading: "Every pod is Running or Completed", Fn: podHealth},
		check.Func[*Input]{Name: "workloads.rollouts", Heading: "Deployments, StatefulSets and DaemonSets fully rolled out", Fn: rollouts},
	}
}

// badWaiting are container waiting reasons that mean a pod is failing
// even while its phase says Running or Pending.
var badWaiting = map[string]bool{
	"CrashLoopBackOff": true, "ImagePullBackOff": true, "ErrImagePull": true, "CreateContainerConfigError": true,
	"CreateContainerError": true, "InvalidImageName": true, "RunContainerError": true,
}

// podProblem says why p is neither Running nor Completed, or "".
func podProblem(p *corev1.Pod) string {
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && badWaiting[w.Reason] {
			return fmt.Sprintf("%s (container %s: %s)", w.Reason, cs.Name, oneLine(w.Message))
		}
	}
	switch p.Status.Phase {
	case corev1.PodRunning, corev1.PodSucceeded:
		return ""
	case corev1.PodPending:
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				return fmt.Sprintf("Pending: %s: %s", c.Reason, oneLine(c.Message))
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && w.Reason != "" {
				return "Pending: " + w.Reason
			}
		}
		return "Pending"
	case corev1.PodFailed:
		return strings.TrimSpace("Failed: " + p.Status.Reason + " " + oneLine(p.Status.Message))
	}
	return string(p.Status.Phase)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

func podHealth(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("pods"); err != nil {
		return check.Errored(err)
	}
	var objs, why []string
	for i := range in.Snap.Pods {
		p := &in.Snap.Pods[i]
		if p.DeletionTimestamp != nil || !in.selected(p.Namespace, p.Labels) {
			continue
		}
		if reason := podProblem(p); reason != "" {
			objs = append(objs, podRef(p))
			why = append(why, fmt.Sprintf("%s/%s %s", p.Namespace, p.Name, reason))
		}
	}
	if len(objs) > 0 {
		return check.Outcome{Status: check.Fail,
			Message:     fmt.Sprintf("%d pod(s) neither Running nor Completed: %s", len(objs), summarize(why)),
			Objects:     objs,
			Remediation: "kubectl describe the pods named; fix scheduling, images or crashes before (or after) the operation"}
	}
	return check.Passed("every pod is Running or Completed")
}

// rollouts asks kstatus, the readiness rules kubectl and Flux share,
// whether each workload is Current.
func rollouts(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("deployments", "statefulsets", "daemonsets"); err != nil {
		return check.Errored(err)
	}
	type obj struct {
		kind, ns, name string
		labels         map[string]string
		o              any
	}
	var all []obj
	for i := range in.Snap.Deployments {
		d := &in.Snap.Deployments[i]
		all = append(all, obj{"Deployment", d.Namespace, d.Name, d.Labels, d})
	}
	for i := range in.Snap.StatefulSets {
		s := &in.Snap.StatefulSets[i]
		all = append(all, obj{"StatefulSet", s.Namespace, s.Name, s.Labels, s})
	}
	for i := range in.Snap.DaemonSets {
		d := &in.Snap.DaemonSets[i]
		all = append(all, obj{"DaemonSet", d.Namespace, d.Name, d.Labels, d})
	}
	var objs, why []string
	n := 0
	for _, o := range all {
		if !in.selected(o.ns, o.labels) {
			continue
		}
		n++
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o.o)
		if err != nil {
			return check.Errored(err)
		}
		u := &unstructured.Unstructured{Object: m}
		u.SetGroupVersionKind(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: o.kind})
		res, err := kstatus.Compute(u)
		if err != nil {
			return check.Errored(fmt.Errorf("computing status of %s %s/%s: %w", o.kind, o.ns, o.name, err))
		}
		if res.Status != kstatus.CurrentStatus {
			objs = append(objs, o.kind+"/"+o.ns+"/"+o.name)
			why = append(why, fmt.Sprintf("%s %s/%s %s: %s", o.kind, o.ns, o.name, res.Status, res.Message))
		}
	}
	if len(objs) > 0 {
		return check.Outcome{Status: check.Fail,
			Message:     fmt.Sprintf("%d of %d workload(s) not fully rolled out: %s", len(objs), n, summarize(why)),
			Objects:     objs,
			Remediation: "wait for the rollouts (kubectl rollout status) or fix what stalls them"}
	}
	return check.Passed("all %d workloads rolled out", n)
}

// selected applies the run's namespace and label filter to workloads.
func (in *Input) selected(ns string, l map[string]string) bool {
	if in.Namespace != "" && ns != in.Namespace {
		return false
	}
	return in.Selector == nil || in.Selector.Matches(labels.Set(l))
}

package kubelet

import (
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConditionLabKubelet marks the pods the lab kubelet runs: their data
// path is real (the lab agents' model leaves them alone).
const ConditionLabKubelet corev1.PodConditionType = "hitless.dev/LabKubelet"

// container is the state of one of the pod's containers.
type container struct {
	spec corev1.Container

	mu       sync.Mutex
	proc     *process
	restarts int32
	ready    bool
	last     *corev1.ContainerStateTerminated
	waiting  *corev1.ContainerStateWaiting
	id       string // the latest run's, kept after it ends as a kubelet keeps it
}

func (c *container) current() *process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proc
}

func (c *container) run(p *process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.proc, c.waiting, c.ready = p, nil, false
	c.id = "lab://" + strconv.Itoa(p.cmd.Process.Pid)
}

// exit records a run's end; restart says whether another run follows.
func (c *container) exit(p *process, restart bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = &corev1.ContainerStateTerminated{ExitCode: p.code, Reason: reason(p.code),
		StartedAt: metav1.NewTime(p.started), FinishedAt: metav1.NewTime(p.finished)}
	c.proc, c.ready, c.waiting = nil, false, nil
	if restart {
		c.restarts++
		c.waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off restarting the container"}
	}
}

func (c *container) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
}

func (c *container) setReady(ready bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := c.ready != ready
	c.ready = ready
	return changed
}

func reason(code int32) string {
	switch code {
	case 0:
		return "Completed"
	case 137:
		return "Killed"
	}
	return "Error"
}

// status is the container's status as a kubelet reports it.
func (c *container) status(image string, initDone bool) corev1.ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := corev1.ContainerStatus{Name: c.spec.Name, Image: image, ImageID: image, RestartCount: c.restarts, Ready: c.ready,
		Started: new(c.proc != nil), ContainerID: c.id}
	if c.last != nil {
		s.LastTerminationState = corev1.ContainerState{Terminated: c.last.DeepCopy()}
	}
	switch {
	case c.proc != nil:
		s.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.proc.started)}
	case initDone && c.last != nil && c.last.ExitCode == 0:
		s.State.Terminated = c.last.DeepCopy()
		s.LastTerminationState = corev1.ContainerState{}
	case c.waiting != nil:
		s.State.Waiting = c.waiting.DeepCopy()
	default:
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
	}
	return s
}

// status is the pod's status from its containers.
func (w *worker) status() corev1.PodStatus {
	w.mu.Lock()
	podIP, problem := w.podIP, w.problem
	if w.started.IsZero() {
		w.started = time.Now()
	}
	started := w.started
	w.mu.Unlock()

	st := corev1.PodStatus{Phase: corev1.PodPending, HostIP: w.node.IP, HostIPs: []corev1.HostIP{{IP: w.node.IP}},
		StartTime: &metav1.Time{Time: started}, QOSClass: w.pod.Status.QOSClass}
	if podIP != "" {
		st.PodIP, st.PodIPs = podIP, []corev1.PodIP{{IP: podIP}}
	}
	initialized := true
	for _, c := range w.init {
		s := c.status(c.spec.Image, true)
		if s.State.Terminated == nil {
			initialized = false
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, s)
	}
	ready, running := initialized, 0
	for _, c := range w.main {
		s := c.status(c.spec.Image, false)
		if s.State.Running != nil {
			running++
		}
		ready = ready && s.Ready
		st.ContainerStatuses = append(st.ContainerStatuses, s)
	}
	if running > 0 || (initialized && len(st.ContainerStatuses) > 0 && anyRestarted(st.ContainerStatuses)) {
		st.Phase = corev1.PodRunning
	}
	cond := func(t corev1.PodConditionType, ok bool, reason string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason}
		if ok {
			c.Status, c.Reason = corev1.ConditionTrue, ""
		}
		c.LastTransitionTime = w.transition(t, c.Status)
		if !ok && problem != "" {
			c.Message = problem
		}
		return c
	}
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, podIP != "", "NetworkNotReady"),
		cond(corev1.PodInitialized, initialized, "ContainersNotInitialized"),
		cond(corev1.ContainersReady, ready, "ContainersNotReady"),
		cond(corev1.PodReady, ready, "ContainersNotReady"),
		cond(corev1.PodScheduled, true, ""),
		cond(ConditionLabKubelet, true, ""),
	}
	return st
}

func anyRestarted(ss []corev1.ContainerStatus) bool {
	for _, s := range ss {
		if s.RestartCount > 0 {
			return true
		}
	}
	return false
}

// transition returns when a condition last took its status.
func (w *worker) transition(t corev1.PodConditionType, s corev1.ConditionStatus) metav1.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conditions == nil {
		w.conditions = map[corev1.PodConditionType]condition{}
	}
	c, ok := w.conditions[t]
	if !ok || c.status != s {
		c = condition{status: s, at: metav1.Now()}
		w.conditions[t] = c
	}
	return c.at
}

type condition struct {
	status corev1.ConditionStatus
	at     metav1.Time
}

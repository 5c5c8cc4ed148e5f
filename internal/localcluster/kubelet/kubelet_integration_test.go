package kubelet_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
	"github.com/hitless-dev/hitless/internal/localcluster/kubelet"
)

// One worker and the control-plane node: every lab test here runs real
// processes in their namespaces, and each node costs a daemon per
// DaemonSet.
var env = clustertest.New(clustertest.Options{Workers: 2, Lab: localcluster.LabCNI})

func TestMain(m *testing.M) {
	if os.Getenv(clustertest.EnvRunCLI) == "1" {
		os.Exit(app.Main())
	}
	os.Exit(env.Run(m))
}

// labPod is a host-network pod of hitless's image, which the lab kubelet
// runs (the command is the machine's /bin/sh).
func labPod(ns, name, node, script string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			NodeName:    node,
			HostNetwork: true,
			Containers: []corev1.Container{{Name: "c", Image: localcluster.ProbeImage + ":test",
				Command: []string{"/bin/sh", "-c", script}}},
		},
	}
}

// waitPod polls a pod until cond holds.
func waitPod(t *testing.T, ns, name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	const timeout = 30 * time.Second
	t.Helper()
	cs := env.Client(t)
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // not there yet
		}
		last = p
		return cond(p), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s: %s: %v; last status %+v", ns, name, what, err, last.Status)
	}
	return last
}

// pid is the process of a lab kubelet's running container.
func pid(t *testing.T, p *corev1.Pod) int {
	t.Helper()
	for _, s := range p.Status.ContainerStatuses {
		if n, err := strconv.Atoi(strings.TrimPrefix(s.ContainerID, "lab://")); err == nil && s.State.Running != nil {
			return n
		}
	}
	t.Fatalf("pod %s has no running lab container: %+v", p.Name, p.Status.ContainerStatuses)
	return 0
}

// ignores reports whether process pid ignores sig (its SigIgn mask).
func ignores(pid int, sig syscall.Signal) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if mask, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			v, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			return err == nil && v&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

func running(pid int) bool {
	_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
	return err == nil
}

// A kubelet's promises, kept by the lab kubelet: the grace period of a
// deletion (SIGTERM, then SIGKILL after it), a prompt end for a process
// that stops on SIGTERM, readiness from the pod's probe, restarts with
// back-off, and the pod's object removed once its processes are gone.
func TestKubeletHonoursPods(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local cluster (skipped under -short)")
	}
	cs := env.Client(t)
	ns := env.Namespace(t)
	node := env.NodeNames(t)[0]
	ctx := context.Background()

	t.Run("a process that ignores SIGTERM is killed after the grace period", func(t *testing.T) {
		p := labPod(ns, "stubborn", node, `trap "" TERM; while true; do sleep 0.1; done`)
		p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](3)
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p = waitPod(t, ns, p.Name, "running", clustertest.PodReady)
		proc := pid(t, p)
		// The pod is Ready once its process starts; on a busy machine
		// the shell may not have run its trap yet.
		if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
			return ignores(proc, syscall.SIGTERM), nil
		}); err != nil {
			t.Fatalf("process %d never ignored SIGTERM: %v", proc, err)
		}
		start := time.Now()
		if err := cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		gone := waitGone(t, ns, p.Name, 20*time.Second)
		took := gone.Sub(start)
		if took < 3*time.Second || took > 8*time.Second {
			t.Fatalf("the pod was gone %s after its deletion; want its 3 s grace period (and little more)", took.Round(10*time.Millisecond))
		}
		if running(proc) {
			t.Fatalf("process %d still runs after its pod was removed", proc)
		}
		t.Logf("removed %s after the deletion (grace 3 s)", took.Round(10*time.Millisecond))
	})

	t.Run("a process that stops on SIGTERM ends the pod at once", func(t *testing.T) {
		p := labPod(ns, "polite", node, `exec sleep 100000`)
		p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p = waitPod(t, ns, p.Name, "running", clustertest.PodReady)
		proc := pid(t, p)
		start := time.Now()
		if err := cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if took := waitGone(t, ns, p.Name, 20*time.Second).Sub(start); took > 3*time.Second {
			t.Fatalf("the pod was gone %s after its deletion; SIGTERM ends it, the 30 s grace period should not be waited out", took)
		}
		if running(proc) {
			t.Fatalf("process %d still runs", proc)
		}
	})

	t.Run("readiness follows the readiness probe", func(t *testing.T) {
		// Listens only after 3 s: Running but not Ready until then.
		p := labPod(ns, "slow", node, `sleep 3; exec python3 -m http.server 18081`)
		p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{PeriodSeconds: 1, FailureThreshold: 1,
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(18081)}}}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		p = waitPod(t, ns, p.Name, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
		if clustertest.PodReady(p) {
			t.Fatal("Ready before its probe can pass")
		}
		waitPod(t, ns, p.Name, "ready", clustertest.PodReady)
		if took := time.Since(start); took < 2500*time.Millisecond {
			t.Fatalf("Ready %s after creation; its server listens after 3 s", took)
		}
		if err := cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGone(t, ns, p.Name, 40*time.Second)
	})

	t.Run("a failing container is restarted with back-off", func(t *testing.T) {
		p := labPod(ns, "failing", node, `exit 3`)
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p = waitPod(t, ns, p.Name, "restarted twice", func(p *corev1.Pod) bool {
			return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 2
		})
		s := p.Status.ContainerStatuses[0]
		if s.LastTerminationState.Terminated == nil || s.LastTerminationState.Terminated.ExitCode != 3 || clustertest.PodReady(p) {
			t.Fatalf("status %+v: want the last run's exit code 3 and not Ready", s)
		}
		if err := cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGone(t, ns, p.Name, 20*time.Second)
	})

	t.Run("pods of other images stay KWOK's", func(t *testing.T) {
		p := labPod(ns, "kwok", node, "true")
		p.Spec.Containers[0].Image = "registry.example.com/app:v1"
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p = waitPod(t, ns, p.Name, "ready (KWOK)", clustertest.PodReady)
		for _, c := range p.Status.Conditions {
			if c.Type == kubelet.ConditionLabKubelet {
				t.Fatalf("the lab kubelet took a pod of an image it does not know: %+v", p.Status)
			}
		}
		// A bare pod left behind would block the later tests' drains.
		if err := cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGone(t, ns, p.Name, 40*time.Second)
	})
}

// waitGone waits until the pod's object is gone and returns when it saw
// it gone.
func waitGone(t *testing.T, ns, name string, timeout time.Duration) time.Time {
	t.Helper()
	cs := env.Client(t)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		_, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("pod %s/%s still there after %s", ns, name, timeout)
	return time.Time{}
}

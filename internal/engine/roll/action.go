package roll

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubectl/pkg/util/podutils"

	knode "github.com/hitless-dev/hitless/internal/kube/node"
	"github.com/hitless-dev/hitless/internal/kube/transient"
)

// Machine-config annotations of OpenShift's machine-config daemon.
const (
	annotationMCState   = "machineconfiguration.openshift.io/state"
	annotationMCCurrent = "machineconfiguration.openshift.io/currentConfig"
	annotationMCDesired = "machineconfiguration.openshift.io/desiredConfig"
)

// hookEnv is the environment of a node's commands.
type hookEnv struct {
	Node, NodeIP, Operation string
	Batch                   int
}

func (e hookEnv) vars() []string {
	return append(os.Environ(),
		"HITLESS_NODE="+e.Node,
		"HITLESS_NODE_IP="+e.NodeIP,
		"HITLESS_BATCH="+strconv.Itoa(e.Batch),
		"HITLESS_OPERATION="+e.Operation,
	)
}

// runCommand runs a shell command for a node and records its outcome; the
// record keeps the last 2 KiB of its output.
func runCommand(ctx context.Context, name, command string, env hookEnv, timeout time.Duration) (HookRecord, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(cctx, "/bin/sh", "-c", command)
	cmd.Env = env.vars()
	// The command runs in a process group of its own; cancelling kills the
	// whole group, so a child it started cannot hold the roll up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	rec := HookRecord{Name: name, Command: command, Output: tail(out.String(), 2048), Took: time.Since(start).Round(time.Millisecond).String()}
	if err != nil {
		rec.ExitCode = -1
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			rec.ExitCode = exitErr.ExitCode()
		}
		return rec, fmt.Errorf("%s command on node %s failed (exit %d): %w", name, env.Node, rec.ExitCode, err)
	}
	return rec, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// restartDaemonSetPods deletes the pods of namespace/name on node and waits
// until a replacement of each is Ready there: how an OnDelete data plane
// is updated node by node.
func restartDaemonSetPods(ctx context.Context, cs kubernetes.Interface, node, ref string) (int, error) {
	ns, name, _ := strings.Cut(ref, "/")
	ds, err := cs.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return 0, fmt.Errorf("reading DaemonSet %s: %w", ref, err)
	}
	podsOn := func() ([]corev1.Pod, error) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
		if err != nil {
			return nil, fmt.Errorf("listing pods of DaemonSet %s on node %s: %w", ref, node, err)
		}
		var out []corev1.Pod
		for _, p := range list.Items {
			if c := metav1.GetControllerOf(&p); c != nil && c.UID == ds.UID {
				out = append(out, p)
			}
		}
		return out, nil
	}
	old, err := podsOn()
	if err != nil {
		return 0, err
	}
	gone := map[types.UID]bool{}
	for _, p := range old {
		gone[p.UID] = true
		err := cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return 0, fmt.Errorf("deleting pod %s/%s of DaemonSet %s: %w", ns, p.Name, ref, err)
		}
	}
	err = transient.Poll(ctx, time.Second, func() (bool, error) {
		pods, err := podsOn()
		if err != nil {
			return false, err
		}
		for _, p := range pods {
			if !gone[p.UID] && p.DeletionTimestamp == nil && podutils.IsPodReady(&p) {
				for _, q := range pods {
					if gone[q.UID] {
						return false, nil // an old pod still terminating
					}
				}
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return len(old), fmt.Errorf("waiting for a new pod of DaemonSet %s Ready on node %s: %w", ref, node, err)
	}
	return len(old), nil
}

// setNodeLabels merges labels into the node.
func setNodeLabels(ctx context.Context, cs kubernetes.Interface, node string, labels map[string]string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	if err != nil {
		return fmt.Errorf("encoding labels: %w", err)
	}
	if _, err := cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("labelling node %s: %w", node, err)
	}
	return nil
}

// waitNodeAnnotations waits until the node carries every wanted annotation;
// for the machine-config state it also waits for currentConfig to equal
// desiredConfig, as OpenShift's machine-config daemon reports an update
// done.
func waitNodeAnnotations(ctx context.Context, cs kubernetes.Interface, node string, want map[string]string) error {
	return transient.Poll(ctx, time.Second, func() (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("reading node %s: %w", node, err)
		}
		for k, v := range want {
			if n.Annotations[k] != v {
				return false, nil
			}
		}
		if _, mc := want[annotationMCState]; mc && n.Annotations[annotationMCCurrent] != n.Annotations[annotationMCDesired] {
			return false, nil
		}
		return true, nil
	})
}

// nodeGetter reads nodes, from a cache.
type nodeGetter interface {
	Get(name string) (*corev1.Node, error)
}

// waitNodeHealthy waits for the node to be Ready and every DaemonSet pod on
// it Ready. known, when not nil, is the node's pods as listed a moment ago
// with nothing run on the node since (the drain's list): the first look
// takes them instead of listing again.
func waitNodeHealthy(ctx context.Context, cs kubernetes.Interface, nodes nodeGetter, node string, known []corev1.Pod) error {
	var why string
	err := transient.Poll(ctx, 500*time.Millisecond, func() (bool, error) {
		n, err := nodes.Get(node)
		if err != nil {
			return false, fmt.Errorf("reading node %s: %w", node, err)
		}
		if !knode.Ready(n) {
			why = "node not Ready"
			return false, nil
		}
		pods := known
		known = nil
		if pods == nil {
			list, err := cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
			if err != nil {
				return false, fmt.Errorf("listing pods on node %s: %w", node, err)
			}
			pods = list.Items
		}
		for _, p := range pods {
			if c := metav1.GetControllerOf(&p); c != nil && c.Kind == "DaemonSet" && p.DeletionTimestamp == nil && !podutils.IsPodReady(&p) {
				why = "DaemonSet pod " + p.Namespace + "/" + p.Name + " not Ready"
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil && why != "" {
		return fmt.Errorf("waiting for node %s: %s: %w", node, why, err)
	}
	return err
}

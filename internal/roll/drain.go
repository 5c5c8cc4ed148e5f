package roll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubectl/pkg/drain"
)

// DrainRefusedError is a drain that kubectl's filters refuse to start:
// unmanaged pods without --force, emptyDir data without
// --delete-emptydir-data.
type DrainRefusedError struct {
	Node    string
	Reasons []string
}

func (e *DrainRefusedError) Error() string {
	return fmt.Sprintf("drain of node %s refused: %s", e.Node, strings.Join(e.Reasons, "; "))
}

// DrainTimeoutError is a drain that did not finish in time.
type DrainTimeoutError struct {
	Node     string
	Timeout  time.Duration
	Pods     []string // still on the node
	Blocking []string // PDBs that refused evictions, with their messages
}

func (e *DrainTimeoutError) Error() string {
	msg := fmt.Sprintf("drain of node %s did not finish in %s: %d pods remain (%s)", e.Node, e.Timeout, len(e.Pods), strings.Join(e.Pods, ", "))
	if len(e.Blocking) > 0 {
		msg += "; blocked by " + strings.Join(e.Blocking, "; ")
	}
	return msg
}

// drainResult is what a drain did.
type drainResult struct {
	Evicted []string
	Deleted []string // unmanaged pods removed under --force
}

// drainNode evicts the node's pods through the Eviction API, as kubectl
// drain does (its filters pick the pods: DaemonSet pods stay), retrying
// refusals after retryDelay, and waits for the pods to be gone with one
// watch instead of polling each pod.
func drainNode(ctx context.Context, cs kubernetes.Interface, node string, spec Spec) (drainResult, error) {
	var res drainResult
	helper := &drain.Helper{
		Ctx:                  ctx,
		Client:               cs,
		Force:                spec.Force,
		GracePeriodSeconds:   -1,
		IgnoreAllDaemonSets:  true,
		DeleteEmptyDirData:   spec.DeleteEmptyDirData,
		Timeout:              spec.DrainTimeout,
		EvictErrorRetryDelay: spec.EvictRetryDelay,
		Out:                  io.Discard,
		ErrOut:               io.Discard,
	}
	list, errs := helper.GetPodsForDeletion(node)
	if len(errs) > 0 {
		reasons := make([]string, 0, len(errs))
		for _, e := range errs {
			reasons = append(reasons, e.Error())
		}
		return res, &DrainRefusedError{Node: node, Reasons: reasons}
	}
	pods := list.Pods()
	if len(pods) == 0 {
		return res, nil
	}
	deadline := time.Now().Add(spec.DrainTimeout)
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	// List then watch from the list's version, so no deletion is missed
	// and pods already gone are not waited for.
	sel := metav1.ListOptions{FieldSelector: "spec.nodeName=" + node}
	current, err := cs.CoreV1().Pods(metav1.NamespaceAll).List(dctx, sel)
	if err != nil {
		return res, fmt.Errorf("listing pods on node %s: %w", node, err)
	}
	present := map[types.UID]bool{}
	for _, p := range current.Items {
		present[p.UID] = true
	}
	sel.ResourceVersion = current.ResourceVersion
	w, err := cs.CoreV1().Pods(metav1.NamespaceAll).Watch(dctx, sel)
	if err != nil {
		return res, fmt.Errorf("watching pods on node %s: %w", node, err)
	}
	defer w.Stop()

	remaining := map[types.UID]string{}
	for _, p := range pods {
		if present[p.UID] {
			remaining[p.UID] = p.Namespace + "/" + p.Name
		}
		if metav1.GetControllerOf(&p) == nil {
			res.Deleted = append(res.Deleted, p.Namespace+"/"+p.Name)
		} else {
			res.Evicted = append(res.Evicted, p.Namespace+"/"+p.Name)
		}
	}
	var (
		mu       sync.Mutex
		blocking = map[string]string{}
		evictErr error
		wg       sync.WaitGroup
	)
	for _, p := range pods {
		wg.Go(func() {
			for {
				err := helper.EvictPod(p, policyv1.SchemeGroupVersion)
				switch {
				case err == nil || apierrors.IsNotFound(err):
					return
				case apierrors.IsTooManyRequests(err):
					mu.Lock()
					blocking[p.Namespace+"/"+p.Name] = pdbMessage(err)
					mu.Unlock()
				default:
					mu.Lock()
					evictErr = fmt.Errorf("evicting pod %s/%s: %w", p.Namespace, p.Name, err)
					mu.Unlock()
					return
				}
				select {
				case <-dctx.Done():
					return
				case <-time.After(spec.EvictRetryDelay):
				}
			}
		})
	}
	waitErr := waitGone(dctx, w, remaining)
	cancel()
	wg.Wait()
	if evictErr != nil {
		return res, evictErr
	}
	if waitErr != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		left := make([]string, 0, len(remaining))
		for _, name := range remaining {
			left = append(left, name)
		}
		slices.Sort(left)
		var blocks []string
		seen := map[string]bool{}
		for _, pod := range left {
			if m, ok := blocking[pod]; ok && !seen[m] {
				seen[m] = true
				blocks = append(blocks, m+" (pod "+pod+")")
			}
		}
		return res, &DrainTimeoutError{Node: node, Timeout: spec.DrainTimeout, Pods: left, Blocking: blocks}
	}
	return res, nil
}

// waitGone consumes watch events until every UID in remaining is deleted
// or replaced, deleting entries as they go.
func waitGone(ctx context.Context, w watch.Interface, remaining map[types.UID]string) error {
	for len(remaining) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return errors.New("pod watch closed")
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod {
				continue
			}
			if ev.Type == watch.Deleted {
				delete(remaining, p.UID)
			}
		}
	}
	return nil
}

// pdbMessage extracts which PodDisruptionBudget refused an eviction.
func pdbMessage(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		if d := status.Status().Details; d != nil {
			for _, c := range d.Causes {
				if c.Type == policyv1.DisruptionBudgetCause {
					return c.Message
				}
			}
		}
	}
	return err.Error()
}

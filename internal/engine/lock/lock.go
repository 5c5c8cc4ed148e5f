package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/kube/store"
)

// Namespace holds the lock, beside the records.
const Namespace = store.Namespace

// LeaseName is the name of the cluster lock.
const LeaseName = "hitless-operation-lock"

// Annotations on the Lease describing the holder.
const (
	annotationHost    = "hitless.dev/host"
	annotationPID     = "hitless.dev/pid"
	annotationPod     = "hitless.dev/pod"
	annotationPodUID  = "hitless.dev/pod-uid"
	annotationNode    = "hitless.dev/node"
	annotationCommand = "hitless.dev/command"
	annotationStarted = "hitless.dev/started"
)

// Environment a process in a pod is given through the downward API; the
// controller's manifest sets them. Outside a pod they are unset.
const (
	EnvPodName      = "POD_NAME"
	EnvPodNamespace = "POD_NAMESPACE"
	EnvPodUID       = "POD_UID"
	EnvNodeName     = "NODE_NAME"
)

// Duration is how long a lease lasts without renewal.
const Duration = 30 * time.Second

// Holder describes who holds the lock: the operation and the process
// running it, on a host, or in a pod (namespace/name and UID) on a node.
type Holder struct {
	Operation string `json:"operation"`
	Command   string `json:"command"`
	Host      string `json:"host"`
	PID       int    `json:"pid"`
	// Pod is namespace/name of the pod running the process, PodUID its
	// UID, and Node the node it runs on, when it runs in a pod.
	Pod     string    `json:"pod,omitempty"`
	PodUID  string    `json:"podUID,omitempty"`
	Node    string    `json:"node,omitempty"`
	Started time.Time `json:"started"`
	Renewed time.Time `json:"renewed"`
	// Expires is when the lease lapses unless renewed.
	Expires time.Time `json:"expires"`
}

// String names the holder for a person.
func (h Holder) String() string {
	where := fmt.Sprintf("host %s, pid %d", h.Host, h.PID)
	if h.Pod != "" {
		where = fmt.Sprintf("pod %s on node %s, pid %d", h.Pod, h.Node, h.PID)
	}
	return fmt.Sprintf("operation %s (%s) in %s", h.Operation, h.Command, where)
}

// sameProcess reports whether h and o name one process.
func (h Holder) sameProcess(o Holder) bool {
	return h.Operation == o.Operation && h.Host == o.Host && h.PID == o.PID && h.PodUID == o.PodUID
}

// HeldError is returned when another operation holds the lock.
type HeldError struct{ Holder Holder }

func (e *HeldError) Error() string {
	h := e.Holder
	return fmt.Sprintf("another hitless operation holds the cluster lock: %s, started %s, last renewed %s; the lease lapses at %s unless renewed",
		h, h.Started.Format(time.RFC3339), h.Renewed.Format(time.RFC3339), h.Expires.Format(time.RFC3339))
}

// ErrReleased means the lease was deleted under a running operation: the
// operation must stop.
var ErrReleased = errors.New("the cluster lock was released by someone else")

// Self describes the calling process as a holder of operation op: its
// host and pid, and inside a pod the pod and node the downward API names.
func Self(op, command string) Holder {
	host, _ := os.Hostname()
	h := Holder{Operation: op, Command: command, Host: host, PID: os.Getpid(), Started: time.Now().UTC(),
		PodUID: os.Getenv(EnvPodUID), Node: os.Getenv(EnvNodeName)}
	if name := os.Getenv(EnvPodName); name != "" {
		h.Pod = os.Getenv(EnvPodNamespace) + "/" + name
	}
	return h
}

// Lock is a held cluster lock, renewed in the background until Release.
type Lock struct {
	client kubernetes.Interface
	holder Holder
	cancel context.CancelFunc
	done   chan struct{}
	lease  *coordinationv1.Lease // as last written by us; touched only by renew

	mu   sync.Mutex
	lost error
}

// Acquire takes the cluster lock for holder. The lock can be taken when it
// is free, its lease lapsed, already ours (same operation and process), or
// held by a holder proven gone: its pod deleted or replaced, its node
// deleted, or a process on this host that no longer runs, when the
// operation is the same one (re-running a killed command resumes at once)
// or was never journaled (killed before it did anything). Otherwise it
// returns a *HeldError naming the holder and when its lease lapses.
func Acquire(ctx context.Context, cs kubernetes.Interface, holder Holder) (*Lock, error) {
	if err := store.New(cs).EnsureNamespace(ctx); err != nil {
		return nil, err
	}
	leases := cs.CoordinationV1().Leases(Namespace)
	var written *coordinationv1.Lease
	for attempt := 0; ; attempt++ {
		now := metav1.NewMicroTime(time.Now())
		existing, err := leases.Get(ctx, LeaseName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: Namespace}}
			fill(lease, holder, now)
			if written, err = leases.Create(ctx, lease, metav1.CreateOptions{}); err != nil {
				if apierrors.IsAlreadyExists(err) && attempt < 5 {
					continue
				}
				return nil, fmt.Errorf("creating lease %s/%s: %w", Namespace, LeaseName, err)
			}
		case err != nil:
			return nil, fmt.Errorf("reading lease %s/%s: %w", Namespace, LeaseName, err)
		default:
			current := holderOf(existing)
			ok, why, err := takeable(ctx, cs, existing, current, holder, time.Now())
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, &HeldError{Holder: current}
			}
			if current.Operation != "" && !current.sameProcess(holder) {
				klog.FromContext(ctx).V(1).Info("taking over the cluster lock", "previous", current.String(), "why", why)
			}
			fill(existing, holder, now)
			if written, err = leases.Update(ctx, existing, metav1.UpdateOptions{}); err != nil {
				if apierrors.IsConflict(err) && attempt < 5 {
					continue
				}
				return nil, fmt.Errorf("taking lease %s/%s: %w", Namespace, LeaseName, err)
			}
		}
		break
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l := &Lock{client: cs, holder: holder, cancel: cancel, done: make(chan struct{}), lease: written}
	go l.renew(rctx)
	return l, nil
}

// Lost returns why renewal failed, if it did: the operation must stop.
func (l *Lock) Lost() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

func (l *Lock) renew(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(Duration / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := l.renewOnce(ctx)
		if err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "renewing the cluster lock")
			var held *HeldError
			if errors.As(err, &held) || errors.Is(err, ErrReleased) {
				l.mu.Lock()
				l.lost = err
				l.mu.Unlock()
				return
			}
		}
	}
}

// renewOnce updates the lease it last wrote (one request); only when
// someone else wrote it since does it read it to see who.
func (l *Lock) renewOnce(ctx context.Context) error {
	leases := l.client.CoordinationV1().Leases(Namespace)
	lease := l.lease
	if lease == nil {
		var err error
		if lease, err = leases.Get(ctx, LeaseName, metav1.GetOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return ErrReleased
			}
			return fmt.Errorf("reading lease: %w", err)
		}
		if cur := holderOf(lease); !cur.sameProcess(l.holder) {
			return &HeldError{Holder: cur}
		}
	}
	lease = lease.DeepCopy()
	lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now()))
	out, err := leases.Update(ctx, lease, metav1.UpdateOptions{})
	if err != nil {
		l.lease = nil // read it next time
		return fmt.Errorf("renewing lease: %w", err)
	}
	l.lease = out
	return nil
}

// Release stops renewal and frees the lock if this process still holds it.
func (l *Lock) Release(ctx context.Context) error {
	l.cancel()
	<-l.done
	leases := l.client.CoordinationV1().Leases(Namespace)
	lease, err := leases.Get(ctx, LeaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading lease to release it: %w", err)
	}
	if cur := holderOf(lease); !cur.sameProcess(l.holder) {
		return nil
	}
	err = leases.Delete(ctx, LeaseName, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &lease.ResourceVersion}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("releasing lease: %w", err)
	}
	return nil
}

// Current returns the holder of the lock, or nil when it is free or expired.
func Current(ctx context.Context, cs kubernetes.Interface) (*Holder, error) {
	lease, err := cs.CoordinationV1().Leases(Namespace).Get(ctx, LeaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading lease %s/%s: %w", Namespace, LeaseName, err)
	}
	if expired(lease, time.Now()) {
		return nil, nil
	}
	h := holderOf(lease)
	return &h, nil
}

// takeable says whether want may take the lease current holds, and why.
func takeable(ctx context.Context, cs kubernetes.Interface, lease *coordinationv1.Lease, current, want Holder, now time.Time) (bool, string, error) {
	switch {
	case current.Operation == "":
		return true, "free", nil
	case expired(lease, now):
		return true, "the lease lapsed", nil
	case current.sameProcess(want):
		return true, "ours", nil
	}
	if gone, why, err := holderGone(ctx, cs, current); err != nil || gone {
		return gone, why, err
	}
	if current.Pod != "" || current.Host != want.Host || processRuns(current.PID) {
		return false, "", nil
	}
	if current.Operation == want.Operation {
		return true, fmt.Sprintf("process %d on this host no longer runs", current.PID), nil
	}
	// Every engine takes the lock before it creates its journal, and
	// journals before it acts: a dead holder whose operation has no
	// journal died in between and did nothing that could interleave.
	_, err := journal.NewStore(cs).Get(ctx, current.Operation)
	switch {
	case errors.Is(err, journal.ErrNotFound):
		return true, fmt.Sprintf("process %d on this host no longer runs and operation %s was never journaled", current.PID, current.Operation), nil
	case err != nil:
		return false, "", fmt.Errorf("reading the journal of lock holder %s: %w", current.Operation, err)
	}
	return false, "", nil
}

// holderGone proves a holder dead from the cluster: its pod no longer
// exists, is another pod of the same name, or has finished; or its node
// was deleted (kured's lock outlived the node that held it).
func holderGone(ctx context.Context, cs kubernetes.Interface, h Holder) (bool, string, error) {
	if ns, name, ok := strings.Cut(h.Pod, "/"); ok {
		pod, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return true, "its pod " + h.Pod + " no longer exists", nil
		case apierrors.IsForbidden(err):
			// Not allowed to look: only the lease's expiry tells.
		case err != nil:
			return false, "", fmt.Errorf("reading pod %s of the lock holder: %w", h.Pod, err)
		case h.PodUID != "" && string(pod.UID) != h.PodUID:
			return true, "its pod " + h.Pod + " was replaced", nil
		case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
			return true, "its pod " + h.Pod + " has " + string(pod.Status.Phase), nil
		}
	}
	if h.Node != "" {
		_, err := cs.CoreV1().Nodes().Get(ctx, h.Node, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return true, "its node " + h.Node + " no longer exists", nil
		case err != nil && !apierrors.IsForbidden(err):
			return false, "", fmt.Errorf("reading node %s of the lock holder: %w", h.Node, err)
		}
	}
	return false, "", nil
}

func expired(lease *coordinationv1.Lease, now time.Time) bool {
	if lease.Spec.RenewTime == nil || lease.Spec.LeaseDurationSeconds == nil {
		return true
	}
	return lease.Spec.RenewTime.Add(time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second).Before(now)
}

func processRuns(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func fill(lease *coordinationv1.Lease, h Holder, now metav1.MicroTime) {
	lease.Spec.HolderIdentity = ptr.To(h.Operation)
	lease.Spec.LeaseDurationSeconds = ptr.To(int32(Duration / time.Second))
	lease.Spec.AcquireTime = &now
	lease.Spec.RenewTime = &now
	if lease.Annotations == nil {
		lease.Annotations = map[string]string{}
	}
	lease.Annotations[annotationHost] = h.Host
	lease.Annotations[annotationPID] = strconv.Itoa(h.PID)
	setOrDrop(lease.Annotations, annotationPod, h.Pod)
	setOrDrop(lease.Annotations, annotationPodUID, h.PodUID)
	setOrDrop(lease.Annotations, annotationNode, h.Node)
	lease.Annotations[annotationCommand] = h.Command
	lease.Annotations[annotationStarted] = h.Started.UTC().Format(time.RFC3339)
}

func holderOf(lease *coordinationv1.Lease) Holder {
	h := Holder{Operation: ptr.Deref(lease.Spec.HolderIdentity, "")}
	h.Host = lease.Annotations[annotationHost]
	h.PID, _ = strconv.Atoi(lease.Annotations[annotationPID])
	h.Pod = lease.Annotations[annotationPod]
	h.PodUID = lease.Annotations[annotationPodUID]
	h.Node = lease.Annotations[annotationNode]
	h.Command = lease.Annotations[annotationCommand]
	h.Started, _ = time.Parse(time.RFC3339, lease.Annotations[annotationStarted])
	if lease.Spec.RenewTime != nil {
		h.Renewed = lease.Spec.RenewTime.UTC()
		h.Expires = h.Renewed.Add(time.Duration(ptr.Deref(lease.Spec.LeaseDurationSeconds, 0)) * time.Second)
	}
	return h
}

func setOrDrop(m map[string]string, k, v string) {
	if v == "" {
		delete(m, k)
		return
	}
	m[k] = v
}

// Close releases the lock at the end of an operation, even when ctx has
// ended, within 30 s; a failure is logged (the lease lapses on its own).
func (l *Lock) Close(ctx context.Context) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := l.Release(rctx); err != nil {
		klog.FromContext(ctx).Error(err, "releasing the cluster lock")
	}
}

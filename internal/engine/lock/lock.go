package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
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
)

// Namespace holds hitless's lock and journal.
const Namespace = "hitless-system"

// LeaseName is the name of the cluster lock.
const LeaseName = "hitless-operation-lock"

// Annotations on the Lease describing the holder.
const (
	annotationHost    = "hitless.dev/host"
	annotationPID     = "hitless.dev/pid"
	annotationCommand = "hitless.dev/command"
	annotationStarted = "hitless.dev/started"
)

// Duration is how long a lease lasts without renewal.
const Duration = 30 * time.Second

// Holder describes who holds the lock.
type Holder struct {
	Operation string    `json:"operation"`
	Command   string    `json:"command"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Started   time.Time `json:"started"`
	Renewed   time.Time `json:"renewed"`
}

// HeldError is returned when another operation holds the lock.
type HeldError struct{ Holder Holder }

func (e *HeldError) Error() string {
	h := e.Holder
	return fmt.Sprintf("another hitless operation holds the cluster lock: operation %s (%s) on host %s, pid %d, started %s, last renewed %s",
		h.Operation, h.Command, h.Host, h.PID, h.Started.Format(time.RFC3339), h.Renewed.Format(time.RFC3339))
}

// ErrReleased means the lease was deleted under a running operation: the
// operation must stop.
var ErrReleased = errors.New("the cluster lock was released by someone else")

// Self describes the calling process as a holder of operation op.
func Self(op, command string) Holder {
	host, _ := os.Hostname()
	return Holder{Operation: op, Command: command, Host: host, PID: os.Getpid(), Started: time.Now().UTC()}
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
// is free, expired, already ours (same operation, host and process), or
// held for the same operation by a process on this host that no longer
// runs, so re-running a killed command resumes at once. Otherwise it
// returns a *HeldError.
func Acquire(ctx context.Context, cs kubernetes.Interface, holder Holder) (*Lock, error) {
	if err := EnsureNamespace(ctx, cs); err != nil {
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
			if !takeable(existing, current, holder, time.Now()) {
				return nil, &HeldError{Holder: current}
			}
			if current.Operation != "" && current.PID != holder.PID {
				klog.FromContext(ctx).V(1).Info("taking over the cluster lock", "previous", current.Operation, "previousPID", current.PID)
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
		if cur := holderOf(lease); cur.Operation != l.holder.Operation || cur.PID != l.holder.PID || cur.Host != l.holder.Host {
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
	if cur := holderOf(lease); cur.Operation != l.holder.Operation || cur.PID != l.holder.PID {
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

func takeable(lease *coordinationv1.Lease, current, want Holder, now time.Time) bool {
	switch {
	case current.Operation == "" || expired(lease, now):
		return true
	case current.Operation == want.Operation && current.Host == want.Host && current.PID == want.PID:
		return true
	case current.Operation == want.Operation && current.Host == want.Host && !processRuns(current.PID):
		return true
	}
	return false
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
	lease.Annotations[annotationCommand] = h.Command
	lease.Annotations[annotationStarted] = h.Started.UTC().Format(time.RFC3339)
}

func holderOf(lease *coordinationv1.Lease) Holder {
	h := Holder{Operation: ptr.Deref(lease.Spec.HolderIdentity, "")}
	h.Host = lease.Annotations[annotationHost]
	h.PID, _ = strconv.Atoi(lease.Annotations[annotationPID])
	h.Command = lease.Annotations[annotationCommand]
	h.Started, _ = time.Parse(time.RFC3339, lease.Annotations[annotationStarted])
	if lease.Spec.RenewTime != nil {
		h.Renewed = lease.Spec.RenewTime.UTC()
	}
	return h
}

// EnsureNamespace creates the hitless-system namespace if it is missing.
func EnsureNamespace(ctx context.Context, cs kubernetes.Interface) error {
	_, err := cs.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading namespace %s: %w", Namespace, err)
	}
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   Namespace,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "hitless"},
	}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", Namespace, err)
	}
	return nil
}

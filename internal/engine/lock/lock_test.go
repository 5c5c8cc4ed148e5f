package lock_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

var env = clustertest.New(clustertest.Options{Workers: 1})

func TestMain(m *testing.M) { os.Exit(env.Run(m)) }

func TestLock(t *testing.T) {
	cs := env.Client(t)
	ctx := context.Background()
	first, err := lock.Acquire(ctx, cs, lock.Self("op-a", "hitless roll --nodes a"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a second operation is refused, naming the holder", func(t *testing.T) {
		_, err := lock.Acquire(ctx, cs, lock.Self("op-b", "hitless roll --nodes b"))
		var held *lock.HeldError
		if !errors.As(err, &held) {
			t.Fatalf("second Acquire = %v, want *HeldError", err)
		}
		h := held.Holder
		if h.Operation != "op-a" || h.Command != "hitless roll --nodes a" || h.PID != os.Getpid() || h.Host == "" || h.Started.IsZero() {
			t.Errorf("holder = %+v", h)
		}
	})

	t.Run("the same operation of a dead process on this host takes over at once", func(t *testing.T) {
		dead := lock.Self("op-a", "hitless roll --nodes a")
		dead.PID = 1 << 22 // above pid_max: no such process
		if err := first.Release(ctx); err != nil {
			t.Fatal(err)
		}
		l, err := lock.Acquire(ctx, cs, dead)
		if err != nil {
			t.Fatal(err)
		}
		_ = l // its renewals keep the dead holder's identity
		again, err := lock.Acquire(ctx, cs, lock.Self("op-a", "hitless roll --nodes a"))
		if err != nil {
			t.Fatalf("re-run of the same operation after its process died: %v", err)
		}
		if err := again.Release(ctx); err != nil {
			t.Fatal(err)
		}
		l.Release(ctx) //nolint:errcheck // already taken over
	})

	// A run killed between taking the lock and creating its journal did
	// nothing: the next command (a new operation) need not wait for the
	// lease. A dead holder whose operation is journaled keeps the lock
	// from any other operation until its lease lapses.
	t.Run("a dead process whose operation was never journaled is taken over at once", func(t *testing.T) {
		dead := lock.Self("op-never-journaled", "hitless migrate run x")
		dead.PID = 1 << 22
		l, err := lock.Acquire(ctx, cs, dead)
		if err != nil {
			t.Fatal(err)
		}
		next, err := lock.Acquire(ctx, cs, lock.Self("op-next", "hitless migrate run x"))
		if err != nil {
			t.Fatalf("lock of a dead, never journaled operation refused: %v", err)
		}
		if err := next.Release(ctx); err != nil {
			t.Fatal(err)
		}
		l.Release(ctx) //nolint:errcheck // already taken over
	})

	t.Run("a dead process whose operation is journaled keeps the lock from others", func(t *testing.T) {
		id := journal.NewID("roll")
		op := &journal.Raw{Operation: journal.Operation{ID: id, Kind: "roll", Status: journal.Running, Started: time.Now().UTC(), Runs: 1}}
		store := journal.NewStore(cs)
		if err := store.Create(ctx, op); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := cs.CoreV1().ConfigMaps(lock.Namespace).Delete(ctx, "hitless-op-"+id, metav1.DeleteOptions{}); err != nil {
				t.Error(err)
			}
		}()
		dead := lock.Self(id, "hitless roll")
		dead.PID = 1 << 22
		l, err := lock.Acquire(ctx, cs, dead)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release(ctx) //nolint:errcheck // released or taken over
		_, err = lock.Acquire(ctx, cs, lock.Self("op-other", "hitless roll"))
		var held *lock.HeldError
		if !errors.As(err, &held) || held.Holder.Operation != id {
			t.Fatalf("another operation beside a dead, journaled holder: Acquire = %v, want *HeldError naming %s", err, id)
		}
	})

	t.Run("an expired lease is free", func(t *testing.T) {
		l, err := lock.Acquire(ctx, cs, lock.Self("op-c", "c"))
		if err != nil {
			t.Fatal(err)
		}
		// Make it look abandoned two minutes ago.
		lease, err := cs.CoordinationV1().Leases(store.Namespace).Get(ctx, lock.LeaseName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now().Add(-2 * time.Minute)))
		lease.Annotations["hitless.dev/host"] = "elsewhere"
		if _, err := cs.CoordinationV1().Leases(store.Namespace).Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if h, err := lock.Current(ctx, cs); err != nil || h != nil {
			t.Errorf("Current on an expired lease = %+v, %v; want free", h, err)
		}
		other, err := lock.Acquire(ctx, cs, lock.Self("op-d", "d"))
		if err != nil {
			t.Fatalf("taking an expired lease: %v", err)
		}
		if err := other.Release(ctx); err != nil {
			t.Fatal(err)
		}
		l.Release(ctx) //nolint:errcheck // already taken over
		if h, _ := lock.Current(ctx, cs); h != nil {
			t.Errorf("lock held after release: %+v", *h)
		}
	})
}

// A holder inside the cluster (the controller's pod) is proven gone by the
// cluster itself, not by a pid test that means nothing across pods: a
// deleted or replaced pod, or a deleted node, frees the lock at once,
// while a live pod keeps it until its lease lapses.
func TestLockHeldFromAPod(t *testing.T) {
	cs := env.Client(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	node := env.AddNodes(t, 1, map[string]string{"lock-test": "true"})[0]
	pod := env.UnmanagedPod(t, ns, "controller", clustertest.Workload{NodeName: node})
	inPod := func(op string) lock.Holder {
		h := lock.Self(op, "hitless controller")
		h.Host, h.PID = "controller", 1 // a pid that runs in every pod: no proof of anything
		h.Pod, h.PodUID, h.Node = ns+"/controller", string(pod.UID), node
		return h
	}
	tests := []struct {
		name   string
		kill   func(t *testing.T)
		holder lock.Holder
		free   bool
	}{
		{name: "a live pod keeps the lock", kill: func(*testing.T) {}, holder: inPod("op-live")},
		{name: "a pod that was replaced frees it", kill: func(*testing.T) {}, holder: func() lock.Holder {
			h := inPod("op-replaced")
			h.PodUID = "an-earlier-pod"
			return h
		}(), free: true},
		{name: "a deleted pod frees it", kill: func(t *testing.T) {
			if err := cs.CoreV1().Pods(ns).Delete(ctx, "controller", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
				t.Fatal(err)
			}
			clustertest.Eventually(t, 30*time.Second, func() error {
				_, err := cs.CoreV1().Pods(ns).Get(ctx, "controller", metav1.GetOptions{})
				if err == nil {
					return errors.New("pod still there")
				}
				return nil
			})
		}, holder: inPod("op-pod-gone"), free: true},
		{name: "a deleted node frees it", kill: func(t *testing.T) {
			if err := cs.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, holder: func() lock.Holder {
			h := inPod("op-node-gone")
			h.Pod, h.PodUID = "", "" // a holder known by its node only
			h.Host = "gone-node"
			return h
		}(), free: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			held, err := lock.Acquire(ctx, cs, tc.holder)
			if err != nil {
				t.Fatal(err)
			}
			defer held.Release(ctx) //nolint:errcheck // may be taken over
			tc.kill(t)
			other, err := lock.Acquire(ctx, cs, lock.Self("op-next", "hitless roll"))
			var herr *lock.HeldError
			switch {
			case tc.free && err != nil:
				t.Fatalf("the lock of a holder proven gone was refused: %v", err)
			case !tc.free && !errors.As(err, &herr):
				t.Fatalf("Acquire from a live pod's lock = %v, want *HeldError", err)
			case !tc.free:
				msg := herr.Error()
				for _, want := range []string{"pod " + ns + "/controller", "node " + node, "lapses at"} {
					if !strings.Contains(msg, want) {
						t.Errorf("refusal %q does not name %q", msg, want)
					}
				}
				return
			}
			if err := other.Release(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

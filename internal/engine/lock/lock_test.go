package lock_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/engine/lock"
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

	t.Run("an expired lease is free", func(t *testing.T) {
		l, err := lock.Acquire(ctx, cs, lock.Self("op-c", "c"))
		if err != nil {
			t.Fatal(err)
		}
		// Make it look abandoned two minutes ago.
		lease, err := cs.CoordinationV1().Leases(lock.Namespace).Get(ctx, lock.LeaseName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now().Add(-2 * time.Minute)))
		lease.Annotations["hitless.dev/host"] = "elsewhere"
		if _, err := cs.CoordinationV1().Leases(lock.Namespace).Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
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

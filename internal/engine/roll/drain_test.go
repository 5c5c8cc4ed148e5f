package roll

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/kubectl/pkg/drain"
	"k8s.io/utils/ptr"
)

// TestPodsToDrainRetriesTransientDaemonSetReads: kubectl's DaemonSet
// filter reports a failed read of a pod's DaemonSet only as text; a read
// refused because the API server is restarting is retried, while a
// DaemonSet that is really gone (an orphan, without --force) still
// refuses the drain.
func TestPodsToDrainRetriesTransientDaemonSetReads(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		name      string
		failures  int32 // DaemonSet reads refused before the API server is back
		dsExists  bool
		want      []string // pods to evict
		refusal   string   // or a refusal containing this
		transient bool     // or an error that is the API server's, not a refusal
	}{
		{name: "API server up", dsExists: true, want: []string{"web-1"}},
		{name: "API server restarting for two reads", failures: 2, dsExists: true, want: []string{"web-1"}},
		{name: "orphaned DaemonSet pod", dsExists: false, refusal: "not found"},
		{name: "API server gone for good", failures: 1 << 20, dsExists: true, transient: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := []runtime.Object{
				pod("web-1", nil),
				pod("agent-x", &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "agent", UID: "ds", Controller: ptr.To(true)}),
			}
			if tc.dsExists {
				objs = append(objs, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "agent", UID: "ds"}})
			}
			cs := fake.NewClientset(objs...)
			var reads atomic.Int32
			cs.PrependReactor("get", "daemonsets", func(k8stesting.Action) (bool, runtime.Object, error) {
				if reads.Add(1) <= tc.failures {
					return true, nil, refused
				}
				return false, nil, nil
			})
			ctx, cancel := context.WithCancel(context.Background())
			if tc.transient {
				// Retry's backoff runs for about a minute: the context ends it.
				ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
			}
			defer cancel()
			helper := &drain.Helper{Ctx: ctx, Client: cs, GracePeriodSeconds: -1, IgnoreAllDaemonSets: true, Out: io.Discard, ErrOut: io.Discard}
			pods, onNode, err := podsToDrain(ctx, helper, "n1")
			var refusedErr *DrainRefusedError
			switch {
			case tc.refusal != "":
				if !errors.As(err, &refusedErr) || !strings.Contains(err.Error(), tc.refusal) {
					t.Fatalf("err = %v, want a refusal saying %q", err, tc.refusal)
				}
			case tc.transient:
				if err == nil || errors.As(err, &refusedErr) {
					t.Fatalf("err = %v, want the API server's error, not a refusal", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, p := range pods {
					names = append(names, p.Name)
				}
				if strings.Join(names, ",") != strings.Join(tc.want, ",") {
					t.Fatalf("pods to drain %v, want %v", names, tc.want)
				}
				// Every pod listed, the DaemonSet's too: the wait after
				// the drain reads their readiness from this list.
				var listed []string
				for _, p := range onNode {
					listed = append(listed, p.Name)
				}
				slices.Sort(listed)
				if strings.Join(listed, ",") != "agent-x,web-1" {
					t.Fatalf("pods listed on the node %v, want agent-x,web-1", listed)
				}
			}
		})
	}
}

func pod(name string, owner *metav1.OwnerReference) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: corev1.PodSpec{NodeName: "n1"}}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	} else {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "rs", Controller: ptr.To(true)}}
	}
	return p
}

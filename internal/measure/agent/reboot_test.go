package agent

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

type countingRebooter struct {
	mu    sync.Mutex
	calls int
	err   error
}

func (c *countingRebooter) Reboot(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return c.err
}

func (c *countingRebooter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

func TestHonourReboots(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		bootID      string
		err         error
		want        int
		wantError   bool
	}{
		{name: "no request", bootID: "b1", want: 0},
		{name: "pending request", annotations: map[string]string{annRebootRequest: "r1", annRebootFrom: "b1"}, bootID: "b1", want: 1},
		{name: "already rebooted since", annotations: map[string]string{annRebootRequest: "r1", annRebootFrom: "b1"}, bootID: "b2", want: 0},
		{name: "a failed reboot is recorded", annotations: map[string]string{annRebootRequest: "r1", annRebootFrom: "b1"}, bootID: "b1", err: errors.New("no systemd"), want: 1, wantError: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: tc.annotations},
				Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{BootID: tc.bootID}}})
			r := &countingRebooter{err: tc.err}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			honourReboots(ctx, cs, "n1", r, 20*time.Millisecond)
			// Asked once per request, however many polls see it pending.
			if got := r.count(); got != tc.want {
				t.Errorf("rebooted %d times, want %d", got, tc.want)
			}
			n, _ := cs.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
			if tc.want > 0 && n.Annotations[annRebootHandled] != "r1" {
				t.Errorf("request not recorded as handled: %v", n.Annotations)
			}
			if _, ok := n.Annotations[annRebootError]; ok != tc.wantError {
				t.Errorf("reboot error recorded %v, want %v: %v", ok, tc.wantError, n.Annotations)
			}
		})
	}
}

package clustertest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

// WaitAgentPods waits until every lab node's agent pod is Ready on the pod
// network (Lab "cni": they start once a CNI is installed) and has
// published its report, and fails the test with every pod's state if they
// have not within two minutes.
func (e *Env) WaitAgentPods(t testing.TB) {
	t.Helper()
	cs := e.Client(t)
	nodes := len(e.Cluster(t).Lab.Nodes)
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods("hitless-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=hitless-agent"})
		if err != nil {
			return false, nil //nolint:nilerr // retried
		}
		n := 0
		for i := range pods.Items {
			if p := &pods.Items[i]; PodReady(p) && p.DeletionTimestamp == nil && !p.Spec.HostNetwork {
				n++
			}
		}
		if n != nodes {
			return false, nil
		}
		reports, _, err := agent.Reports(ctx, cs)
		return err == nil && len(reports) >= nodes, nil
	})
	if err != nil {
		pods, _ := cs.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
		var b strings.Builder
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "\n%s/%s on %s: %s %v %v", p.Namespace, p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Conditions, p.Status.ContainerStatuses)
		}
		t.Fatalf("the agents' pods on the pod network: %v%s", err, b.String())
	}
}

// StartLabAgents runs one agent per lab node in this process, its sockets
// in the node's namespace, its link following the node's data-plane pod
// (a model of a data plane that stops while its pod is replaced), until
// the test ends.
func (e *Env) StartLabAgents(t testing.TB) {
	t.Helper()
	c := e.Cluster(t)
	cs := e.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, len(c.Lab.Nodes))
	t.Cleanup(func() {
		cancel()
		for range c.Lab.Nodes {
			<-done
		}
	})
	for _, n := range c.Lab.Nodes {
		ready := make(chan struct{})
		errc := make(chan error, 1)
		go func() {
			defer func() { done <- struct{}{} }()
			errc <- agent.Run(ctx, cs, agent.Options{Node: n.Name, NetNS: n.Path(), Listen: n.IP, Advertise: n.IP,
				TCPPort: localcluster.AgentPort, UDPPort: localcluster.AgentPort, FollowDataPlane: true, Ready: ready})
		}()
		select {
		case <-ready:
		case err := <-errc:
			t.Fatalf("agent of %s: %v", n.Name, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("agent of %s did not report", n.Name)
		}
	}
}

// PodReady reports whether the pod's Ready condition is true.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

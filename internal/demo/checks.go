package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/check/catalog"
	"github.com/hitless-dev/hitless/internal/check/profile"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

// The problem the demo plants: what someone's `kubectl run debug` leaves.
const plantedNS, plantedPod = "shop", "debug-shell"

// startAgents runs one node agent per node inside the demo's process,
// as local processes stand in for the DaemonSet on the local cluster.
func startAgents(ctx context.Context, s *state) (string, error) {
	nodes, err := s.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("listing nodes: %w", err)
	}
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, len(nodes.Items))
	s.stopAgents = func() {
		cancel()
		for range nodes.Items {
			<-done
		}
	}
	for _, n := range nodes.Items {
		opts := agent.Options{Node: n.Name, Listen: "127.0.0.1", Advertise: "127.0.0.1"}
		if s.cluster.Lab != nil {
			if ln, ok := s.cluster.Lab.NodeByName(n.Name); ok {
				opts = agent.Options{Node: n.Name, NetNS: ln.Path(), Listen: ln.IP, Advertise: ln.IP,
					TCPPort: localcluster.AgentPort, UDPPort: localcluster.AgentPort, FollowDataPlane: true}
			}
		}
		ready := make(chan struct{})
		opts.Ready = ready
		go func() {
			done <- agent.Run(actx, s.client, opts)
		}()
		select {
		case <-ready:
		case err := <-done:
			done <- nil // keep stopAgents' count
			return "", fmt.Errorf("agent of %s: %w", n.Name, err)
		case <-time.After(30 * time.Second):
			return "", fmt.Errorf("agent of %s did not report within 30s", n.Name)
		}
	}
	where := "on 127.0.0.1"
	if s.cluster.Lab != nil {
		where = "in each node's namespace, the link following the node's vRouter"
	}
	return fmt.Sprintf("%d agents answering %s (TCP and UDP), reporting to hitless-system", len(nodes.Items), where), nil
}

func (s *state) checks(ctx context.Context, kind string) (*check.Report, error) {
	prep, err := catalog.Prepare(catalog.Options{Kind: kind, Profile: "generic", AgentTimeout: 20 * time.Second})
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(s.config)
	if err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	return prep.Run(ctx, s.client, dyn)
}

// problems prints the failing and warning rows of a report, as
// `hitless preflight` shows them.
func (s *state) problems(rep *check.Report) {
	shown := *rep
	shown.Results = nil
	for _, r := range rep.Results {
		if r.Status == check.Fail || r.Status == check.Error || r.Status == check.Warn {
			shown.Results = append(shown.Results, r)
		}
	}
	var b bytes.Buffer
	tw := printers.GetNewTabWriter(&b)
	check.PrintTable(tw, &shown, false)
	_ = tw.Flush()
	s.progressf("%s", strings.TrimRight(b.String(), "\n"))
}

// plantAndPreflight plants an unmanaged pod and shows preflight refusing.
func plantAndPreflight(ctx context.Context, s *state) (string, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: plantedPod, Namespace: plantedNS, Labels: map[string]string{"run": plantedPod}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "shell", Image: "registry.k8s.io/pause:3.10"}},
			TerminationGracePeriodSeconds: ptr.To[int64](0)},
	}
	if _, err := s.client.CoreV1().Pods(plantedNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("planting pod %s/%s: %w", plantedNS, plantedPod, err)
	}
	rep, err := s.checks(ctx, profile.Preflight)
	if err != nil {
		return "", err
	}
	s.problems(rep)
	if rep.Summary.OK {
		return "", errors.New("preflight passed with an unmanaged pod planted")
	}
	var blocking []string
	for _, r := range rep.Results {
		if r.Blocking() {
			blocking = append(blocking, r.ID)
		}
	}
	return fmt.Sprintf("NOT OK, as it should be (%s): run %s", strings.Join(blocking, ", "), rep.ID), nil
}

// fixPlanted deletes the planted pod, as its owner would after the
// preflight named it.
func fixPlanted(ctx context.Context, s *state) (string, error) {
	err := s.client.CoreV1().Pods(plantedNS).Delete(ctx, plantedPod, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	if err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("deleting pod %s/%s: %w", plantedNS, plantedPod, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := s.client.CoreV1().Pods(plantedNS).Get(ctx, plantedPod, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Sprintf("deleted pod %s/%s", plantedNS, plantedPod), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("pod %s/%s still there after a minute", plantedNS, plantedPod)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func runChecks(kind string) func(ctx context.Context, s *state) (string, error) {
	return func(ctx context.Context, s *state) (string, error) {
		rep, err := s.checks(ctx, kind)
		if err != nil {
			return "", err
		}
		if !rep.Summary.OK {
			s.problems(rep)
			return "", fmt.Errorf("%s %s: %d hard check(s) failed", kind, rep.ID, rep.Summary.Blocking)
		}
		sm := rep.Summary
		detail := fmt.Sprintf("OK: %d pass, %d warn, %d skip (run %s)", sm.Pass, sm.Warn, sm.Skip, rep.ID)
		for _, r := range rep.Find("agents.connectivity") {
			detail += "; " + r.Message
		}
		return detail, nil
	}
}

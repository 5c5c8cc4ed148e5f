package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/examples"
	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/engine/cutover"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/kube/transient"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/binaries"
	"github.com/hitless-dev/hitless/internal/localcluster/kubelet"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
	"github.com/hitless-dev/hitless/internal/measure"
)

// CutoverOptions configure the cutover demo.
type CutoverOptions struct {
	Cluster string // the lab cluster's name (started afresh)
	// KubeRouter is kube-router's release manifest (default: the shared
	// test data's kubeadm-kuberouter-v2.1.0.yaml).
	KubeRouter string
	// Binary is the hitless binary the lab kubelet runs agents with.
	Binary string
	// LabImages are more images the lab kubelet knows (a test's binary
	// as hitless's image).
	LabImages []kubelet.Image
	Progress  func(string)
}

// cutoverState is what the cutover demo's steps share.
type cutoverState struct {
	opts      CutoverOptions
	cluster   *localcluster.Cluster
	c         operation.Cluster
	guard     *measure.Guard
	flannel   *component.Source
	operation string
	back      string
	results   []measure.Steps
}

const (
	kubeRouter = "kube-router"
	// cutoverApps is the demo application's namespace.
	cutoverApps = "shop"
)

// RunCutover migrates a real lab (kube-router's BGP routing in every
// node's namespace) to flannel's VXLAN node by node with the per-node
// cutover, probed pod to pod: interrupted once two nodes are across, one
// node rolled back alone, then the same migration run again to the end.
// It needs root (network namespaces).
func RunCutover(ctx context.Context, opts CutoverOptions) (*Result, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the cutover demo runs real data planes in network namespaces: run it as root")
	}
	if opts.Cluster == "" {
		opts.Cluster = "hitless-cutover"
	}
	if opts.KubeRouter == "" {
		dir, err := upstream.Find()
		if err != nil {
			return nil, &localcluster.InvalidError{Field: "--kube-router", Msg: "kube-router's release manifest is needed: " + err.Error()}
		}
		opts.KubeRouter = filepath.Join(dir, "cni", "kube-router", "kubeadm-kuberouter-v2.1.0.yaml")
	}
	kr, err := component.Load(opts.KubeRouter)
	if err != nil {
		return nil, &localcluster.InvalidError{Field: "--kube-router", Msg: err.Error()}
	}
	s := &cutoverState{opts: opts}
	res := &Result{Cluster: opts.Cluster}
	steps := []step{
		{"real lab: kube-router (BGP, the real daemon) on 3 nodes, an application under a PDB", func(ctx context.Context, _ *state) (string, error) { return s.lab(ctx, kr) }},
		{"kube-router to flannel node by node, probed pod to pod; interrupted once 2 nodes are across", s.interrupted},
		{"one node rolled back alone", s.rollBackOne},
		{"the same migration again: that node moves again, kube-router is removed", s.finish},
		{"the loss on each node's paths", s.perNode},
	}
	if err := runSteps(ctx, res, s.say, steps); err != nil {
		if s.guard != nil {
			_, _ = s.guard.Stop(ctx, s.operation, s.results...)
		}
		return res, err
	}
	res.Kubeconfig = s.cluster.Kubeconfig
	res.Next = []string{
		"export KUBECONFIG=" + s.cluster.Kubeconfig,
		"hitless status " + s.operation,
		"kubectl get nodes -L " + cutover.DefaultLabel,
		"hitless migrate show cni-node-by-node",
		"hitless cluster down --name " + s.opts.Cluster,
	}
	return res, nil
}

func (s *cutoverState) say(format string, args ...any) {
	if s.opts.Progress != nil {
		s.opts.Progress(fmt.Sprintf(format, args...))
	}
}

// lab starts the lab afresh, installs kube-router with hitless and an
// application under a PDB, and starts the probe session the rest of the
// demo is measured by.
func (s *cutoverState) lab(ctx context.Context, kr *component.Source) (string, error) {
	c, err := afresh(ctx, localcluster.Options{Name: s.opts.Cluster, Nodes: 2, ControlPlaneNodes: 1,
		Lab: localcluster.LabCNI, KubeletBinary: s.opts.Binary, LabImages: s.opts.LabImages, Progress: progressWriter{s.say}})
	if err != nil {
		return "", err
	}
	s.cluster = c
	cs, cfg, err := c.Client()
	if err != nil {
		return "", err
	}
	s.c = operation.Cluster{Client: cs, Config: cfg}
	if _, err := lifecycle.Install(ctx, lifecycle.Cluster{Client: cs, Config: cfg}, lifecycle.Options{Name: kubeRouter, Source: kr, Command: "hitless demo cutover", Wait: 3 * time.Minute}); err != nil {
		return "", err
	}
	if err := c.WaitAgents(ctx, 2*time.Minute); err != nil {
		return "", err
	}
	if err := application(ctx, cs); err != nil {
		return "", err
	}
	src, err := writeExample(c.Dir, examples.FlannelLab)
	if err != nil {
		return "", err
	}
	if s.flannel, err = component.Load(src); err != nil {
		return "", err
	}
	if s.guard, err = measure.StartGuard(ctx, cs, measure.GuardSpec{Rate: 100}); err != nil {
		return "", err
	}
	return fmt.Sprintf("cluster %q: %d nodes; kube-router %s installed by hitless in every node's namespace; %d agents probing pod to pod; Deployment %s/web (4, PDB maxUnavailable 1)",
		c.Name, len(c.Lab.Nodes), binaries.KubeRouterVersion, len(c.Lab.Nodes), cutoverApps), nil
}

// progressWriter hands a cluster's progress lines to say.
type progressWriter struct{ say func(string, ...any) }

func (p progressWriter) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		p.say("    %s", line)
	}
	return len(b), nil
}

// application is what the drains must not disrupt: 4 replicas under a
// PDB.
func application(ctx context.Context, cs kubernetes.Interface) error {
	labels := map[string]string{"app": "web"}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cutoverApps}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: cutoverApps}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](4), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []corev1.Container{{Name: "web", Image: "registry.example.com/shop/web:1.0"}},
		}},
	}}
	if _, err := cs.AppsV1().Deployments(cutoverApps).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return err
	}
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: cutoverApps}, Spec: policyv1.PodDisruptionBudgetSpec{
		MaxUnavailable: ptr.To(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
	}}
	_, err := cs.PolicyV1().PodDisruptionBudgets(cutoverApps).Create(ctx, pdb, metav1.CreateOptions{})
	return err
}

// sets are the built-in plan's parameters for kube-router to flannel.
func cutoverSets() map[string]string {
	return map[string]string{
		"from": kubeRouter, "fromNamespace": "kube-system", "fromDaemonSet": "kube-router",
		"fromCNIConfigs": "10-kuberouter.conflist", "fromLinks": "kube-bridge", "fromValue": kubeRouter,
		"to": flannel, "toNamespace": "kube-flannel", "toDaemonSet": "kube-flannel-ds",
		"toCNIConfigs": "10-flannel.conflist", "toLinks": "flannel.1,cni0", "toAnnotations": "flannel.alpha.coreos.com/", "toValue": flannel,
	}
}

func (s *cutoverState) run(ctx context.Context) (*migrate.Result, error) {
	p, err := plan.Builtin("cni-node-by-node")
	if err != nil {
		return nil, err
	}
	res, err := migrate.Run(ctx, s.c, migrate.Options{Plan: p, Set: cutoverSets(), Command: "hitless demo cutover",
		Sources: map[string]*component.Source{"to": s.flannel}, Guard: s.guard, Poll: 250 * time.Millisecond,
		Progress: func(line string) { s.say("    %s", line) }})
	if res != nil {
		s.results = append(s.results, res)
		if res.Operation != "" {
			s.operation = res.Operation
		}
	}
	return res, err
}

// onFlannel lists the nodes on flannel and not cordoned.
func (s *cutoverState) onFlannel(ctx context.Context) ([]string, error) {
	nodes, err := s.c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: cutover.DefaultLabel + "=" + flannel})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range nodes.Items {
		if !n.Spec.Unschedulable {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// interrupted runs the migration and stops it, as a crash would, once
// two nodes are across and uncordoned.
func (s *cutoverState) interrupted(ctx context.Context, _ *state) (string, error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.run(rctx)
		done <- err
	}()
	var moved []string
	err := transient.Poll(ctx, 500*time.Millisecond, func() (bool, error) {
		select {
		case err := <-done:
			return false, fmt.Errorf("the migration ended before it was interrupted: %w", err)
		default:
		}
		on, err := s.onFlannel(ctx)
		moved = on
		return len(on) >= 2, err
	})
	cancel()
	if err != nil {
		return "", err
	}
	<-done
	s.back = moved[0]
	return fmt.Sprintf("%s interrupted with %s on flannel (the plan said first: kube-router and flannel do not reach each other while the cluster is mixed)",
		s.operation, strings.Join(moved, ", ")), nil
}

func (s *cutoverState) rollBackOne(ctx context.Context, _ *state) (string, error) {
	res, err := migrate.Rollback(ctx, s.c, s.operation, migrate.RollbackOptions{Nodes: []string{s.back}, Command: "hitless demo cutover",
		Poll: 250 * time.Millisecond, Progress: func(line string) { s.say("    %s", line) }})
	if res != nil {
		s.results = append(s.results, res)
	}
	if err != nil {
		return "", err
	}
	n, err := s.c.Client.CoreV1().Nodes().Get(ctx, s.back, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	on, err := s.onFlannel(ctx)
	return fmt.Sprintf("node %s back on %s (verified pod to pod to the kube-router nodes); still on flannel: %s; the migration stays Paused",
		s.back, n.Labels[cutover.DefaultLabel], strings.Join(on, ", ")), err
}

func (s *cutoverState) finish(ctx context.Context, _ *state) (string, error) {
	res, err := s.run(ctx)
	if err != nil {
		return "", err
	}
	again := ""
	raw, err := journal.NewStore(s.c.Client).Get(ctx, res.Operation)
	if err != nil {
		return "", err
	}
	op, err := journal.Decode[migrate.Record](raw)
	if err != nil {
		return "", err
	}
	for _, a := range op.Record.Again {
		again += fmt.Sprintf("; %s moved again (journaled: %s)", strings.Join(a.Nodes, ", "), a.Reason)
	}
	on, err := s.onFlannel(ctx)
	return fmt.Sprintf("%s resumed and finished: %d nodes on flannel (%s), kube-router uninstalled, flannel's node selector dropped%s",
		res.Operation, len(on), strings.Join(on, ", "), again), err
}

// perNode stops the probe session and says, per node, what its paths
// lost over the whole story.
func (s *cutoverState) perNode(ctx context.Context, _ *state) (string, error) {
	rep, err := s.guard.Stop(ctx, s.operation, s.results...)
	s.guard = nil
	if err != nil {
		return "", err
	}
	path := filepath.Join(s.cluster.Dir, "cutover-report.html")
	if err := measure.WriteHTML(path, rep); err != nil {
		return "", err
	}
	var parts []string
	for _, n := range s.cluster.Lab.Nodes {
		var lost int64
		longest := 0.0
		for _, p := range measure.PathsOf("udp", rep) {
			if p.From == n.Name || p.To == n.Name {
				lost += p.Lost
				longest = max(longest, p.LongestOutageMs)
			}
		}
		parts = append(parts, fmt.Sprintf("%s %d lost, longest %.1f s", n.Name, lost, longest/1000))
	}
	return fmt.Sprintf("%s (the mixed period: a node reaches the others once both ends are on one plane); report %s", strings.Join(parts, "; "), path), nil
}

package demo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
)

// MigrateOptions configure the migration demo.
type MigrateOptions struct {
	Cluster string // the rehearsal cluster's name
	// CRDs is the directory of the OpenShift CRDs (default: the shared
	// test data's openshift directory).
	CRDs string
	// Binary is the hitless binary the rehearsal's simulator runs as.
	Binary   string
	Progress func(string)
}

// migrateState is what the migration demo's steps share.
type migrateState struct {
	opts      MigrateOptions
	cluster   *localcluster.Cluster
	c         operation.Cluster
	dyn       dynamic.Interface
	operation string
}

// RunMigrate rehearses seed 002 on an OpenShift rehearsal cluster (a
// simulator of its operators, not OpenShift): the offline migration to
// OVN-Kubernetes, paused by an operator that degrades mid-way, resumed
// by the same command once it is fixed, then the documented rollback.
func RunMigrate(ctx context.Context, opts MigrateOptions) (*Result, error) {
	if opts.Cluster == "" {
		opts.Cluster = "hitless-openshift"
	}
	if opts.CRDs == "" {
		dir, err := upstream.Find()
		if err != nil {
			return nil, &localcluster.InvalidError{Field: "--openshift-crds", Msg: "the OpenShift CRDs are needed: " + err.Error()}
		}
		opts.CRDs = filepath.Join(dir, "openshift")
	}
	s := &migrateState{opts: opts}
	res := &Result{Cluster: opts.Cluster}
	steps := []step{
		{"rehearsal cluster: OpenShift SDN, 3 masters, 3 workers, operators simulated", s.rehearsal},
		{"offline migration to OVN-Kubernetes; an operator degrades mid-way (planted)", s.migrateUntilPaused},
		{"fix the operator", s.fixOperator},
		{"the same command again: the migration resumes and finishes", s.resume},
		{"the documented rollback to OpenShift SDN", s.rollback},
	}
	if err := runSteps(ctx, res, s.say, steps); err != nil {
		return res, err
	}
	res.Kubeconfig = s.cluster.Kubeconfig
	res.Next = []string{
		"export KUBECONFIG=" + s.cluster.Kubeconfig,
		"hitless status " + s.operation,
		"kubectl get network.config cluster -o yaml; kubectl get mcp; kubectl get co",
		"hitless migrate show openshift-sdn-to-ovn-live",
		"hitless migrate run openshift-sdn-to-ovn-live --set settle=10s",
		"hitless cluster down --name " + s.opts.Cluster,
	}
	return res, nil
}

// runSteps runs a demo of its own (migrate, cutover) step by step,
// saying each as it starts and keeping each result in res; the first
// error stops it.
func runSteps(ctx context.Context, res *Result, say func(string, ...any), steps []step) error {
	for i, st := range steps {
		say("[%d/%d] %s ...", i+1, len(steps), st.name)
		start := time.Now()
		detail, err := st.run(ctx, nil)
		if err != nil {
			return fmt.Errorf("demo step %q: %w", st.name, err)
		}
		res.Steps = append(res.Steps, StepResult{Name: st.name, Detail: detail, Duration: time.Since(start)})
	}
	return nil
}

func (s *migrateState) say(format string, args ...any) {
	if s.opts.Progress != nil {
		s.opts.Progress(fmt.Sprintf(format, args...))
	}
}

// rehearsal starts the rehearsal cluster afresh: the demo shows a
// migration from SDN.
func (s *migrateState) rehearsal(ctx context.Context, _ *state) (string, error) {
	c, err := afresh(ctx, localcluster.Options{Name: s.opts.Cluster, Nodes: 3, ControlPlaneNodes: 3,
		Flavor: localcluster.FlavorOpenShift, OpenShiftCRDs: s.opts.CRDs, SimulatorBinary: s.opts.Binary})
	if err != nil {
		return "", err
	}
	s.cluster = c
	cs, cfg, err := c.Client()
	if err != nil {
		return "", err
	}
	s.c = operation.Cluster{Client: cs, Config: cfg}
	if s.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return "", err
	}
	t, err := s.networkType(ctx)
	return fmt.Sprintf("cluster %q: status.networkType %s, 2 MachineConfigPools, 6 ClusterOperators, sdn and multus DaemonSets", c.Name, t), err
}

func (s *migrateState) run(ctx context.Context, name string, progress func(string)) (*migrate.Result, error) {
	p, err := plan.Builtin(name)
	if err != nil {
		return nil, err
	}
	return migrate.Run(ctx, s.c, migrate.Options{Plan: p, Command: "hitless migrate run " + name + " --set settle=10s",
		Set: map[string]string{"settle": "10s", "workerBatch": "2"}, Poll: 250 * time.Millisecond,
		Progress: func(line string) {
			s.say("    %s", line)
			if progress != nil {
				progress(line)
			}
		}})
}

func (s *migrateState) migrateUntilPaused(ctx context.Context, _ *state) (string, error) {
	planted := false
	res, err := s.run(ctx, "openshift-sdn-to-ovn", func(line string) {
		if !planted && strings.HasPrefix(line, "set-migration") && strings.Contains(line, "done in") {
			planted = true
			if perr := s.setDegraded(ctx, true); perr != nil {
				s.say("    planting the degraded operator: %v", perr)
			}
		}
	})
	var paused *migrate.PausedError
	switch {
	case err == nil:
		return "", errors.New("the migration finished: the degraded operator did not pause it")
	case !errors.As(err, &paused):
		return "", fmt.Errorf("want the migration paused by the degraded operator: %w", err)
	}
	s.operation = res.Operation
	return fmt.Sprintf("%s paused before step %s: %s", res.Operation, paused.Step, paused.Reason), nil
}

func (s *migrateState) fixOperator(ctx context.Context, _ *state) (string, error) {
	return "ClusterOperator dns: Degraded=False", s.setDegraded(ctx, false)
}

func (s *migrateState) resume(ctx context.Context, _ *state) (string, error) {
	res, err := s.run(ctx, "openshift-sdn-to-ovn", nil)
	if err != nil {
		return "", err
	}
	t, err := s.networkType(ctx)
	return fmt.Sprintf("%s resumed (%d steps journaled): status.networkType %s, every node rebooted, openshift-sdn removed", res.Operation, len(res.Steps), t), err
}

func (s *migrateState) rollback(ctx context.Context, _ *state) (string, error) {
	res, err := s.run(ctx, "openshift-ovn-to-sdn", nil)
	if err != nil {
		return "", err
	}
	t, err := s.networkType(ctx)
	return fmt.Sprintf("%s: status.networkType %s, pools resumed, openshift-ovn-kubernetes removed", res.Operation, t), err
}

func (s *migrateState) networkType(ctx context.Context) (string, error) {
	u, err := s.dyn.Resource(schema.GroupVersionResource{Group: "config.openshift.io", Version: "v1", Resource: "networks"}).Get(ctx, "cluster", metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading Network.config cluster: %w", err)
	}
	t, _, _ := unstructured.NestedString(u.Object, "status", "networkType")
	return t, nil
}

// setDegraded sets ClusterOperator dns Degraded, as a failing operator
// would; the simulator leaves it alone.
func (s *migrateState) setDegraded(ctx context.Context, degraded bool) error {
	gvr := schema.GroupVersionResource{Group: "config.openshift.io", Version: "v1", Resource: "clusteroperators"}
	co, err := s.dyn.Resource(gvr).Get(ctx, "dns", metav1.GetOptions{})
	if err != nil {
		return err
	}
	status := "False"
	if degraded {
		status = "True"
	}
	conds, _, _ := unstructured.NestedSlice(co.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Degraded" {
			m["status"], m["message"], m["lastTransitionTime"] = status, "planted by the demo: DNS pods crash-looping", time.Now().UTC().Format(time.RFC3339)
		}
	}
	if err := unstructured.SetNestedSlice(co.Object, conds, "status", "conditions"); err != nil {
		return err
	}
	_, err = s.dyn.Resource(gvr).UpdateStatus(ctx, co, metav1.UpdateOptions{})
	return err
}

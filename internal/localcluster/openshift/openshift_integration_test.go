package openshift_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
	"github.com/hitless-dev/hitless/internal/localcluster/openshift"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
)

var env = clustertest.New(clustertest.Options{Workers: 3, ControlPlanes: 3})

func TestMain(m *testing.M) { os.Exit(env.Run(m)) }

var (
	networkConfig   = schema.GroupVersionResource{Group: "config.openshift.io", Version: "v1", Resource: "networks"}
	networkOperator = schema.GroupVersionResource{Group: "operator.openshift.io", Version: "v1", Resource: "networks"}
	clusterOperator = schema.GroupVersionResource{Group: "config.openshift.io", Version: "v1", Resource: "clusteroperators"}
	pools           = schema.GroupVersionResource{Group: "machineconfiguration.openshift.io", Version: "v1", Resource: "machineconfigpools"}
)

// rehearsal installs the SDN cluster once and runs the simulator for the
// package's tests.
func rehearsal(t *testing.T) (operation.Cluster, dynamic.Interface) {
	t.Helper()
	cfg := env.Config(t)
	setup.Do(func() {
		setupErr = openshift.Install(context.Background(), cfg, upstream.Path(t, "openshift"))
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	// The simulator keeps its state in the cluster: one per test.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = openshift.Simulate(ctx, cfg, 100*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return operation.Cluster{Client: env.Client(t), Config: cfg}, dyn
}

var (
	setup    sync.Once
	setupErr error
)

func networkType(t *testing.T, dyn dynamic.Interface) string {
	t.Helper()
	u, err := dyn.Resource(networkConfig).Get(context.Background(), "cluster", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, _, _ := unstructured.NestedString(u.Object, "status", "networkType")
	return s
}

func run(t *testing.T, c operation.Cluster, name string, progress func(string)) (*migrate.Result, error) {
	t.Helper()
	p, err := plan.Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	return migrate.Run(context.Background(), c, migrate.Options{Plan: p, Poll: 200 * time.Millisecond, Progress: progress,
		Set: map[string]string{"operatorTimeout": "2m", "workerBatch": "2"}})
}

func TestOfflineMigrationPausesOnDegradedOperatorThenFinishes(t *testing.T) {
	c, dyn := rehearsal(t)
	ctx := context.Background()
	if got := networkType(t, dyn); got != openshift.OpenShiftSDN {
		t.Fatalf("the rehearsal starts at %q, want OpenShiftSDN", got)
	}
	degraded := false
	res, err := run(t, c, "openshift-sdn-to-ovn", func(line string) {
		t.Log(line)
		if !degraded && strings.HasPrefix(line, "set-migration") && strings.Contains(line, "done in") {
			degraded = true
			setDegraded(t, dyn, "dns", true)
		}
	})
	var paused *migrate.PausedError
	if !errors.As(err, &paused) || paused.Step != "ovn-settings" && paused.Step != "pools-updated" || !strings.Contains(paused.Reason, "ClusterOperator dns is Degraded") {
		t.Fatalf("err = %v, want a pause after set-migration naming ClusterOperator dns", err)
	}
	setDegraded(t, dyn, "dns", false)
	res2, err := run(t, c, "openshift-sdn-to-ovn", func(line string) { t.Log(line) })
	if err != nil {
		t.Fatal(err)
	}
	if res2.Operation != res.Operation || !res2.Resumed {
		t.Errorf("the re-run was %s, want %s resumed", res2.Operation, res.Operation)
	}
	if got := networkType(t, dyn); got != openshift.OVNKubernetes {
		t.Errorf("status.networkType %q after the migration", got)
	}
	op, err := dyn.Resource(networkOperator).Get(ctx, "cluster", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(op.Object, "spec", "migration"); found {
		t.Errorf("spec.migration left: %v", op.Object["spec"])
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(op.Object, "spec", "defaultNetwork", "openshiftSDNConfig"); found {
		t.Errorf("openshiftSDNConfig left")
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "openshift-sdn", metav1.GetOptions{}); err == nil {
		t.Errorf("namespace openshift-sdn left")
	}
	for _, s := range res2.Steps {
		if s.Name == "postflight" && (s.Finished == nil || s.Error != "") {
			t.Errorf("postflight: %+v", s)
		}
	}
	nodes, _ := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable {
			t.Errorf("node %s left cordoned", n.Name)
		}
	}
}

func setDegraded(t *testing.T, dyn dynamic.Interface, name string, degraded bool) {
	t.Helper()
	co, err := dyn.Resource(clusterOperator).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Error(err)
		return
	}
	status := "False"
	if degraded {
		status = "True"
	}
	conds, _, _ := unstructured.NestedSlice(co.Object, "status", "conditions")
	for _, c := range conds {
		if m := c.(map[string]any); m["type"] == "Degraded" {
			m["status"], m["message"] = status, "test: resolver pods crash"
		}
	}
	_ = unstructured.SetNestedSlice(co.Object, conds, "status", "conditions")
	if _, err := dyn.Resource(clusterOperator).UpdateStatus(context.Background(), co, metav1.UpdateOptions{}); err != nil {
		t.Error(err)
	}
}

var _ = pools

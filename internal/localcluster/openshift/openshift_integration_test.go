package openshift_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	knode "github.com/hitless-dev/hitless/internal/kube/node"
	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
	"github.com/hitless-dev/hitless/internal/localcluster/openshift"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
)

var env = clustertest.New(clustertest.Options{Workers: 3, ControlPlanes: 3})

// envRunCLI makes the test binary act as the hitless CLI, so the chaos
// test can SIGKILL real `hitless migrate run` processes.
const envRunCLI = "HITLESS_TEST_RUN_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(envRunCLI) == "1" {
		os.Exit(app.Main())
	}
	os.Exit(env.Run(m))
}

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
	set := map[string]string{"operatorTimeout": "2m"}
	for _, n := range p.ParamNames() {
		switch n {
		case "workerBatch":
			set[n] = "2"
		case "phaseTimeout":
			set[n] = "5m"
		case "settle":
			set[n] = "5s"
		}
	}
	return migrate.Run(context.Background(), c, migrate.Options{Plan: p, Poll: 200 * time.Millisecond, Progress: progress, Set: set})
}

// TestMigrations runs the seed 002 procedures in order on one rehearsal
// cluster: each starts where the previous one left the cluster.
func TestMigrations(t *testing.T) {
	c, dyn := rehearsal(t)
	// The offline migration the CLI finished, and the specs before it.
	var offlineID string
	var offlineBefore map[string]string
	for _, step := range []struct {
		name string
		fn   func(t *testing.T, c operation.Cluster, dyn dynamic.Interface)
	}{
		{"rollback from the middle restores the spec byte for byte", rollbackFromMiddle},
		{"offline migration pauses on a degraded operator, then finishes", offlineMigration},
		{"the documented offline rollback to OpenShift SDN", offlineRollbackPlan},
		{"live migration, then rollback ID from the end restores the spec byte for byte", liveMigrationAndRollback},
		{"offline migration through the CLI survives ten SIGKILLs", func(t *testing.T, c operation.Cluster, dyn dynamic.Interface) {
			offlineID, offlineBefore = chaos(t, c, dyn)
		}},
		{"migrate rollback ID from the end of the offline migration restores the spec byte for byte", func(t *testing.T, c operation.Cluster, dyn dynamic.Interface) {
			rollbackFromEnd(t, c, dyn, offlineID, offlineBefore)
		}},
	} {
		if !t.Run(step.name, func(t *testing.T) { step.fn(t, c, dyn) }) {
			t.FailNow()
		}
	}
}

func offlineMigration(t *testing.T, c operation.Cluster, dyn dynamic.Interface) {
	ctx := context.Background()
	if got := networkType(t, dyn); got != openshift.OpenShiftSDN {
		t.Fatalf("the rehearsal starts at %q, want OpenShiftSDN", got)
	}
	stop := make(chan struct{})
	most := make(chan int)
	go func() { most <- mastersDownAtOnce(c, stop) }()
	defer func() {
		close(stop)
		if m := <-most; m > 1 {
			t.Errorf("%d masters were NotReady at once", m)
		}
	}()
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
	mcs := schema.GroupVersionResource{Group: "machineconfiguration.openshift.io", Version: "v1", Resource: "machineconfigs"}
	nodes, _ := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable {
			t.Errorf("node %s left cordoned", n.Name)
		}
		mc, err := dyn.Resource(mcs).Get(ctx, n.Annotations["machineconfiguration.openshift.io/currentConfig"], metav1.GetOptions{})
		if err != nil {
			t.Errorf("node %s: its current MachineConfig: %v", n.Name, err)
			continue
		}
		b, _ := json.Marshal(mc.Object["spec"])
		if !strings.Contains(string(b), "ExecStart=/usr/local/bin/configure-ovs.sh OVNKubernetes") {
			t.Errorf("node %s runs MachineConfig %s without configure-ovs.sh OVNKubernetes", n.Name, mc.GetName())
		}
	}
}

// mastersDownAtOnce polls the masters until stop and returns the most
// that were NotReady at the same time.
func mastersDownAtOnce(c operation.Cluster, stop chan struct{}) int {
	most := 0
	for {
		select {
		case <-stop:
			return most
		case <-time.After(100 * time.Millisecond):
		}
		l, err := c.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: openshift.LabelMaster})
		if err != nil {
			continue
		}
		down := 0
		for i := range l.Items {
			if !knode.Ready(&l.Items[i]) {
				down++
			}
		}
		most = max(most, down)
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

// specs reads the spec of every object a migration backs up.
func specs(t *testing.T, dyn dynamic.Interface) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range []struct {
		gvr  schema.GroupVersionResource
		name string
	}{{networkConfig, "cluster"}, {networkOperator, "cluster"}, {pools, "master"}, {pools, "worker"}} {
		u, err := dyn.Resource(r.gvr).Get(context.Background(), r.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(u.Object["spec"])
		out[r.gvr.Resource+"."+r.gvr.Group+"/"+r.name] = string(b)
	}
	return out
}

func compareSpecs(t *testing.T, before, after map[string]string) {
	t.Helper()
	for k, v := range before {
		if strings.HasPrefix(k, "machineconfigpools.") {
			continue // the machine-config operator owns spec.configuration
		}
		if after[k] != v {
			t.Errorf("%s spec after the rollback:\n%s\nwant, as backed up:\n%s", k, after[k], v)
		}
	}
}

// rollbackFromMiddle stops the offline migration after the pools rolled
// and before the network type changes, then rolls it back.
func rollbackFromMiddle(t *testing.T, c operation.Cluster, dyn dynamic.Interface) {
	before := specs(t, dyn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := plan.Builtin("openshift-sdn-to-ovn")
	if err != nil {
		t.Fatal(err)
	}
	res, err := migrate.Run(ctx, c, migrate.Options{Plan: p, Poll: 200 * time.Millisecond, Set: map[string]string{"mtu": "1400", "settle": "5s"},
		Progress: func(line string) {
			if strings.HasPrefix(line, "nodes-configured") && strings.Contains(line, "done in") {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the run stopped after nodes-configured", err)
	}
	if _, err := migrate.Rollback(context.Background(), c, res.Operation, migrate.RollbackOptions{Poll: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	compareSpecs(t, before, specs(t, dyn))
	waitPools(t, dyn)
}

func offlineRollbackPlan(t *testing.T, c operation.Cluster, dyn dynamic.Interface) {
	ctx := context.Background()
	if _, err := run(t, c, "openshift-ovn-to-sdn", func(line string) { t.Log(line) }); err != nil {
		t.Fatal(err)
	}
	if got := networkType(t, dyn); got != openshift.OpenShiftSDN {
		t.Errorf("status.networkType %q after the rollback", got)
	}
	poolsResumed(t, dyn)
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "openshift-ovn-kubernetes", metav1.GetOptions{}); err == nil {
		t.Errorf("namespace openshift-ovn-kubernetes left")
	}
}

// liveMigrationAndRollback runs the live migration, then rolls it back by
// its id: the explicit rollback starts the live migration back to
// OpenShift SDN, and once it is done the specs are what they were.
func liveMigrationAndRollback(t *testing.T, c operation.Cluster, dyn dynamic.Interface) {
	before := specs(t, dyn)
	res, err := run(t, c, "openshift-sdn-to-ovn-live", func(line string) { t.Log(line) })
	if err != nil {
		t.Fatal(err)
	}
	if got := networkType(t, dyn); got != openshift.OVNKubernetes {
		t.Fatalf("status.networkType %q after the live migration", got)
	}
	cfg, _ := dyn.Resource(networkConfig).Get(context.Background(), "cluster", metav1.GetOptions{})
	if _, ok := cfg.GetAnnotations()[openshift.AnnotationLiveMigration]; ok {
		t.Errorf("the migration annotation was left")
	}
	if _, err := migrate.Rollback(context.Background(), c, res.Operation, migrate.RollbackOptions{Poll: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if got := networkType(t, dyn); got != openshift.OpenShiftSDN {
		t.Errorf("status.networkType %s after the rollback", got)
	}
	cfg, _ = dyn.Resource(networkConfig).Get(context.Background(), "cluster", metav1.GetOptions{})
	if _, ok := cfg.GetAnnotations()[openshift.AnnotationLiveMigration]; ok {
		t.Errorf("the rollback left the migration annotation")
	}
	waitPools(t, dyn)
	after := specs(t, dyn)
	compareSpecs(t, before, after)
}

// poolsResumed fails the test for each pool left paused.
func poolsResumed(t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	for _, name := range []string{"master", "worker"} {
		u, err := dyn.Resource(pools).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if paused, _, _ := unstructured.NestedBool(u.Object, "spec", "paused"); paused {
			t.Errorf("pool %s left paused", name)
		}
	}
}

func waitPools(t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	var settled time.Time
	clustertest.Eventually(t, 3*time.Minute, func() error {
		for _, name := range []string{"master", "worker"} {
			u, err := dyn.Resource(pools).Get(context.Background(), name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			spec, _, _ := unstructured.NestedString(u.Object, "spec", "configuration", "name")
			status, _, _ := unstructured.NestedString(u.Object, "status", "configuration", "name")
			machines, _, _ := unstructured.NestedInt64(u.Object, "status", "machineCount")
			updated, _, _ := unstructured.NestedInt64(u.Object, "status", "updatedMachineCount")
			if spec != status || machines != updated {
				settled = time.Time{}
				return fmt.Errorf("pool %s: %d/%d machines on %s", name, updated, machines, spec)
			}
		}
		if settled.IsZero() {
			settled = time.Now()
		}
		if time.Since(settled) < 2*time.Second {
			return fmt.Errorf("pools settled for %s", time.Since(settled))
		}
		return nil
	})
}

// chaos runs the offline migration as real CLI processes, SIGKILLs ten of
// them at random moments and runs the same command again each time.
// chaos runs the offline migration through the CLI, killed ten times;
// it returns the migration's id and the specs before it.
func chaos(t *testing.T, c operation.Cluster, dyn dynamic.Interface) (string, map[string]string) {
	ctx := context.Background()
	before := specs(t, dyn)
	stop := make(chan struct{})
	boots := make(chan map[string]int)
	most := make(chan int)
	go func() { boots <- bootChanges(c, stop) }()
	go func() { most <- mastersDownAtOnce(c, stop) }()
	args := []string{"--kubeconfig", env.Kubeconfig(t), "migrate", "run", "openshift-sdn-to-ovn", "--set", "workerBatch=2", "--set", "settle=5s", "--set", "operatorTimeout=2m"}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	kills := 0
	var out bytes.Buffer
	for run := 0; ; run++ {
		out.Reset()
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), envRunCLI+"=1")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		limit := time.Duration(2000+rng.IntN(10000)) * time.Millisecond
		if kills == 10 {
			limit = 10 * time.Minute
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("run %d: %v\n%s", run, err, out.String())
			}
		case <-time.After(limit):
			if kills < 10 {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				<-exited
				kills++
				continue
			}
			_ = cmd.Process.Kill()
			t.Fatalf("the last run did not finish:\n%s", out.String())
		}
		break
	}
	close(stop)
	if m := <-most; m > 1 {
		t.Errorf("%d masters were NotReady at once", m)
	}
	changes := <-boots
	for node, n := range changes {
		// One reboot by the machine-config operator's pool roll, one by
		// the plan's reboot step: a third would be a step run twice.
		if n != 2 {
			t.Errorf("node %s rebooted %d times, want 2", node, n)
		}
	}
	if got := networkType(t, dyn); got != openshift.OVNKubernetes {
		t.Errorf("status.networkType %q after the migration", got)
	}
	id := regexp.MustCompile(`migrate-\d{8}-\d{6}-[0-9a-f]{4}`).FindString(out.String())
	raw, err := journal.NewStore(c.Client).Get(ctx, id)
	if err != nil {
		t.Fatalf("the journal of %q: %v\n%s", id, err, out.String())
	}
	if raw.Status != journal.Succeeded || raw.Runs != kills+1 {
		t.Errorf("journal %s: %s after %d runs, want Succeeded after %d", id, raw.Status, raw.Runs, kills+1)
	}
	// The first backup wins: the one the first run took of the operator's
	// configuration is the configuration before the migration.
	saved := backupOf(t, c, id, "clear-migration")
	if b, _ := json.Marshal(saved["spec"]); string(b) != before["networks.operator.openshift.io/cluster"] {
		t.Errorf("backup of clear-migration:\n%s\nwant the configuration before the migration:\n%s", b, before["networks.operator.openshift.io/cluster"])
	}
	nodes, _ := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable {
			t.Errorf("node %s left cordoned", n.Name)
		}
	}
	if h, err := lock.Current(ctx, c.Client); err != nil || h != nil {
		t.Errorf("lock still held: %v %v", h, err)
	}
	t.Logf("%d kills, %d runs", kills, raw.Runs)
	return id, before
}

// rollbackFromEnd walks a finished offline migration back through the
// CLI: the network type change is undone by the documented offline
// rollback (pools paused, every node rebooted, pools resumed), every other
// step by its derived inverse, newest first.
func rollbackFromEnd(t *testing.T, c operation.Cluster, dyn dynamic.Interface, id string, before map[string]string) {
	ctx := context.Background()
	if id == "" {
		t.Fatal("no finished offline migration to roll back")
	}
	stop := make(chan struct{})
	boots := make(chan map[string]int)
	most := make(chan int)
	go func() { boots <- bootChanges(c, stop) }()
	go func() { most <- mastersDownAtOnce(c, stop) }()
	cmd := exec.Command(os.Args[0], "--kubeconfig", env.Kubeconfig(t), "migrate", "rollback", id, "--yes")
	cmd.Env = append(os.Environ(), envRunCLI+"=1")
	out, err := cmd.CombinedOutput()
	close(stop)
	if err != nil {
		t.Fatalf("hitless migrate rollback %s: %v\n%s", id, err, out)
	}
	t.Logf("%s", out)
	if m := <-most; m > 1 {
		t.Errorf("%d masters were NotReady at once", m)
	}
	for node, n := range <-boots {
		if n < 1 {
			t.Errorf("node %s did not reboot during the rollback", node)
		}
	}
	if got := networkType(t, dyn); got != openshift.OpenShiftSDN {
		t.Errorf("status.networkType %q after the rollback", got)
	}
	waitPools(t, dyn)
	compareSpecs(t, before, specs(t, dyn))
	poolsResumed(t, dyn)
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "openshift-sdn", metav1.GetOptions{}); err != nil {
		t.Errorf("namespace openshift-sdn: %v", err)
	}
	nodes, _ := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable {
			t.Errorf("node %s left cordoned", n.Name)
		}
	}
	if raw, err := journal.NewStore(c.Client).Get(ctx, id); err != nil {
		t.Error(err)
	} else if raw.Status != journal.Aborted {
		t.Errorf("journal %s after the rollback: %s, want Aborted", id, raw.Status)
	}
	for _, want := range []string{"rollback-delete-sdn-namespace", "rollback-network-type", "rollback-clear-migration"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the rollback's output names no step %s", want)
		}
	}
}

// bootChanges polls the nodes until stop and counts each node's boot ID
// changes.
func bootChanges(c operation.Cluster, stop chan struct{}) map[string]int {
	last, changes := map[string]string{}, map[string]int{}
	for {
		l, err := c.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		if err == nil {
			for _, n := range l.Items {
				id := n.Status.NodeInfo.BootID
				if prev, ok := last[n.Name]; ok && prev != id {
					changes[n.Name]++
				}
				last[n.Name] = id
				if _, ok := changes[n.Name]; !ok {
					changes[n.Name] = 0
				}
			}
		}
		select {
		case <-stop:
			return changes
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// backupOf reads the object a step of migration id backed up.
func backupOf(t *testing.T, c operation.Cluster, id, step string) map[string]any {
	t.Helper()
	sec, err := c.Client.CoreV1().Secrets("hitless-system").Get(context.Background(), "hitless-mbak-"+id, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var all map[string][]map[string]any
	if err := store.Unpack(sec.Data["backup"], &all); err != nil {
		t.Fatal(err)
	}
	if len(all[step]) != 1 {
		t.Fatalf("backup of step %s holds %d objects", step, len(all[step]))
	}
	return all[step][0]
}

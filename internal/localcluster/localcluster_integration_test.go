package localcluster_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/cli/app"
	knode "github.com/hitless-dev/hitless/internal/kube/node"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/binaries"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

func hitless(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := app.Run(context.Background(), "hitless", args, genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	return code, out.String(), errOut.String()
}

// TestFiftyNodesDrainAndDown is the foundation's acceptance test: 50 Ready
// nodes, a 200-replica Deployment Available, kubectl drain through a PDB
// with pods waiting out their grace period, and nothing left after down.
func TestFiftyNodesDrainAndDown(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a local cluster")
	}
	home := t.TempDir()
	t.Setenv(localcluster.EnvHome, home)
	const name = "fifty"
	ctx := context.Background()

	code, stdout, stderr := hitless(t, "cluster", "up", "--name", name, "--nodes", "50", "--node-labels", "pool=blue")
	t.Cleanup(func() { _ = localcluster.Down(context.Background(), home, name) })
	if code != 0 {
		t.Fatalf("cluster up: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	c, err := localcluster.Get(home, name)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("components listen on loopback only", func(t *testing.T) {
		for _, p := range c.Processes {
			addrs, err := listeningSockets(p.PID)
			if err != nil {
				t.Fatalf("%s: %v", p.Name, err)
			}
			if len(addrs) == 0 {
				t.Errorf("%s (pid %d) listens on nothing", p.Name, p.PID)
			}
			for _, a := range addrs {
				if host, _, _ := net.SplitHostPort(a); host != "127.0.0.1" {
					t.Errorf("%s listens on %s, want 127.0.0.1 only", p.Name, a)
				}
			}
		}
	})

	t.Run("a second named cluster runs side by side", func(t *testing.T) {
		code, stdout, stderr := hitless(t, "cluster", "up", "--name", "beside", "--nodes", "1")
		if code != 0 {
			t.Fatalf("cluster up --name beside: exit %d\n%s%s", code, stdout, stderr)
		}
		t.Cleanup(func() { _ = localcluster.Down(context.Background(), home, "beside") })
		other, err := localcluster.Get(home, "beside")
		if err != nil {
			t.Fatal(err)
		}
		if other.Server == c.Server || other.Kubeconfig == c.Kubeconfig {
			t.Errorf("clusters share server %s or kubeconfig %s", other.Server, other.Kubeconfig)
		}
		code, out, _ := hitless(t, "cluster", "list", "-o", "json")
		if code != 0 || strings.Count(out, `"status": "Running"`) != 2 {
			t.Errorf("cluster list should show both Running:\n%s", out)
		}
		code, out, _ = hitless(t, "cluster", "kubeconfig", "--name", "beside")
		if code != 0 || strings.TrimSpace(out) != other.Kubeconfig {
			t.Errorf("cluster kubeconfig --name beside = %q (exit %d), want %s", out, code, other.Kubeconfig)
		}
		if code, _, stderr := hitless(t, "cluster", "down", "--name", "beside"); code != 0 {
			t.Fatalf("down beside: %s", stderr)
		}
		if !c.Running() {
			t.Error("taking down one cluster stopped the other")
		}
	})

	cs, _, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("50 Ready workers that look like kubelet-registered nodes", func(t *testing.T) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		workers, zones := 0, map[string]bool{}
		for _, n := range nodes.Items {
			if !knode.Ready(&n) {
				t.Errorf("node %s not Ready", n.Name)
			}
			if _, ok := n.Labels[localcluster.LabelWorker]; !ok {
				if _, cp := n.Labels[localcluster.LabelControlPlane]; !cp {
					t.Errorf("node %s has neither role label", n.Name)
				}
				continue
			}
			workers++
			zones[n.Labels[localcluster.LabelZone]] = true
			for _, k := range []string{corev1.LabelHostname, corev1.LabelOSStable, corev1.LabelArchStable, localcluster.LabelZone} {
				if n.Labels[k] == "" {
					t.Errorf("node %s lacks label %s", n.Name, k)
				}
			}
			if n.Labels["pool"] != "blue" {
				t.Errorf("node %s: --node-labels pool=blue not applied: %v", n.Name, n.Labels)
			}
			if got := n.Status.Capacity.Cpu().String(); got != "4" {
				t.Errorf("node %s capacity cpu = %s, want 4", n.Name, got)
			}
			if got := n.Status.Capacity.Pods().Value(); got != 110 {
				t.Errorf("node %s capacity pods = %d, want 110", n.Name, got)
			}
			if n.Status.NodeInfo.KernelVersion == "" || n.Status.NodeInfo.OSImage == "" {
				t.Errorf("node %s nodeInfo lacks kernel or OS image: %+v", n.Name, n.Status.NodeInfo)
			}
			internal := ""
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					internal = a.Address
				}
			}
			if net.ParseIP(internal) == nil {
				t.Errorf("node %s has no InternalIP", n.Name)
			}
		}
		if workers != 50 {
			t.Errorf("%d workers, want 50", workers)
		}
		if len(zones) < 2 {
			t.Errorf("workers spread over zones %v, want several", zones)
		}
	})

	const ns, app = "default", "web"
	const grace = 3
	_, err = cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](200),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
				Spec: corev1.PodSpec{
					Containers:                    []corev1.Container{{Name: "web", Image: "registry.k8s.io/pause:3.10"}},
					TerminationGracePeriodSeconds: ptr.To[int64](grace),
				},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitAvailable(t, cs, ns, app, 200)
	_, err = cs.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: app},
		Spec: policyv1.PodDisruptionBudgetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			MaxUnavailable: ptr.To(intstr.FromInt32(1)),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, time.Minute, func() error {
		pdb, err := cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if pdb.Status.DisruptionsAllowed != 1 || pdb.Status.CurrentHealthy != 200 {
			return errors.New("PDB status not computed yet: " + strconv.Itoa(int(pdb.Status.DisruptionsAllowed)) + " allowed")
		}
		return nil
	})

	t.Run("kubectl drain evicts through the PDB and pods wait out their grace period", func(t *testing.T) {
		target, onNode := busiestNode(t, cs, ns)
		if len(onNode) < 2 {
			t.Fatalf("busiest node %s holds %d pods; the scheduler did not spread 200 pods", target, len(onNode))
		}
		gone := watchTermination(t, cs, ns)
		resolver, err := binaries.NewResolver(nil) // the cache, or HITLESS_BIN_DIR
		if err != nil {
			t.Fatal(err)
		}
		kubectl, err := resolver.Path(ctx, binaries.Kubectl)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", c.Kubeconfig, "drain", target, "--ignore-daemonsets", "--timeout=5m")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl drain %s: %v\n%s", target, err, out)
		}
		for _, p := range onNode {
			if !strings.Contains(string(out), "pod/"+p+" evicted") {
				t.Errorf("kubectl drain did not evict %s:\n%s", p, out)
			}
		}
		durations := gone(onNode)
		for _, p := range onNode {
			d, ok := durations[p]
			if !ok {
				t.Errorf("pod %s: no deletion observed", p)
				continue
			}
			// Terminating from the eviction until the grace period ends.
			if d < (grace*time.Second)-500*time.Millisecond {
				t.Errorf("pod %s was gone %s after its eviction, before its %ds grace period", p, d, grace)
			}
		}
		waitAvailable(t, cs, ns, app, 200)
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + target})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) != 0 {
			t.Errorf("%d pods still on drained node %s", len(pods.Items), target)
		}
	})

	t.Run("down leaves no process and no listening port", func(t *testing.T) {
		code, stdout, stderr := hitless(t, "cluster", "down", "--name", name)
		if code != 0 {
			t.Fatalf("cluster down: exit %d\n%s%s", code, stdout, stderr)
		}
		for _, p := range c.Processes {
			if b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/cmdline"); err == nil && strings.HasPrefix(string(b), p.Binary) {
				t.Errorf("%s (pid %d) still running after down", p.Name, p.PID)
			}
		}
		for comp, port := range c.Ports {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
			if err == nil {
				_ = conn.Close()
				t.Errorf("port %d of %s still accepts connections after down", port, comp)
			}
		}
		if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
			t.Errorf("state %s still exists after down (err %v)", c.Dir, err)
		}
		if code, out, _ := hitless(t, "cluster", "list", "-o", "json"); code != 0 || strings.Contains(out, name) {
			t.Errorf("cluster list after down: exit %d, %s", code, out)
		}
	})
}

func waitAvailable(t *testing.T, cs kubernetes.Interface, ns, name string, want int32) {
	t.Helper()
	clustertest.Eventually(t, 3*time.Minute, func() error {
		d, err := cs.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.AvailableReplicas != want || d.Status.UpdatedReplicas != want || d.Status.Replicas != want {
			return errors.New("deployment " + name + ": " + strconv.Itoa(int(d.Status.AvailableReplicas)) + " of " + strconv.Itoa(int(want)) + " available")
		}
		return nil
	})
}

func busiestNode(t *testing.T, cs kubernetes.Interface, ns string) (string, []string) {
	t.Helper()
	pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byNode := map[string][]string{}
	for _, p := range pods.Items {
		byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p.Name)
	}
	best := ""
	for n, ps := range byNode {
		if best == "" || len(ps) > len(byNode[best]) {
			best = n
		}
	}
	return best, byNode[best]
}

// watchTermination records, per pod, the time from its first Terminating
// update to its removal. The returned func stops the watch and reports.
func watchTermination(t *testing.T, cs kubernetes.Interface, ns string) func(want []string) map[string]time.Duration {
	t.Helper()
	w, err := cs.CoreV1().Pods(ns).Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	started := map[string]time.Time{}
	took := map[string]time.Duration{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			mu.Lock()
			if _, seen := started[p.Name]; !seen && p.DeletionTimestamp != nil {
				started[p.Name] = time.Now()
			}
			if ev.Type == watch.Deleted {
				if s, ok := started[p.Name]; ok {
					took[p.Name] = time.Since(s)
				}
			}
			mu.Unlock()
		}
	}()
	return func(want []string) map[string]time.Duration {
		// The watch may deliver the last removals just after kubectl returns.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			n := 0
			for _, p := range want {
				if _, ok := took[p]; ok {
					n++
				}
			}
			mu.Unlock()
			if n == len(want) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		w.Stop()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return took
	}
}

package kubelet_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
	"github.com/hitless-dev/hitless/internal/localcluster/kubelet"
	"github.com/hitless-dev/hitless/internal/localcluster/lab"
)

// labUIDs are the UIDs of the pods the lab kubelet runs.
func labUIDs(t *testing.T, cfgPods []corev1.Pod) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, p := range cfgPods {
		for _, c := range p.Status.Conditions {
			if c.Type == kubelet.ConditionLabKubelet {
				out[string(p.UID)] = true
			}
		}
	}
	return out
}

// daemons lists the processes (pid: pod UID) that carry the lab
// kubelet's mark of one of uids.
func daemons(uids map[string]bool) map[int]string {
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := strings.CutPrefix(string(kv), kubelet.EnvPod+"="); ok && uids[v] {
				out[pid] = v
			}
		}
	}
	return out
}

// Killing the lab kubelet (SIGKILL, no chance to clean up) leaves no
// daemon running: each dies with it. Started again, it runs the pods
// again, and kube-router's routes come back.
func TestKilledKubeletLeavesNoDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local cluster (skipped under -short)")
	}
	ctx := context.Background()
	cs := env.Client(t)
	c := env.Cluster(t)
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	uids := labUIDs(t, pods.Items)
	before := daemons(uids)
	if len(before) == 0 {
		t.Fatal("no lab daemon runs: the test has nothing to kill (did TestKubeRouter run?)")
	}
	kubeletPID := 0
	for _, p := range c.Processes {
		if p.Name == "lab-kubelet" {
			kubeletPID = p.PID
		}
	}
	if err := syscall.Kill(kubeletPID, syscall.SIGKILL); err != nil {
		t.Fatalf("killing the lab kubelet (pid %d): %v", kubeletPID, err)
	}
	var left map[int]string
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		left = daemons(uids)
		return len(left) == 0, nil
	})
	if err != nil {
		t.Fatalf("%d of %d daemons still run 5 s after the lab kubelet was killed: %v", len(left), len(before), left)
	}
	t.Logf("%d daemons ended with the lab kubelet", len(before))

	env.Restart(t, "lab-kubelet")
	// Every pod runs again: Ready, from a new process.
	old := containerIDs(pods.Items)
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		now, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // retried
		}
		for i := range now.Items {
			p := &now.Items[i]
			if id, ok := old[p.UID]; ok && (containerIDs([]corev1.Pod{*p})[p.UID] == id || !clustertest.PodReady(p)) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("after a restart of the lab kubelet, its pods do not all run again: %v", err)
	}
	env.WaitAgentPods(t)
}

// containerIDs maps the lab kubelet's pods to their first container's ID.
func containerIDs(pods []corev1.Pod) map[types.UID]string {
	out := map[types.UID]string{}
	for _, p := range pods {
		if len(p.Status.ContainerStatuses) > 0 && strings.HasPrefix(p.Status.ContainerStatuses[0].ContainerID, "lab://") {
			out[p.UID] = p.Status.ContainerStatuses[0].ContainerID
		}
	}
	return out
}

// cluster down leaves nothing of a lab with a real data plane: no
// process, no network namespace (the nodes' and the pods'), no mount, no
// nftables table, no bridge, no state.
func TestDownLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local cluster (skipped under -short)")
	}
	ctx := context.Background()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	hostTables := nftTables(t)
	home := t.TempDir()
	name := fmt.Sprintf("d%d", os.Getpid())
	c, err := localcluster.Up(ctx, localcluster.Options{Name: name, Nodes: 1, ControlPlaneNodes: 1, Home: home, Attached: true,
		Lab: localcluster.LabCNI, KubeletBinary: self, LabImages: []kubelet.Image{clustertest.HitlessImage(self)}})
	if err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := app.Run(ctx, "hitless", append([]string{"--kubeconfig", c.Kubeconfig}, args...),
			genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
		if code != 0 {
			_ = localcluster.Down(ctx, home, name)
			t.Fatalf("hitless %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
		}
	}
	cli("install", "-f", kubeRouterManifest(t, "v2.1.0"), "--name", "kube-router")
	cs, _, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	var uids map[string]bool
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods("hitless-system").List(ctx, metav1.ListOptions{})
		if err != nil || len(pods.Items) == 0 {
			return false, nil //nolint:nilerr // retried
		}
		for i := range pods.Items {
			if !clustertest.PodReady(&pods.Items[i]) {
				return false, nil
			}
		}
		all, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // retried
		}
		uids = labUIDs(t, all.Items)
		return true, nil
	})
	if err != nil {
		_ = localcluster.Down(ctx, home, name)
		t.Fatalf("the agents on the pod network: %v", err)
	}
	if n := len(daemons(uids)); n == 0 || len(netnsOf(name)) < 2 {
		_ = localcluster.Down(ctx, home, name)
		t.Fatalf("before down: %d daemons, namespaces %v: nothing to clean up", n, netnsOf(name))
	}

	if err := localcluster.Down(ctx, home, name); err != nil {
		t.Fatal(err)
	}
	if left := daemons(uids); len(left) > 0 {
		t.Errorf("daemons still run: %v", left)
	}
	if left := netnsOf(name); len(left) > 0 {
		t.Errorf("network namespaces left: %v", left)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), c.Dir) {
		t.Errorf("mounts under %s left:\n%s", c.Dir, mounts)
	}
	if after := nftTables(t); after != hostTables {
		t.Errorf("the host's nftables tables changed: before %q, after %q", hostTables, after)
	}
	if _, err := netlink.LinkByName(c.Lab.Bridge); err == nil {
		t.Errorf("bridge %s left", c.Lab.Bridge)
	}
	if _, err := os.Stat(c.Dir); err == nil {
		t.Errorf("state %s left", c.Dir)
	}
}

// netnsOf lists the network namespaces of cluster name's lab: its nodes'
// and its pods'.
func netnsOf(name string) []string {
	var out []string
	for _, prefix := range []string{"hitless-" + name + "-", lab.PodNamespacePrefix(name), lab.SwitchNamespace(name)} {
		m, _ := filepath.Glob(filepath.Join(lab.NetNSDir, prefix+"*"))
		out = append(out, m...)
	}
	return out
}

// nftTables lists the host's nftables tables.
func nftTables(t *testing.T) string {
	t.Helper()
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := conn.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tb := range tables {
		names = append(names, fmt.Sprintf("%d/%s", tb.Family, tb.Name))
	}
	return strings.Join(names, " ")
}

package clustertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	knode "github.com/hitless-dev/hitless/internal/kube/node"
	"github.com/hitless-dev/hitless/internal/localcluster"
	"github.com/hitless-dev/hitless/internal/localcluster/kubelet"
)

// Options shape the package's cluster.
type Options struct {
	// Workers is the number of worker nodes (default 3).
	Workers int
	// ControlPlanes is the number of control-plane nodes (default 1).
	ControlPlanes int
	// NodeLabels are added to every worker.
	NodeLabels map[string]string
	// Lab "netns" gives every worker a network namespace (the lab);
	// tests run the agents in it themselves. Lab "cni" runs the lab
	// kubelet too (real daemons for the images it knows, agents as pods
	// on the pod network): the test binary is the hitless binary it runs,
	// so the package's TestMain must hand over to the CLI when EnvRunCLI
	// is "1".
	Lab string
	// QuickTermination ends a deleted pod at once instead of after its
	// grace period: for tests about objects, not timing.
	QuickTermination bool
}

// HitlessImage makes the test binary self hitless's image for a lab
// kubelet: its pods (the agents) run it as the CLI.
func HitlessImage(self string) kubelet.Image {
	return kubelet.Image{Repository: kubelet.Repository(localcluster.ProbeImage), Binary: self,
		Entrypoint: "/usr/local/bin/hitless", Env: []string{EnvRunCLI + "=1"}}
}

// EnvRunCLI makes a test binary act as the hitless CLI when it is "1"
// (its TestMain calls app.Main), so that a cluster's processes can run it.
const EnvRunCLI = "HITLESS_TEST_RUN_CLI"

// Env is one test package's cluster.
type Env struct {
	opts    Options
	skip    bool
	err     error
	cluster *localcluster.Cluster
	client  *kubernetes.Clientset
	config  *rest.Config

	mu        sync.Mutex
	nextIndex int
}

// New returns an environment that Run starts.
func New(opts Options) *Env {
	if opts.Workers == 0 {
		opts.Workers = 3
	}
	if opts.ControlPlanes == 0 {
		opts.ControlPlanes = 1
	}
	return &Env{opts: opts}
}

// Run starts the cluster (unless -short), runs the tests, stops the
// cluster and returns the exit code for os.Exit.
func (e *Env) Run(m *testing.M) int {
	ctrllog.SetLogger(klog.NewKlogr())
	flag.Parse()
	if testing.Short() {
		e.skip = true
		return m.Run()
	}
	home, err := os.MkdirTemp("", "hitless-test-")
	if err != nil {
		_, _ = fmt.Fprintf(os.Stderr, "clustertest: %v\n", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(home) }()
	ctx := context.Background()
	var progress io.Writer
	if testing.Verbose() {
		progress = os.Stderr
	}
	name := fmt.Sprintf("t%d", os.Getpid())
	self := ""
	if e.opts.Lab == localcluster.LabCNI {
		if self, err = os.Executable(); err != nil {
			_, _ = fmt.Fprintf(os.Stderr, "clustertest: %v\n", err)
			return 1
		}
		// The cluster's processes inherit hitless's own variables.
		_ = os.Setenv(EnvRunCLI, "1")
	}
	var images []kubelet.Image
	if self != "" {
		images = append(images, HitlessImage(self))
	}
	c, err := localcluster.Up(ctx, localcluster.Options{
		KubeletBinary:     self,
		LabImages:         images,
		Name:              name,
		Nodes:             e.opts.Workers,
		ControlPlaneNodes: e.opts.ControlPlanes,
		Lab:               e.opts.Lab,
		QuickTermination:  e.opts.QuickTermination,
		NodeLabels:        e.opts.NodeLabels,
		Home:              home,
		Attached:          true,
		Progress:          progress,
	})
	if err != nil {
		// Tests report the failure; a package whose cluster cannot start
		// must fail, not skip.
		e.err = err
		return m.Run()
	}
	e.cluster = c
	e.nextIndex = e.opts.Workers + 1
	e.client, e.config, e.err = c.Client()
	code := m.Run()
	stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := localcluster.Down(stopCtx, home, name); err != nil {
		_, _ = fmt.Fprintf(os.Stderr, "clustertest: stopping cluster: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func (e *Env) ready(t testing.TB) {
	t.Helper()
	if e.skip {
		t.Skip("integration test: needs the local cluster (skipped under -short)")
	}
	if e.err != nil {
		t.Fatalf("local cluster: %v", e.err)
	}
	if e.cluster == nil {
		t.Fatal("clustertest: TestMain must call env.Run(m)")
	}
}

// Cluster returns the running local cluster.
func (e *Env) Cluster(t testing.TB) *localcluster.Cluster {
	e.ready(t)
	return e.cluster
}

// Client returns a clientset for the cluster.
func (e *Env) Client(t testing.TB) *kubernetes.Clientset {
	e.ready(t)
	return e.client
}

// Config returns the REST config of the cluster.
func (e *Env) Config(t testing.TB) *rest.Config {
	e.ready(t)
	return rest.CopyConfig(e.config)
}

// Restart restarts one component of the cluster (kube-apiserver, etcd, ...)
// and waits until it is healthy again.
func (e *Env) Restart(t testing.TB, component string) {
	e.ready(t)
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.cluster.Restart(ctx, component); err != nil {
		t.Fatalf("restarting %s: %v", component, err)
	}
}

// Kubeconfig returns the path of the cluster's kubeconfig.
func (e *Env) Kubeconfig(t testing.TB) string {
	e.ready(t)
	return e.cluster.Kubeconfig
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a namespace named after the test and deletes it when
// the test ends.
func (e *Env) Namespace(t testing.TB) string {
	e.ready(t)
	t.Helper()
	base := strings.Trim(unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 40 {
		base = base[:40]
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	name := strings.Trim(base, "-") + "-" + hex.EncodeToString(suffix)
	ctx := context.Background()
	_, err := e.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	// Pods need the namespace's default ServiceAccount.
	Eventually(t, 30*time.Second, func() error {
		_, err := e.client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	t.Cleanup(func() {
		_ = e.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// AddNodes creates n more worker nodes with the given labels and waits
// until they are Ready. It returns their names; they are deleted when the
// test ends.
func (e *Env) AddNodes(t testing.TB, n int, labels map[string]string) []string {
	t.Helper()
	return e.AddNodesWithCapacity(t, n, labels, nil)
}

// AddNodesWithCapacity is AddNodes with the nodes' capacity (and
// allocatable) set to capacity instead of the default.
func (e *Env) AddNodesWithCapacity(t testing.TB, n int, labels map[string]string, capacity corev1.ResourceList) []string {
	e.ready(t)
	t.Helper()
	e.mu.Lock()
	first := e.nextIndex
	e.nextIndex += n
	e.mu.Unlock()
	specs := make([]localcluster.NodeSpec, n)
	names := make([]string, n)
	for i := range n {
		names[i] = localcluster.WorkerName(e.cluster.Name, first+i)
		specs[i] = localcluster.NodeSpec{Name: names[i], Index: first + i, Labels: labels, Capacity: capacity}
	}
	ctx := context.Background()
	if err := localcluster.CreateNodes(ctx, e.client, specs); err != nil {
		t.Fatalf("adding nodes: %v", err)
	}
	t.Cleanup(func() {
		for _, name := range names {
			_ = e.client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
		}
	})
	Eventually(t, time.Minute, func() error {
		for _, name := range names {
			node, err := e.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !knode.Ready(node) {
				return fmt.Errorf("node %s not Ready", name)
			}
		}
		return nil
	})
	return names
}

// Eventually polls f every 100ms until it returns nil, failing the test
// with f's last error after timeout.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// CountingConfig returns a copy of the cluster's config (QPS 100, burst
// 200, as the commands use) whose every request is counted, and the count.
func (e *Env) CountingConfig(t testing.TB) (*rest.Config, *atomic.Int64) {
	cfg := rest.CopyConfig(e.Config(t))
	cfg.QPS, cfg.Burst = 100, 200
	n := &atomic.Int64{}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{next: rt, n: n} })
	return cfg, n
}

// NodeNames returns the names of every node of the cluster.
func (e *Env) NodeNames(t testing.TB) []string {
	e.ready(t)
	t.Helper()
	nodes, err := e.client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(nodes.Items))
	for _, n := range nodes.Items {
		out = append(out, n.Name)
	}
	return out
}

package localcluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	knode "github.com/hitless-dev/hitless/internal/kube/node"
	"github.com/hitless-dev/hitless/internal/localcluster/binaries"
	"github.com/hitless-dev/hitless/internal/localcluster/kubelet"
)

// Up starts a new local cluster and returns when every node is Ready and
// pods can be created. On failure it stops what it started, removes the
// state and returns the failing component's log tail.
func Up(ctx context.Context, opts Options) (*Cluster, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	home := opts.Home
	if home == "" {
		h, err := Home()
		if err != nil {
			return nil, err
		}
		home = h
	}
	dir := filepath.Join(home, "clusters", opts.Name)
	if old, err := Get(home, opts.Name); err == nil {
		if old.Running() {
			return nil, fmt.Errorf("cluster %q (kubeconfig %s): %w; run `hitless cluster down --name %s` first or choose another --name", opts.Name, old.Kubeconfig, ErrExists, opts.Name)
		}
		// A cluster whose processes died (a reboot, a crash) is replaced.
		klog.V(1).InfoS("replacing stopped local cluster", "cluster", opts.Name)
		if err := old.teardown(ctx); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	res := opts.Binaries
	if res == nil {
		r, err := binaries.NewResolver(opts.Progress)
		if err != nil {
			return nil, err
		}
		res = r
	}
	bins, err := res.All(ctx)
	if err != nil {
		return nil, err
	}
	progress := func(format string, args ...any) {
		if opts.Progress != nil {
			_, _ = fmt.Fprintf(opts.Progress, format+"\n", args...)
		}
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	c := &Cluster{Name: opts.Name, Dir: dir, Created: time.Now().UTC(), Workers: opts.Nodes, Controls: opts.ControlPlaneNodes, Attached: opts.Attached}
	ok := false
	defer func() {
		if !ok {
			// Never leave half a cluster behind. A fresh context: the
			// caller's may be the reason we are failing.
			cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := c.teardown(cleanup); err != nil {
				klog.ErrorS(err, "cleaning up a failed cluster", "cluster", c.Name)
			}
		}
	}()
	if err := c.save(); err != nil {
		return nil, err
	}
	if !opts.Attached {
		// The cluster outlives this command, and the hitless binary it
		// runs (its lab kubelet and containers, agents, simulator) may
		// not: `go run` deletes its build when it exits.
		for _, b := range []*string{&opts.KubeletBinary, &opts.AgentBinary, &opts.SimulatorBinary} {
			if *b == "" {
				continue
			}
			if *b, err = keepBinary(dir, *b); err != nil {
				return nil, err
			}
		}
	}
	p, err := freePorts()
	if err != nil {
		return nil, err
	}
	var kl *kubelet.Config
	var images kubelet.Images
	if opts.Lab == LabCNI {
		if opts.KubeletBinary == "" {
			return nil, &InvalidError{Field: "--dataplane", Msg: "cni needs the hitless binary for its lab kubelet"}
		}
		if kl, err = labKubelet(ctx, res, opts); err != nil {
			return nil, err
		}
		images = kl.Images
	}
	f, err := writeFiles(dir, opts.Name, p, opts.QuickTermination, images)
	if err != nil {
		return nil, err
	}
	c.Kubeconfig = f.Kubeconfig
	c.AuditLog = f.AuditLog
	c.Ports = map[string]int{
		"etcd-client": p.EtcdClient, "etcd-peer": p.EtcdPeer, "kube-apiserver": p.APIServer,
		"kube-controller-manager": p.ControllerManager, "kube-scheduler": p.Scheduler, "kwok": p.Kwok,
	}
	c.Server = "https://" + net.JoinHostPort(loopback, strconv.Itoa(p.APIServer))

	progress("starting control plane of %q (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) on %s", opts.Name, loopback)
	cfg, err := clientcmd.BuildConfigFromFlags("", f.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", f.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	for _, comp := range components(bins, p, f) {
		proc, err := start(dir, comp.name, comp.binary, comp.args, opts.Attached)
		if err != nil {
			return nil, err
		}
		c.Processes = append(c.Processes, proc)
		if err := c.save(); err != nil {
			return nil, err
		}
		if err := waitHealthy(ctx, comp.name, proc, p, cfg); err != nil {
			return nil, err
		}
	}

	specs := make([]NodeSpec, 0, opts.Nodes+opts.ControlPlaneNodes)
	for i := 1; i <= opts.ControlPlaneNodes; i++ {
		specs = append(specs, NodeSpec{Name: ControlPlaneName(opts.Name, i), ControlPlane: true, Index: len(specs)})
	}
	for i := 1; i <= opts.Nodes; i++ {
		specs = append(specs, NodeSpec{Name: WorkerName(opts.Name, i), Index: len(specs), Labels: opts.NodeLabels})
	}
	progress("creating %d control-plane and %d worker nodes", opts.ControlPlaneNodes, opts.Nodes)
	if err := CreateNodes(ctx, cs, specs); err != nil {
		return nil, err
	}
	if err := WaitNodesReady(ctx, cs, len(specs)); err != nil {
		return nil, c.withLogs(err)
	}
	if err := waitDefaultServiceAccount(ctx, cs); err != nil {
		return nil, c.withLogs(err)
	}
	if opts.Lab != LabNone {
		progress("creating the netns data plane: a namespace, address and agent per node")
		if err := c.startLab(ctx, cs, specs, opts, kl); err != nil {
			return nil, c.withLogs(err)
		}
	}
	if opts.Flavor == FlavorOpenShift {
		progress("making it an OpenShift SDN cluster: OpenShift CRDs, network and machine-config objects, the operators' simulator")
		if err := c.startOpenShift(ctx, opts); err != nil {
			return nil, c.withLogs(err)
		}
	}
	if err := c.save(); err != nil {
		return nil, err
	}
	ok = true
	progress("cluster %q is ready: %d nodes; kubeconfig %s", opts.Name, len(specs), f.Kubeconfig)
	return c, nil
}

// Client returns a clientset for the cluster with a high rate limit.
func (c *Cluster) Client() (*kubernetes.Clientset, *rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("loading kubeconfig %s: %w", c.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("creating client for cluster %q: %w", c.Name, err)
	}
	return cs, cfg, nil
}

func (c *Cluster) withLogs(err error) error {
	var b strings.Builder
	for _, p := range c.Processes {
		if !alive(p) {
			fmt.Fprintf(&b, "\n%s exited; last lines of %s:\n%s", p.Name, p.Log, logTail(p, 20))
		}
	}
	if b.Len() == 0 {
		return err
	}
	return fmt.Errorf("%w%s", err, b.String())
}

// waitHealthy waits until a component answers its health endpoint, failing
// fast if the process exits.
func waitHealthy(ctx context.Context, name string, proc Process, p ports, cfg *rest.Config) error {
	insecure := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // health probe of our own loopback component
	}}
	var check func() error
	switch name {
	case "etcd":
		check = func() error {
			return get(ctx, insecure, fmt.Sprintf("http://%s:%d/health", loopback, p.EtcdClient), `"health":"true"`)
		}
	case "kube-apiserver":
		client, err := rest.HTTPClientFor(cfg)
		if err != nil {
			return fmt.Errorf("creating API client: %w", err)
		}
		client.Timeout = 2 * time.Second
		check = func() error { return get(ctx, client, cfg.Host+"/readyz", "ok") }
	case "kube-controller-manager":
		check = func() error {
			return get(ctx, insecure, fmt.Sprintf("https://%s:%d/healthz", loopback, p.ControllerManager), "ok")
		}
	case "kube-scheduler":
		check = func() error {
			return get(ctx, insecure, fmt.Sprintf("https://%s:%d/healthz", loopback, p.Scheduler), "ok")
		}
	case "kwok":
		check = func() error { return get(ctx, insecure, fmt.Sprintf("http://%s:%d/healthz", loopback, p.Kwok), "ok") }
	default:
		return nil
	}
	deadline := time.Now().Add(2 * time.Minute)
	var last error
	for {
		if !alive(proc) {
			return fmt.Errorf("%s exited during startup; last lines of %s:\n%s", name, proc.Log, logTail(proc, 25))
		}
		if last = check(); last == nil {
			klog.V(2).InfoS("component healthy", "component", name)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after 2m: %w; last lines of %s:\n%s", name, last, proc.Log, logTail(proc, 25))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func get(ctx context.Context, c *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// WaitNodesReady waits until at least want nodes exist and all are Ready.
func WaitNodesReady(ctx context.Context, cs kubernetes.Interface, want int) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		ready, total := 0, 0
		if err == nil {
			total = len(nodes.Items)
			for _, n := range nodes.Items {
				if knode.Ready(&n) {
					ready++
				}
			}
			if len(nodes.Items) >= want && ready == len(nodes.Items) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("waiting for %d nodes Ready: %w", want, err)
			}
			return fmt.Errorf("waiting for %d nodes Ready: %d of %d Ready after 5m", want, ready, total)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d nodes Ready: %w", want, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitDefaultServiceAccount waits for the controller-manager to create the
// default ServiceAccount; until then the API refuses new pods.
func waitDefaultServiceAccount(ctx context.Context, cs kubernetes.Interface) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) || time.Now().After(deadline) {
			return fmt.Errorf("waiting for the default ServiceAccount: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the default ServiceAccount: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Restart stops one component (SIGTERM, then SIGKILL) and starts it again
// with the same arguments, waiting until it is healthy: how tests take the
// API server away in the middle of an operation.
func (c *Cluster) Restart(ctx context.Context, component string) error {
	i := -1
	for j, p := range c.Processes {
		if p.Name == component {
			i = j
		}
	}
	if i < 0 {
		return fmt.Errorf("cluster %q has no component %q", c.Name, component)
	}
	old := c.Processes[i]
	if err := stop(ctx, old, 10*time.Second); err != nil {
		return err
	}
	proc, err := start(c.Dir, old.Name, old.Binary, old.Args, c.Attached)
	if err != nil {
		return err
	}
	c.Processes[i] = proc
	if err := c.save(); err != nil {
		return err
	}
	_, cfg, err := c.Client()
	if err != nil {
		return err
	}
	p := ports{
		EtcdClient: c.Ports["etcd-client"], EtcdPeer: c.Ports["etcd-peer"], APIServer: c.Ports["kube-apiserver"],
		ControllerManager: c.Ports["kube-controller-manager"], Scheduler: c.Ports["kube-scheduler"], Kwok: c.Ports["kwok"],
	}
	return waitHealthy(ctx, component, proc, p, cfg)
}

// keepBinary gives the cluster its own copy of the binary at path (a hard
// link where it can), in its directory's bin, and returns that copy's path.
func keepBinary(dir, path string) (string, error) {
	bin := filepath.Join(dir, "bin")
	dst := filepath.Join(bin, filepath.Base(path))
	if path == dst {
		return dst, nil
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", bin, err)
	}
	tmp := dst + ".new"
	_ = os.Remove(tmp)
	if err := os.Link(path, tmp); err != nil { // another file system: copy
		b, err := os.ReadFile(path) //nolint:gosec // the hitless binary
		if err != nil {
			return "", fmt.Errorf("keeping %s for the cluster: %w", path, err)
		}
		if err := os.WriteFile(tmp, b, 0o755); err != nil { //nolint:gosec // a binary the cluster runs
			return "", fmt.Errorf("keeping %s for the cluster: %w", path, err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("keeping %s for the cluster: %w", path, err)
	}
	return dst, nil
}

package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/hitless-dev/hitless/internal/localcluster/lab"
)

// Config is what the lab kubelet serves.
type Config struct {
	// Dir holds the nodes' roots and the pods' files.
	Dir string   `json:"dir"`
	Lab *lab.Lab `json:"-"`
	// Images is what runs for which image.
	Images Images `json:"images"`
	// Self is the hitless binary, which enters containers.
	Self string `json:"-"`
	// Relay is the kubernetes Service's address (10.96.0.1:443), which
	// every node's namespace has as its own and forwards to Upstream, the
	// API server; daemons find it as KUBERNETES_SERVICE_HOST and PORT.
	Relay    string `json:"relay"`
	Upstream string `json:"upstream"`
	// CNIPlugins is a directory of CNI plugins every node's /opt/cni/bin
	// starts with, as a node image ships them.
	CNIPlugins string `json:"cniPlugins"`
}

// Kubelet runs the lab's known pods.
type Kubelet struct {
	cfg   Config
	cs    kubernetes.Interface
	nodes map[string]lab.Node

	mu      sync.Mutex
	workers map[types.UID]*worker
	wg      sync.WaitGroup
}

// Run serves until ctx ends, then stops every container it started (they
// also die with it if it is killed: each is tied to it by PDEATHSIG).
func Run(ctx context.Context, cs kubernetes.Interface, cfg Config) error {
	log := klog.FromContext(ctx)
	k := &Kubelet{cfg: cfg, cs: cs, nodes: map[string]lab.Node{}, workers: map[types.UID]*worker{}}
	for _, n := range cfg.Lab.Nodes {
		k.nodes[n.Name] = n
		if err := k.prepareNode(n); err != nil {
			return err
		}
	}
	if err := k.clearPods(); err != nil {
		return err
	}
	for _, n := range cfg.Lab.Nodes {
		stopRelay, err := relay(ctx, n, cfg.Relay, cfg.Upstream)
		if err != nil {
			return err
		}
		defer stopRelay()
	}

	f := informers.NewSharedInformerFactory(cs, 0)
	inf := f.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { k.observe(ctx, o) },
		UpdateFunc: func(_, o any) { k.observe(ctx, o) },
		DeleteFunc: func(o any) { k.forget(o) },
	})
	f.Start(ctx.Done())
	log.Info("lab kubelet serving", "nodes", len(k.nodes), "images", cfg.Images.Repositories(), "relay", cfg.Relay)
	<-ctx.Done()
	f.Shutdown()
	k.mu.Lock()
	for _, w := range k.workers {
		w.stop()
	}
	k.mu.Unlock()
	k.wg.Wait()
	return nil
}

// observe hands a pod of a lab node with known images to its worker.
func (k *Kubelet) observe(ctx context.Context, o any) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	node, ok := k.nodes[p.Spec.NodeName]
	if !ok || !k.cfg.Images.Runs(p) {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	w, ok := k.workers[p.UID]
	if !ok {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			return
		}
		w = newWorker(k, node, p)
		k.workers[p.UID] = w
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			w.run(ctx)
			k.mu.Lock()
			delete(k.workers, p.UID)
			k.mu.Unlock()
		}()
	}
	w.update(p)
}

// forget stops the containers of a pod whose object is gone (force
// deleted, or deleted after it finished) at once.
func (k *Kubelet) forget(o any) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if w, ok := k.workers[p.UID]; ok {
		w.gone()
	}
}

// nodeRoot is where a node's host directories live.
func (k *Kubelet) nodeRoot(node string) string { return filepath.Join(k.cfg.Dir, "nodes", node) }

// nodeDirs are the node directories every container on it sees, as a
// host's /run and CNI directories are seen by its pods that mount them.
func nodeDirs() []string { return []string{"/run", "/etc/cni/net.d", "/opt/cni/bin", "/var/lib/cni"} }

// prepareNode creates a node's directories and gives it the CNI plugins.
func (k *Kubelet) prepareNode(n lab.Node) error {
	root := k.nodeRoot(n.Name)
	for _, d := range nodeDirs() {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	if k.cfg.CNIPlugins == "" {
		return nil
	}
	entries, err := os.ReadDir(k.cfg.CNIPlugins)
	if err != nil {
		return fmt.Errorf("reading the CNI plugins: %w", err)
	}
	for _, e := range entries {
		dst := filepath.Join(root, "opt/cni/bin", e.Name())
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if err := copyFile(filepath.Join(k.cfg.CNIPlugins, e.Name()), dst, 0o755); err != nil {
			return fmt.Errorf("node %s: installing CNI plugin %s: %w", n.Name, e.Name(), err)
		}
	}
	return nil
}

// clearPods removes what an earlier lab kubelet left: its processes died
// with it, its pods' network namespaces did not.
func (k *Kubelet) clearPods() error {
	dir := filepath.Join(k.cfg.Dir, "pods")
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	for _, e := range entries {
		podDir := filepath.Join(dir, e.Name())
		killRecorded(podDir)
		removeNetNS(netnsName(k.cfg.Lab.Cluster, e.Name()))
		if err := os.RemoveAll(podDir); err != nil {
			return fmt.Errorf("clearing %s: %w", podDir, err)
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

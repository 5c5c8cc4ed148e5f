package kubelet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/localcluster/lab"
)

// worker runs one pod from its first sight to its deletion.
type worker struct {
	k    *Kubelet
	node lab.Node
	dir  string

	latest  chan *corev1.Pod // the newest object, replacing an unread one
	quit    chan struct{}    // the lab kubelet stops
	removed chan struct{}    // the object is gone
	once    sync.Once
	rmOnce  sync.Once

	mu         sync.Mutex
	pod        *corev1.Pod // as first seen; never replaced
	podIP      string
	netns      string // the pod's namespace; the node's on the host network
	started    time.Time
	init       []*container
	main       []*container
	problem    string // why the pod cannot run, when it cannot
	conditions map[corev1.PodConditionType]condition
	dirty      chan struct{}
}

func newWorker(k *Kubelet, node lab.Node, p *corev1.Pod) *worker {
	w := &worker{k: k, node: node, dir: filepath.Join(k.cfg.Dir, "pods", string(p.UID)),
		latest: make(chan *corev1.Pod, 1), quit: make(chan struct{}), removed: make(chan struct{}),
		pod: p.DeepCopy(), dirty: make(chan struct{}, 1)}
	for _, c := range p.Spec.InitContainers {
		w.init = append(w.init, &container{spec: c})
	}
	for _, c := range p.Spec.Containers {
		w.main = append(w.main, &container{spec: c})
	}
	return w
}

func (w *worker) update(p *corev1.Pod) {
	select {
	case <-w.latest:
	default:
	}
	w.latest <- p.DeepCopy()
}

func (w *worker) stop() { w.once.Do(func() { close(w.quit) }) }
func (w *worker) gone() { w.rmOnce.Do(func() { close(w.removed) }) }

func (w *worker) touch() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

// run starts the pod, keeps its status, and ends it when it is deleted.
func (w *worker) run(ctx context.Context) {
	log := klog.FromContext(ctx).WithValues("pod", klog.KObj(w.pod), "node", w.node.Name)
	ctx = klog.NewContext(ctx, log)
	if w.pod.DeletionTimestamp != nil {
		w.finish(ctx)
		return
	}
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		log.Error(err, "creating the pod's directory")
		return
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); w.start(runCtx) }()
	go w.reportLoop(runCtx)
	for {
		select {
		case p := <-w.latest:
			// w.pod stays the object first seen: its spec does not
			// change, and only a deletion matters here.
			if p.DeletionTimestamp == nil {
				continue
			}
			grace := time.Duration(ptr.Deref(p.DeletionGracePeriodSeconds, 30)) * time.Second
			log.V(1).Info("terminating", "grace", grace)
			cancel()
			<-done
			w.terminate(grace)
			w.finish(ctx)
			return
		case <-w.removed:
			cancel()
			<-done
			w.terminate(0)
			w.cleanup(ctx)
			return
		case <-w.quit:
			cancel()
			<-done
			w.terminate(0)
			w.cleanup(ctx)
			return
		}
	}
}

// start wires the pod, runs its init containers in order, then keeps its
// containers running.
func (w *worker) start(ctx context.Context) {
	log := klog.FromContext(ctx)
	var mounts map[string]string
	for {
		err := w.prepare(ctx, &mounts)
		if err == nil {
			break
		}
		w.setProblem(err.Error())
		log.V(1).Info("pod not started", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
	w.setProblem("")
	for _, c := range w.init {
		if !w.runInit(ctx, c, mounts) {
			return
		}
	}
	var wg sync.WaitGroup
	for _, c := range w.main {
		wg.Add(1)
		go func() { defer wg.Done(); w.supervise(ctx, c, mounts) }()
	}
	wg.Wait()
}

// prepare wires the pod's network and writes its volumes.
func (w *worker) prepare(ctx context.Context, mounts *map[string]string) error {
	if w.pod.Spec.HostNetwork {
		w.mu.Lock()
		w.podIP, w.netns = w.node.IP, w.node.Path()
		w.mu.Unlock()
	} else if w.netns == "" {
		ip, path, err := w.wire(ctx)
		if err != nil {
			return fmt.Errorf("network not ready: %w", err)
		}
		w.mu.Lock()
		w.podIP, w.netns = ip, path
		w.mu.Unlock()
		w.touch()
	}
	m, err := w.volumes(ctx, w.dir)
	if err != nil {
		return err
	}
	*mounts = m
	return nil
}

func (w *worker) setProblem(msg string) {
	w.mu.Lock()
	changed := w.problem != msg
	w.problem = msg
	w.mu.Unlock()
	if changed {
		w.touch()
	}
}

// backoff is the wait before a failed container's next start: 1 s,
// doubling, at most 20 s (a kubelet's is 10 s to 5 min; the lab's is
// shorter so that tests do not wait minutes).
func backoff(restarts int32) time.Duration {
	d := time.Second << min(restarts, 5)
	return min(d, 20*time.Second)
}

// runInit runs an init container until it succeeds.
func (w *worker) runInit(ctx context.Context, c *container, mounts map[string]string) bool {
	for {
		p, err := w.launch(ctx, c, mounts)
		if err == nil {
			select {
			case <-p.exited:
			case <-ctx.Done():
				return false
			}
			c.exit(p, p.code != 0 && w.pod.Spec.RestartPolicy != corev1.RestartPolicyNever)
			w.touch()
			if p.code == 0 {
				return true
			}
			if w.pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
				return false
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff(c.restarts)):
		}
	}
}

// supervise keeps a container running: restarted after it exits (with
// back-off) or when its liveness probe fails.
func (w *worker) supervise(ctx context.Context, c *container, mounts map[string]string) {
	for {
		p, err := w.launch(ctx, c, mounts)
		if err == nil {
			pctx, stopProbes := context.WithCancel(ctx)
			go w.probe(pctx, c, p)
			select {
			case <-p.exited:
			case <-ctx.Done():
			}
			stopProbes()
			if ctx.Err() != nil {
				return
			}
			c.exit(p, w.pod.Spec.RestartPolicy != corev1.RestartPolicyNever)
			w.touch()
		}
		if w.pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff(c.restarts)):
		}
	}
}

// launch starts one run of a container.
func (w *worker) launch(ctx context.Context, c *container, mounts map[string]string) (*process, error) {
	spec, err := w.containerSpec(ctx, c.spec, mounts)
	if err == nil {
		var p *process
		p, err = startProcess(w.k.cfg.Self, w.dir, c.spec.Name, spec)
		if err == nil {
			c.run(p)
			w.touch()
			return p, nil
		}
	}
	c.fail(err)
	w.touch()
	klog.FromContext(ctx).Error(err, "starting container", "container", c.spec.Name)
	return nil, err
}

// containerSpec is what `hitless cluster enter` runs for a container.
func (w *worker) containerSpec(ctx context.Context, c corev1.Container, mounts map[string]string) (Container, error) {
	img, ok := w.k.cfg.Images.Lookup(c.Image)
	if !ok {
		return Container{}, &configError{msg: "image " + c.Image + " is not in the lab's table"}
	}
	env, err := w.env(ctx, c)
	if err != nil {
		return Container{}, err
	}
	vars := map[string]string{}
	for _, e := range env {
		k, v, _ := cut(e)
		vars[k] = v
	}
	argv := append([]string{}, c.Command...)
	if len(argv) == 0 {
		argv = []string{img.Entrypoint}
	}
	argv = append(argv, c.Args...)
	for i := range argv {
		argv[i] = expand(argv[i], vars)
	}
	out := Container{NetNS: w.netns, Scratch: filepath.Join(w.dir, "root-"+c.Name), Argv: argv, Env: env, Dir: c.WorkingDir}
	root := w.k.nodeRoot(w.node.Name)
	for _, d := range nodeDirs() {
		out.Mounts = append(out.Mounts, Mount{Source: filepath.Join(root, d), Target: d})
	}
	out.Mounts = append(out.Mounts, Mount{Source: lab.NetNSDir, Target: lab.NetNSDir})
	out.Mounts = append(out.Mounts, Mount{Source: img.Binary, Target: img.Entrypoint, ReadOnly: true})
	for _, m := range c.VolumeMounts {
		src, ok := mounts[m.Name]
		if !ok {
			return Container{}, &configError{msg: "volume mount " + m.Name + " names no volume"}
		}
		if m.SubPath != "" {
			src = filepath.Join(src, filepath.Clean("/"+m.SubPath))
		}
		out.Mounts = append(out.Mounts, Mount{Source: src, Target: m.MountPath, ReadOnly: m.ReadOnly})
	}
	return out, nil
}

func cut(e string) (string, string, bool) {
	for i := 0; i < len(e); i++ {
		if e[i] == '=' {
			return e[:i], e[i+1:], true
		}
	}
	return e, "", false
}

// terminate stops every container: SIGTERM, then SIGKILL after grace.
func (w *worker) terminate(grace time.Duration) {
	deadline := time.Now().Add(grace)
	var wg sync.WaitGroup
	for _, c := range append(append([]*container{}, w.init...), w.main...) {
		if p := c.current(); p != nil {
			wg.Add(1)
			go func() { defer wg.Done(); p.stop(deadline) }()
		}
	}
	wg.Wait()
}

// finish removes what the pod had on the node, then its object, as a
// kubelet does once the pod's containers are gone.
func (w *worker) finish(ctx context.Context) {
	w.cleanup(ctx)
	err := w.k.cs.CoreV1().Pods(w.pod.Namespace).Delete(ctx, w.pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: ptr.To(w.pod.UID)}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		klog.FromContext(ctx).Error(err, "deleting the terminated pod")
	}
}

func (w *worker) cleanup(ctx context.Context) {
	if !w.pod.Spec.HostNetwork {
		if err := w.unwire(ctx); err != nil {
			klog.FromContext(ctx).Error(err, "removing the pod's network")
		}
	}
	_ = os.RemoveAll(w.dir)
}

// reportLoop writes the pod's status whenever it changes.
func (w *worker) reportLoop(ctx context.Context) {
	log := klog.FromContext(ctx)
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.dirty:
		}
		b, err := json.Marshal(map[string]any{"status": w.status()})
		if err != nil || string(b) == last {
			continue
		}
		_, err = w.k.cs.CoreV1().Pods(w.pod.Namespace).Patch(ctx, w.pod.Name, types.MergePatchType, b, metav1.PatchOptions{}, "status")
		if err != nil {
			if !errors.Is(err, context.Canceled) && !apierrors.IsNotFound(err) {
				log.Error(err, "writing the pod's status")
				time.AfterFunc(time.Second, w.touch)
			}
			continue
		}
		last = string(b)
	}
}

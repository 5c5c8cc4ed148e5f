package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/hitless-dev/hitless/internal/localcluster/lab"
	"github.com/hitless-dev/hitless/internal/measure/probe"
)

// Annotations of a node task: hitless writes the task on the node, the
// node's agent carries it out once per ID and writes the result.
const (
	AnnotationTask       = "hitless.dev/task"
	AnnotationTaskResult = "hitless.dev/task-result"
)

// Task is work on one node that only its agent can do: remove what a
// data plane left on the host (its CNI configuration, its devices), and
// verify pod to pod that the node's data plane reaches its peers.
type Task struct {
	// ID names the task (an operation, a node and a step): the agent does
	// each ID once; asking again with the same ID reads the result.
	ID string `json:"id"`
	// RemoveCNIConfigs are file names in the host's /etc/cni/net.d.
	RemoveCNIConfigs []string `json:"removeCNIConfigs,omitempty"`
	// RemoveLinks are network devices in the host's network namespace.
	RemoveLinks []string `json:"removeLinks,omitempty"`
	// RemoveLinksLater are devices removed after the result is written:
	// an agent on the pod network wired through one of them loses the
	// API server with it. A later task verifies they are gone.
	RemoveLinksLater []string `json:"removeLinksLater,omitempty"`
	// Verify are peer agents (host:port, UDP) to probe from this agent.
	Verify []string `json:"verify,omitempty"`
}

// TaskResult is what the agent did.
type TaskResult struct {
	ID      string   `json:"id"`
	Removed []string `json:"removed,omitempty"`
	// Reached and Unreached split Verify by whether a probe was answered.
	Reached   []string `json:"reached,omitempty"`
	Unreached []string `json:"unreached,omitempty"`
	// CNIConfig is the host's active CNI configuration afterwards (the
	// first file of /etc/cni/net.d), "" when there is none.
	CNIConfig string `json:"cniConfig,omitempty"`
	Error     string `json:"error,omitempty"`
}

var (
	cniFileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*\.(conf|conflist|json)$`)
	linkName    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$`)
)

// Validate refuses a task the agent would not carry out: file names that
// are not CNI configuration files in /etc/cni/net.d, device names that
// are not interface names.
func (t Task) Validate() error {
	if t.ID == "" {
		return errors.New("a task needs an id")
	}
	for _, f := range t.RemoveCNIConfigs {
		if !cniFileName.MatchString(f) {
			return fmt.Errorf("removeCNIConfigs: %q is not a CNI configuration file name (NAME.conf, .conflist or .json in /etc/cni/net.d)", f)
		}
	}
	for _, l := range slices.Concat(t.RemoveLinks, t.RemoveLinksLater) {
		if !linkName.MatchString(l) || l == "lo" {
			return fmt.Errorf("removeLinks: %q is not a network device that may be removed", l)
		}
	}
	for _, v := range t.Verify {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("verify: %q: %w", v, err)
		}
	}
	return nil
}

// ActiveCNIConfig is the CNI configuration a container runtime uses on
// the host under root: the first .conf, .conflist or .json file of
// /etc/cni/net.d in lexical order.
func ActiveCNIConfig(root string) string {
	entries, err := os.ReadDir(filepath.Join(root, "etc/cni/net.d"))
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if !e.IsDir() && cniFileName.MatchString(e.Name()) {
			return e.Name()
		}
	}
	return ""
}

// do carries a task out: removals first (what is already gone is not an
// error), then the verification.
func (a *Agent) do(ctx context.Context, t Task) TaskResult {
	res := TaskResult{ID: t.ID}
	if err := t.Validate(); err != nil {
		res.Error = err.Error()
		return res
	}
	if (len(t.RemoveCNIConfigs) > 0 || len(t.RemoveLinks) > 0 || len(t.RemoveLinksLater) > 0) && !a.opts.AllowCleanup {
		res.Error = "this agent does not remove a data plane's leftovers (it runs without --allow-cleanup)"
		return res
	}
	var errs []error
	for _, f := range t.RemoveCNIConfigs {
		err := os.Remove(filepath.Join(a.opts.Root, "etc/cni/net.d", f))
		switch {
		case err == nil:
			res.Removed = append(res.Removed, "/etc/cni/net.d/"+f)
		case !errors.Is(err, os.ErrNotExist):
			errs = append(errs, fmt.Errorf("removing /etc/cni/net.d/%s: %w", f, err))
		}
	}
	if len(t.RemoveLinks) > 0 {
		removed, err := removeLinks(a.hostNetNS(), t.RemoveLinks)
		res.Removed = append(res.Removed, removed...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(t.Verify) > 0 {
		res.Reached, res.Unreached = a.verify(ctx, t.Verify)
	}
	res.CNIConfig = ActiveCNIConfig(a.opts.Root)
	if err := errors.Join(errs...); err != nil {
		res.Error = err.Error()
	}
	return res
}

// hostNetNS is the host's network namespace: HostNetNS, else the one the
// agent's sockets live in.
func (a *Agent) hostNetNS() string {
	if a.opts.HostNetNS != "" {
		return a.opts.HostNetNS
	}
	return a.opts.NetNS
}

func removeLinks(ns string, names []string) ([]string, error) {
	h, err := lab.Netlink(ns)
	if err != nil {
		return nil, fmt.Errorf("opening the host's network namespace: %w", err)
	}
	defer h.Close()
	var removed []string
	var errs []error
	for _, n := range names {
		l, err := h.LinkByName(n)
		if err != nil {
			continue // gone already
		}
		if err := h.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("removing device %s: %w", n, err))
			continue
		}
		removed = append(removed, "device "+n)
	}
	return removed, errors.Join(errs...)
}

// verify sends up to ten probe asks to each peer, 100 ms apart, from
// the agent's own namespace, until each has answered one; a peer that
// answered none in two seconds is unreached.
func (a *Agent) verify(ctx context.Context, peers []string) (reached, unreached []string) {
	conn, err := lab.ListenPacket(a.opts.NetNS, "udp", ":0")
	if err != nil {
		return nil, slices.Clone(peers)
	}
	defer func() { _ = conn.Close() }()
	addrs := map[string]*net.UDPAddr{}
	for _, p := range peers {
		if ua, err := net.ResolveUDPAddr("udp", p); err == nil {
			addrs[ua.String()] = ua
		}
	}
	got := map[string]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if n > 0 {
				if ua, ok := from.(*net.UDPAddr); ok && addrs[ua.String()] != nil {
					got[ua.String()] = true
				}
			}
		}
	}()
	end := time.Now().Add(2 * time.Second)
	for seq := uint64(1); seq <= 10 && time.Now().Before(end) && ctx.Err() == nil; seq++ {
		for _, ua := range addrs {
			_, _ = conn.WriteTo(probe.Ask(seq, time.Now()), ua)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	<-done
	for _, p := range peers {
		ua, err := net.ResolveUDPAddr("udp", p)
		if err == nil && got[ua.String()] {
			reached = append(reached, p)
		} else {
			unreached = append(unreached, p)
		}
	}
	return reached, unreached
}

// honourTasks carries out the node's task when its ID differs from the
// last result's, checking every poll until ctx ends.
func (a *Agent) honourTasks(ctx context.Context, cs kubernetes.Interface, poll time.Duration) {
	log := klog.FromContext(ctx).WithValues("node", a.opts.Node)
	for {
		n, err := cs.CoreV1().Nodes().Get(ctx, a.opts.Node, metav1.GetOptions{})
		if err != nil {
			log.V(1).Info("reading the node for tasks", "err", err)
		} else if t, ok := pendingTask(n); ok {
			res := a.do(ctx, t)
			log.Info("node task", "id", t.ID, "removed", res.Removed, "unreached", res.Unreached, "error", res.Error)
			b, _ := json.Marshal(res)
			patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationTaskResult: string(b)}}})
			if _, err := cs.CoreV1().Nodes().Patch(ctx, a.opts.Node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				log.Error(err, "recording a node task's result")
			} else if res.Error == "" && len(t.RemoveLinksLater) > 0 {
				removed, err := removeLinks(a.hostNetNS(), t.RemoveLinksLater)
				log.Info("node task: devices removed after the result", "id", t.ID, "removed", removed, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(poll):
		}
	}
}

// pendingTask returns the node's task when its result is not written.
func pendingTask(n *corev1.Node) (Task, bool) {
	raw := n.Annotations[AnnotationTask]
	if raw == "" {
		return Task{}, false
	}
	var t Task
	if err := json.Unmarshal([]byte(raw), &t); err != nil || t.ID == "" {
		return Task{}, false
	}
	if r, ok := TaskResultOf(n); ok && r.ID == t.ID {
		return Task{}, false
	}
	return t, true
}

// TaskResultOf reads the node's last task result.
func TaskResultOf(n *corev1.Node) (TaskResult, bool) {
	var r TaskResult
	raw := n.Annotations[AnnotationTaskResult]
	if raw == "" || json.Unmarshal([]byte(raw), &r) != nil {
		return TaskResult{}, false
	}
	return r, true
}

// Summary is the result in one line.
func (r TaskResult) Summary() string {
	var parts []string
	if len(r.Removed) > 0 {
		parts = append(parts, "removed "+strings.Join(r.Removed, ", "))
	}
	if len(r.Reached)+len(r.Unreached) > 0 {
		parts = append(parts, fmt.Sprintf("reached %d of %d peers pod to pod", len(r.Reached), len(r.Reached)+len(r.Unreached)))
	}
	if r.CNIConfig != "" {
		parts = append(parts, "active CNI configuration "+r.CNIConfig)
	}
	if len(parts) == 0 {
		return "nothing to do"
	}
	return strings.Join(parts, "; ")
}

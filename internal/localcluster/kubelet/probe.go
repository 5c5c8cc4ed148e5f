package kubelet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"

	"github.com/hitless-dev/hitless/internal/localcluster/lab"
)

// probe runs a container's readiness and liveness probes while p runs: a
// container without a readiness probe is Ready once started, as a
// kubelet has it; a failed liveness probe kills the run (it is then
// restarted). Probes are sent from the pod's network namespace.
func (w *worker) probe(ctx context.Context, c *container, p *process) {
	log := klog.FromContext(ctx).WithValues("container", c.spec.Name)
	if c.spec.LivenessProbe != nil {
		go w.loop(ctx, c.spec.LivenessProbe, func(ok bool, err error) {
			if !ok {
				log.Info("liveness probe failed; restarting", "err", err)
				p.signal(syscall.SIGKILL)
			}
		})
	}
	if c.spec.ReadinessProbe == nil {
		if c.setReady(true) {
			w.touch()
		}
		return
	}
	w.loop(ctx, c.spec.ReadinessProbe, func(ok bool, err error) {
		if c.setReady(ok) {
			log.V(1).Info("readiness", "ready", ok, "err", err)
			w.touch()
		}
	})
}

// loop runs a probe until ctx ends and reports each change of verdict
// after its thresholds.
func (w *worker) loop(ctx context.Context, pr *corev1.Probe, verdict func(bool, error)) {
	period := seconds(pr.PeriodSeconds, 10)
	timeout := seconds(pr.TimeoutSeconds, 1)
	success, failure := max(pr.SuccessThreshold, 1), max(pr.FailureThreshold, 3)
	select {
	case <-ctx.Done():
		return
	case <-time.After(seconds(pr.InitialDelaySeconds, 0)):
	}
	var ok, bad int32
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		err := w.check(ctx, pr, timeout)
		if err == nil {
			ok, bad = ok+1, 0
			if ok == success {
				verdict(true, nil)
			}
		} else {
			ok, bad = 0, bad+1
			if bad == failure {
				verdict(false, err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func seconds(s int32, def int) time.Duration {
	if s <= 0 {
		return time.Duration(def) * time.Second
	}
	return time.Duration(s) * time.Second
}

// check runs a probe once.
func (w *worker) check(ctx context.Context, pr *corev1.Probe, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case pr.HTTPGet != nil:
		h := pr.HTTPGet
		host := h.Host
		if host == "" {
			host = w.podIP
		}
		port, err := w.port(h.Port)
		if err != nil {
			return err
		}
		scheme := "http"
		if h.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, strconv.Itoa(port))+h.Path, nil)
		if err != nil {
			return err
		}
		for _, hd := range h.HTTPHeaders {
			req.Header.Add(hd.Name, hd.Value)
		}
		client := &http.Client{Transport: &http.Transport{DialContext: w.dial, DisableKeepAlives: true}}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe %s: status %d", req.URL, resp.StatusCode)
		}
		return nil
	case pr.TCPSocket != nil:
		port, err := w.port(pr.TCPSocket.Port)
		if err != nil {
			return err
		}
		host := pr.TCPSocket.Host
		if host == "" {
			host = w.podIP
		}
		c, err := w.dial(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return c.Close()
	}
	// Exec and gRPC probes are not run in the lab: they pass.
	return nil
}

// dial connects from the pod's network namespace.
func (w *worker) dial(ctx context.Context, network, addr string) (c net.Conn, err error) {
	w.mu.Lock()
	ns := w.netns
	w.mu.Unlock()
	err = lab.Do(ns, func() error {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// port resolves a probe's port, by number or by the container's port name.
func (w *worker) port(p intstr.IntOrString) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, c := range w.pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == p.StrVal {
				return int(cp.ContainerPort), nil
			}
		}
	}
	return 0, fmt.Errorf("no container port named %q", p.StrVal)
}

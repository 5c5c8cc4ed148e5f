package agent

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hitless-dev/hitless/internal/measure/probe"
)

const peerTimeout = 2 * time.Second

// probePeers measures TCP and UDP to every other agent that has
// published an endpoint.
func (a *Agent) probePeers(ctx context.Context) []Peer {
	reports, _, err := Reports(ctx, a.cs)
	if err != nil {
		return nil
	}
	var mu sync.Mutex
	var out []Peer
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for node, r := range reports {
		if node == a.opts.Node || r.Endpoint.TCPPort == 0 {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			p := measurePeer(ctx, a.dial, node, r.Endpoint)
			mu.Lock()
			out = append(out, p)
			mu.Unlock()
		})
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

func measurePeer(ctx context.Context, dial probe.Dialer, node string, ep Endpoint) Peer {
	p := Peer{Node: node}
	msg := []byte(fmt.Sprintf("hitless %d\n", time.Now().UnixNano()))
	ctx, cancel := context.WithTimeout(ctx, 3*peerTimeout)
	defer cancel()
	start := time.Now()
	if c, err := dial(ctx, "tcp", net.JoinHostPort(ep.Address, strconv.Itoa(ep.TCPPort))); err != nil {
		p.TCPError = "tcp: " + err.Error()
	} else {
		_ = c.SetDeadline(time.Now().Add(peerTimeout))
		if _, err := c.Write(msg); err != nil {
			p.TCPError = "tcp: " + err.Error()
		} else if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != string(msg) {
			p.TCPError = fmt.Sprintf("tcp: no echo: %v", err)
		} else {
			p.TCP = true
			p.RTTMs = float64(time.Since(start).Microseconds()) / 1000
		}
		_ = c.Close()
	}
	// UDP: three tries, since one datagram may be lost on a healthy path.
	if c, err := dial(ctx, "udp", net.JoinHostPort(ep.Address, strconv.Itoa(ep.UDPPort))); err != nil {
		p.UDPError = "udp: " + err.Error()
	} else {
		buf := make([]byte, 2048)
		for try := 0; try < 3 && !p.UDP; try++ {
			_ = c.SetDeadline(time.Now().Add(peerTimeout / 2))
			ask := probe.Ask(uint64(time.Now().UnixNano()), time.Now()) //nolint:gosec // a timestamp as the sequence number
			if _, err := c.Write(ask); err != nil {
				p.UDPError = "udp: " + err.Error()
				continue
			}
			n, err := c.Read(buf)
			if err == nil && probe.Answered(ask, buf[:n]) {
				p.UDP, p.UDPError = true, ""
			} else if err != nil {
				p.UDPError = "udp: no echo: " + err.Error()
			}
		}
		_ = c.Close()
	}
	return p
}

func (a *Agent) probeAPIServer(ctx context.Context) Probe {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := a.cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	p := Probe{LatencyMs: float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		p.Error = err.Error()
	} else {
		p.OK = true
	}
	return p
}

// probeDNS resolves kubernetes.default through the cluster DNS Service,
// or returns nil when the cluster has none.
func (a *Agent) probeDNS(ctx context.Context) *Probe {
	svc, err := a.cs.CoreV1().Services(metav1.NamespaceSystem).Get(ctx, "kube-dns", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return &Probe{Error: "reading kube-system/kube-dns: " + err.Error()}
	}
	server := net.JoinHostPort(svc.Spec.ClusterIP, "53")
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		d := net.Dialer{Timeout: 2 * time.Second}
		return d.DialContext(ctx, network, server)
	}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	addrs, err := r.LookupHost(ctx, "kubernetes.default.svc.cluster.local")
	p := &Probe{LatencyMs: float64(time.Since(start).Microseconds()) / 1000, Detail: "via " + server}
	if err != nil {
		p.Error = err.Error()
		return p
	}
	p.OK = true
	p.Detail += fmt.Sprintf(": %v", addrs)
	return p
}

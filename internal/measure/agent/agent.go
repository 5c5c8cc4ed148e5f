package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/hitless-dev/hitless/internal/check/profile"
	knode "github.com/hitless-dev/hitless/internal/kube/node"
	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/localcluster/lab"
	"github.com/hitless-dev/hitless/internal/measure/probe"
)

// Options configure an agent.
type Options struct {
	Node string
	// Root is where the host's / is (the agent's container mounts it);
	// "/" when the agent runs on the host.
	Root string
	Proc string
	// Listen is the host the agent answers peers on; TCPPort and UDPPort
	// 0 pick free ports.
	Listen           string
	TCPPort, UDPPort int
	// Advertise is the address peers reach this agent at; default the
	// node's InternalIP.
	Advertise string
	// NetNS is the path of the network namespace the agent's sockets live
	// in (the node's, in the lab); "" for the agent's own. The agent talks
	// to the API server from its own namespace.
	NetNS string
	// HostNetNS is the path of the host's network namespace, where node
	// checks read routes and node tasks remove devices; "" for NetNS (an
	// agent on the host network). A lab agent on the pod network names
	// its node's.
	HostNetNS string
	// AllowCleanup lets node tasks remove a data plane's leftovers (CNI
	// configuration files, devices) from the host; verification tasks
	// run without it.
	AllowCleanup bool
	// FollowDataPlane couples the lab node's link to its data-plane pods
	// (lab only: needs NetNS).
	FollowDataPlane bool
	// Ready, when set, is closed once the agent has published its first
	// report.
	Ready chan<- struct{}
	// Rebooter, when set, reboots the host when hitless's reboot action
	// asks (the node annotated hitless.dev/reboot-request); nil ignores
	// the requests (the lab, an agent run by hand).
	Rebooter Rebooter
}

// Agent is a running agent.
type Agent struct {
	opts     Options
	cs       kubernetes.Interface
	endpoint Endpoint
	tcp      net.Listener
	udp      net.PacketConn
	ep       *probe.Endpoint

	mu      sync.Mutex
	session *running // the probe session in progress, if any
}

// Run starts the agent and serves until ctx ends: it answers peers'
// probes, publishes a first report, then answers every check request.
func Run(ctx context.Context, cs kubernetes.Interface, opts Options) error {
	if opts.Node == "" {
		return errors.New("the node name is required (--node-name, or NODE_NAME from the downward API)")
	}
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.Proc == "" {
		opts.Proc = "/proc"
	}
	log := klog.FromContext(ctx).WithValues("node", opts.Node)
	node, err := cs.CoreV1().Nodes().Get(ctx, opts.Node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading node %s: %w", opts.Node, err)
	}
	a := &Agent{opts: opts, cs: cs}
	if a.opts.Advertise == "" {
		a.opts.Advertise = knode.InternalIP(node)
	}
	if err := a.listen(); err != nil {
		return err
	}
	defer func() { _ = a.tcp.Close(); _ = a.udp.Close() }()
	// Stop taking connections as soon as the agent is told to stop.
	stopAccepting := context.AfterFunc(ctx, func() { _ = a.tcp.Close() })
	defer stopAccepting()
	go a.serveTCP(ctx)
	a.ep = probe.Serve(a.udp)

	last := ""
	answer := func(req Request) {
		if err := a.answer(ctx, req); err != nil {
			log.Error(err, "answering check request", "request", req.ID)
			return
		}
		last = req.ID
		log.V(2).Info("answered check request", "request", req.ID)
	}
	// The first report makes the agent known to check runs; retry it
	// until hitless-system exists. The DaemonSet's manifest creates the
	// namespace; an agent run by hand creates it when it may.
	if err := store.New(cs).EnsureNamespace(ctx); err != nil {
		log.V(1).Info("cannot create the namespace; waiting for it", "err", err)
	}
	for {
		err := a.answer(ctx, Request{Profile: "generic"})
		if err == nil {
			break
		}
		log.V(1).Info("publishing the first report, retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	if opts.Ready != nil {
		close(opts.Ready)
	}
	// An agent that stops cleanly takes its report with it, so check runs
	// do not wait for it; one that crashes leaves it, and runs name it
	// silent.
	defer a.deregister(log)
	if a.models() {
		go a.followDataPlane(ctx)
	}
	go a.honourTasks(ctx, cs, time.Second)
	if opts.Rebooter != nil {
		go honourReboots(ctx, cs, opts.Node, opts.Rebooter, 2*time.Second)
	}
	go a.follow(ctx, ProbeRequestName, func(cm *corev1.ConfigMap) { a.onProbeRequest(ctx, probeRequestOf(cm)) })
	a.follow(ctx, RequestName, func(cm *corev1.ConfigMap) {
		if req := requestOf(cm); req.ID != last {
			answer(req)
		}
	})
	a.stopSession()
	return nil
}

func (a *Agent) deregister(log klog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := store.New(a.cs).Delete(ctx, false, reportPrefix+a.opts.Node); err != nil {
		log.Error(err, "removing the agent's report")
	}
}

// follow calls on with the ConfigMap name in hitless-system as it is
// now and at every change, until ctx ends, re-establishing its watch.
func (a *Agent) follow(ctx context.Context, name string, on func(*corev1.ConfigMap)) {
	log := klog.FromContext(ctx)
	for ctx.Err() == nil {
		if err := a.watch(ctx, name, on); err != nil && ctx.Err() == nil {
			log.V(1).Info("watch ended, retrying", "configmap", name, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (a *Agent) watch(ctx context.Context, name string, on func(*corev1.ConfigMap)) error {
	cms := store.New(a.cs).ConfigMaps()
	sel := metav1.ListOptions{FieldSelector: "metadata.name=" + name}
	l, err := cms.List(ctx, sel)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	rv := ""
	if l != nil {
		rv = l.ResourceVersion
		for i := range l.Items {
			on(&l.Items[i])
		}
	}
	sel.ResourceVersion = rv
	w, err := cms.Watch(ctx, sel)
	if err != nil {
		return err
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		cm, ok := ev.Object.(*corev1.ConfigMap)
		if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
			continue
		}
		on(cm)
	}
	return errors.New("watch closed")
}

// models says the agent's node has the lab's model of a data plane: the
// node's link follows its data-plane pod (lab only: needs NetNS).
func (a *Agent) models() bool { return a.opts.FollowDataPlane && a.opts.NetNS != "" }

// dial opens a connection from the agent's network namespace.
func (a *Agent) dial(ctx context.Context, network, addr string) (c net.Conn, err error) {
	err = lab.Do(a.opts.NetNS, func() error {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// answer runs the node checks for the request's profile, measures the
// peers, the API server and DNS, and publishes the report.
func (a *Agent) answer(ctx context.Context, req Request) error {
	p, err := profile.Get(req.Profile)
	if err != nil {
		p, _ = profile.Get("generic")
	}
	node, err := a.cs.CoreV1().Nodes().Get(ctx, a.opts.Node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading node %s: %w", a.opts.Node, err)
	}
	h := &Host{Root: a.opts.Root, Proc: a.opts.Proc, Node: node, Profile: p, Address: a.opts.Advertise, KernelRelease: KernelRelease(), NetNS: a.hostNetNS()}
	// The other nodes' pod subnets (the overlay check); an agent whose
	// role cannot list nodes (an older manifest) runs the rest.
	if nodes, err := a.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"}); err != nil {
		h.NodesErr = err
	} else {
		h.Nodes = nodes.Items
	}
	r := &Report{Node: a.opts.Node, Request: req.ID, Profile: p.Name, Endpoint: a.endpoint, Kernel: h.KernelRelease}
	_, r.MTU = nodeMTU(h)
	var wg sync.WaitGroup
	wg.Go(func() { r.Results = RunNodeChecks(ctx, h) })
	wg.Go(func() { r.APIServer = a.probeAPIServer(ctx) })
	wg.Go(func() { r.DNS = a.probeDNS(ctx) })
	if req.ID != "" {
		wg.Go(func() { r.Peers = a.probePeers(ctx) })
	}
	wg.Wait()
	r.Time = time.Now().UTC()
	return Publish(ctx, a.cs, r)
}

func (a *Agent) listen() error {
	host := a.opts.Listen
	tcp, err := lab.Listen(a.opts.NetNS, "tcp", net.JoinHostPort(host, strconv.Itoa(a.opts.TCPPort)))
	if err != nil {
		return fmt.Errorf("agent listening on tcp %s:%d: %w", host, a.opts.TCPPort, err)
	}
	udp, err := lab.ListenPacket(a.opts.NetNS, "udp", net.JoinHostPort(host, strconv.Itoa(a.opts.UDPPort)))
	if err != nil {
		_ = tcp.Close()
		return fmt.Errorf("agent listening on udp %s:%d: %w", host, a.opts.UDPPort, err)
	}
	a.tcp, a.udp = tcp, udp
	addr := a.opts.Advertise
	if addr == "" {
		addr = host
	}
	a.endpoint = Endpoint{Address: addr, TCPPort: tcp.Addr().(*net.TCPAddr).Port, UDPPort: udp.LocalAddr().(*net.UDPAddr).Port}
	return nil
}

// serveTCP echoes every line a peer sends.
func (a *Agent) serveTCP(ctx context.Context) {
	for {
		c, err := a.tcp.Accept()
		if err != nil {
			return
		}
		go func() {
			defer func() { _ = c.Close() }()
			// Closed when the agent stops, as a process exit would.
			stop := context.AfterFunc(ctx, func() { _ = c.Close() })
			defer stop()
			r := bufio.NewReader(c)
			for ctx.Err() == nil {
				// An idle limit, renewed by every line: the long-lived
				// connections must outlive the outages they measure.
				_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
				line, err := r.ReadBytes('\n')
				if err != nil {
					return
				}
				if _, err := c.Write(line); err != nil {
					return
				}
			}
		}()
	}
}

package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"k8s.io/klog/v2"

	"github.com/hitless-dev/hitless/internal/localcluster/lab"
)

// relay forwards TCP connections to the kubernetes Service's address
// inside a node's namespace (where it is a local address, as kube-proxy
// makes it one on a real node) to the API server, which listens on the
// host's loopback only: the daemons and pods of the lab reach the API
// server as a real cluster's do, and nothing outside the lab does.
func relay(ctx context.Context, node lab.Node, listen, upstream string) (func(), error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("relay address %q: %w", listen, err)
	}
	if err := localAddress(node.Path(), host); err != nil {
		return nil, fmt.Errorf("node %s: %w", node.Name, err)
	}
	l, err := lab.Listen(node.Path(), "tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("relaying the API server on %s in node %s: %w", listen, node.Name, err)
	}
	log := klog.FromContext(ctx).WithValues("relay", listen, "node", node.Name, "upstream", upstream)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					log.Error(err, "accepting")
				}
				return
			}
			go pipe(ctx, c, upstream)
		}
	}()
	return func() { _ = l.Close(); wg.Wait() }, nil
}

// localAddress makes ip a local address of the namespace at path (on lo).
func localAddress(path, ip string) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer func() { _ = ns.Close() }()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	addr, err := netlink.ParseAddr(ip + "/32")
	if err != nil {
		return err
	}
	if err := h.AddrReplace(lo, addr); err != nil {
		return fmt.Errorf("adding %s to lo: %w", ip, err)
	}
	return nil
}

func pipe(ctx context.Context, c net.Conn, upstream string) {
	defer func() { _ = c.Close() }()
	var d net.Dialer
	u, err := d.DialContext(ctx, "tcp", upstream)
	if err != nil {
		return
	}
	defer func() { _ = u.Close() }()
	stop := context.AfterFunc(ctx, func() { _ = c.Close(); _ = u.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
}

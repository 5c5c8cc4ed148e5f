package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NetNSDir is where named network namespaces are mounted.
const NetNSDir = "/run/netns"

// Node is one worker's place in the lab.
type Node struct {
	Name string `json:"name"`
	// NetNS is the namespace's name; its path is NetNSDir/NetNS.
	NetNS string `json:"netns"`
	IP    string `json:"ip"`
	// HostVeth is the veth end on the bridge, in the host namespace.
	HostVeth string `json:"hostVeth"`
}

// Path is the namespace's mount path.
func (n Node) Path() string { return filepath.Join(NetNSDir, n.NetNS) }

// Lab is a cluster's namespaces and bridge.
type Lab struct {
	Cluster string `json:"cluster"`
	Bridge  string `json:"bridge"`
	Prefix  int    `json:"prefix"`
	Nodes   []Node `json:"nodes"`
}

// NodeByName returns the lab node of that name.
func (l *Lab) NodeByName(name string) (Node, bool) {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// tag is a short, stable id of the cluster for interface names, which
// the kernel limits to 15 characters.
func tag(cluster string) string {
	h := sha256.Sum256([]byte(cluster))
	return hex.EncodeToString(h[:3])
}

// Plan names the lab of a cluster: bridge hlb<tag>, and per node a
// namespace hitless-<cluster>-<node> and host veth hl<tag>-<i>.
func Plan(cluster string, prefix int, nodes map[string]string, order []string) *Lab {
	t := tag(cluster)
	l := &Lab{Cluster: cluster, Bridge: "hlb" + t, Prefix: prefix}
	for i, name := range order {
		l.Nodes = append(l.Nodes, Node{Name: name, NetNS: "hitless-" + cluster + "-" + name, IP: nodes[name], HostVeth: "hl" + t + "-" + strconv.Itoa(i)})
	}
	return l
}

// Create makes the bridge and, per node, the namespace with eth0 (the
// node's address), lo up and the veth into the bridge. It first removes
// what an earlier lab of the same plan left.
func (l *Lab) Create() error {
	_ = l.Delete()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: l.Bridge}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("creating bridge %s: %w", l.Bridge, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bringing bridge %s up: %w", l.Bridge, err)
	}
	for _, n := range l.Nodes {
		if err := l.addNode(br, n); err != nil {
			_ = l.Delete()
			return fmt.Errorf("lab node %s: %w", n.Name, err)
		}
	}
	// Links come up asynchronously; a lab is ready when every veth end on
	// the bridge carries, so the first probes do not measure its start.
	if err := l.waitUp(5 * time.Second); err != nil {
		_ = l.Delete()
		return err
	}
	return nil
}

func (l *Lab) waitUp(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, n := range l.Nodes {
		for {
			link, err := netlink.LinkByName(n.HostVeth)
			if err == nil && link.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("lab node %s: link %s not up after %s", n.Name, n.HostVeth, timeout)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

func (l *Lab) addNode(br *netlink.Bridge, n Node) error {
	ns, err := newNamed(n.NetNS)
	if err != nil {
		return err
	}
	defer func() { _ = ns.Close() }()
	peer := n.HostVeth + "p"
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: n.HostVeth, MasterIndex: br.Index}, PeerName: peer}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("creating veth %s: %w", n.HostVeth, err)
	}
	p, err := netlink.LinkByName(peer)
	if err != nil {
		return fmt.Errorf("finding veth %s: %w", peer, err)
	}
	if err := netlink.LinkSetNsFd(p, int(ns)); err != nil {
		return fmt.Errorf("moving veth %s into %s: %w", peer, n.NetNS, err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("bringing %s up: %w", n.HostVeth, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", n.NetNS, err)
	}
	defer h.Close()
	inner, err := h.LinkByName(peer)
	if err != nil {
		return err
	}
	if err := h.LinkSetName(inner, "eth0"); err != nil {
		return fmt.Errorf("renaming %s to eth0: %w", peer, err)
	}
	addr, err := netlink.ParseAddr(n.IP + "/" + strconv.Itoa(l.Prefix))
	if err != nil {
		return err
	}
	if err := h.AddrAdd(inner, addr); err != nil {
		return fmt.Errorf("addressing eth0 %s: %w", n.IP, err)
	}
	for _, name := range []string{"eth0", "lo"} {
		link, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("bringing %s up in %s: %w", name, n.NetNS, err)
		}
	}
	return nil
}

// newNamed creates a named namespace without moving the calling thread.
func newNamed(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return 0, fmt.Errorf("reading the current network namespace: %w", err)
	}
	defer func() { _ = orig.Close() }()
	ns, err := netns.NewNamed(name)
	if err != nil {
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		return 0, fmt.Errorf("creating network namespace %s: %w", name, err)
	}
	if err := netns.Set(orig); err != nil {
		// The thread stays locked and dies with the goroutine rather than
		// serve others from the wrong namespace.
		return 0, fmt.Errorf("leaving network namespace %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return ns, nil
}

// Delete removes the namespaces (their veths go with them) and the
// bridge; what is already gone is not an error.
func (l *Lab) Delete() error {
	var errs []error
	for _, n := range l.Nodes {
		if _, err := os.Stat(n.Path()); err == nil {
			if err := netns.DeleteNamed(n.NetNS); err != nil {
				errs = append(errs, fmt.Errorf("deleting namespace %s: %w", n.NetNS, err))
			}
		}
		if link, err := netlink.LinkByName(n.HostVeth); err == nil {
			_ = netlink.LinkDel(link)
		}
	}
	if link, err := netlink.LinkByName(l.Bridge); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("deleting bridge %s: %w", l.Bridge, err))
		}
	}
	return errors.Join(errs...)
}

// Do runs fn on a thread inside the namespace at path. Sockets fn opens
// belong to that namespace for their whole life, whichever thread uses
// them later.
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("reading the current network namespace: %w", err)
	}
	defer func() { _ = orig.Close() }()
	target, err := netns.GetFromPath(path)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer func() { _ = target.Close() }()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering network namespace %s: %w", path, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it exits with the goroutine rather
		// than serve others from the wrong namespace.
		return errors.Join(ferr, fmt.Errorf("leaving network namespace %s: %w", path, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Listen opens a listener inside the namespace at path ("" for the
// current one).
func Listen(path, network, addr string) (l net.Listener, err error) {
	err = Do(path, func() error { l, err = net.Listen(network, addr); return err })
	return l, err
}

// ListenPacket opens a packet socket inside the namespace at path.
func ListenPacket(path, network, addr string) (c net.PacketConn, err error) {
	err = Do(path, func() error { c, err = net.ListenPacket(network, addr); return err })
	return c, err
}

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
	"strings"
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
	// HostVeth is the veth end on the bridge, in the lab's switch
	// namespace (the host's, for a lab saved before it had one).
	HostVeth string `json:"hostVeth"`
}

// Path is the namespace's mount path.
func (n Node) Path() string { return filepath.Join(NetNSDir, n.NetNS) }

// Lab is a cluster's namespaces and bridge.
type Lab struct {
	Cluster string `json:"cluster"`
	Bridge  string `json:"bridge"`
	// Switch is the network namespace the bridge lives in, away from the
	// host's own: with br_netfilter loaded (kube-router loads it), a
	// bridge in the host namespace passes the lab's traffic through the
	// host's firewall, which may drop or reject forwarded packets.
	Switch string `json:"switch,omitempty"`
	Prefix int    `json:"prefix"`
	Nodes  []Node `json:"nodes"`
}

// SwitchPath is the mount path of the bridge's namespace, "" for the
// host's (a lab saved before it had a namespace of its own).
func (l *Lab) SwitchPath() string {
	if l.Switch == "" {
		return ""
	}
	return filepath.Join(NetNSDir, l.Switch)
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
	l := &Lab{Cluster: cluster, Bridge: "hlb" + t, Switch: SwitchNamespace(cluster), Prefix: prefix}
	for i, name := range order {
		l.Nodes = append(l.Nodes, Node{Name: name, NetNS: NodeNamespace(cluster, name), IP: nodes[name], HostVeth: "hl" + t + "-" + strconv.Itoa(i)})
	}
	return l
}

// Create makes the switch namespace with the bridge and, per node, the
// namespace with eth0 (the node's address), lo up and the veth into the
// bridge. It first removes what an earlier lab of the same plan left.
func (l *Lab) Create() error {
	_ = l.Delete()
	if err := l.create(); err != nil {
		_ = l.Delete()
		return err
	}
	return nil
}

func (l *Lab) create() error {
	if l.Switch != "" {
		sw, err := NewNamespace(l.Switch)
		if err != nil {
			return err
		}
		_ = sw.Close()
		// A fresh namespace has no firewall; nothing bridged here needs
		// netfilter either (the file is there once br_netfilter is loaded).
		if err := Do(l.SwitchPath(), noBridgeNetfilter); err != nil {
			return fmt.Errorf("switch namespace %s: %w", l.Switch, err)
		}
	}
	h, err := Netlink(l.SwitchPath())
	if err != nil {
		return err
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: l.Bridge}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("creating bridge %s: %w", l.Bridge, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("bringing bridge %s up: %w", l.Bridge, err)
	}
	for _, n := range l.Nodes {
		if err := l.addNode(h, br, n); err != nil {
			return fmt.Errorf("lab node %s: %w", n.Name, err)
		}
	}
	// Links come up asynchronously; a lab is ready when every veth end on
	// the bridge carries, so the first probes do not measure its start.
	return l.waitUp(h, 5*time.Second)
}

// noBridgeNetfilter turns off br_netfilter's calls into iptables for
// the calling thread's namespace, where the module is loaded.
func noBridgeNetfilter() error {
	for _, f := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"} {
		path := filepath.Join("/proc/sys/net/bridge", f)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		if err := os.WriteFile(path, []byte("0\n"), 0o644); err != nil {
			return fmt.Errorf("setting %s: %w", path, err)
		}
	}
	return nil
}

func (l *Lab) waitUp(h *netlink.Handle, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, n := range l.Nodes {
		for {
			link, err := h.LinkByName(n.HostVeth)
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

func (l *Lab) addNode(sw *netlink.Handle, br *netlink.Bridge, n Node) error {
	ns, err := NewNamespace(n.NetNS)
	if err != nil {
		return err
	}
	defer func() { _ = ns.Close() }()
	peer := n.HostVeth + "p"
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: n.HostVeth, MasterIndex: br.Index}, PeerName: peer}
	if err := sw.LinkAdd(veth); err != nil {
		return fmt.Errorf("creating veth %s: %w", n.HostVeth, err)
	}
	p, err := sw.LinkByName(peer)
	if err != nil {
		return fmt.Errorf("finding veth %s: %w", peer, err)
	}
	if err := sw.LinkSetNsFd(p, int(ns)); err != nil {
		return fmt.Errorf("moving veth %s into %s: %w", peer, n.NetNS, err)
	}
	if err := sw.LinkSetUp(veth); err != nil {
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

// NewNamespace creates a named network namespace (in NetNSDir) without
// moving the calling thread.
func NewNamespace(name string) (netns.NsHandle, error) {
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

// SwitchNamespace names the network namespace of a lab's bridge.
func SwitchNamespace(cluster string) string { return "hlsw-" + cluster }

// NodeNamespace names a lab node's network namespace.
func NodeNamespace(cluster, node string) string { return "hitless-" + cluster + "-" + node }

// PodNamespacePrefix begins the names of the network namespaces of a
// lab's pods (the lab kubelet's).
func PodNamespacePrefix(cluster string) string { return "hlp-" + cluster + "-" }

func podID(s string) bool {
	if len(s) != 13 || s[8] != '-' {
		return false
	}
	for i, c := range s {
		if i != 8 && !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// Delete removes the namespaces (their veths go with them), the pods'
// namespaces and the bridge with its switch namespace; what is already
// gone is not an error.
func (l *Lab) Delete() error {
	var errs []error
	pods, _ := filepath.Glob(filepath.Join(NetNSDir, PodNamespacePrefix(l.Cluster)+"*"))
	for _, p := range pods {
		// Another cluster's name may begin with this one's and a dash:
		// only a pod's id (a UID's first 13 characters) may follow.
		if !podID(strings.TrimPrefix(filepath.Base(p), PodNamespacePrefix(l.Cluster))) {
			continue
		}
		if err := netns.DeleteNamed(filepath.Base(p)); err != nil {
			errs = append(errs, fmt.Errorf("deleting pod namespace %s: %w", filepath.Base(p), err))
		}
	}
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
	// A lab of an earlier version had its bridge in the host namespace.
	if link, err := netlink.LinkByName(l.Bridge); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("deleting bridge %s: %w", l.Bridge, err))
		}
	}
	if l.Switch != "" {
		if _, err := os.Stat(l.SwitchPath()); err == nil {
			if err := netns.DeleteNamed(l.Switch); err != nil {
				errs = append(errs, fmt.Errorf("deleting namespace %s: %w", l.Switch, err))
			}
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

package lab

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// faultTable is the nftables table faults live in, in a node's namespace.
const faultTable = "hitless-fault"

// SetLink takes a node's interface (eth0 in its namespace) down or up:
// while down, nothing leaves or reaches the node, and nothing queues for
// later either (a carrier loss would hold outgoing packets in the queue
// and deliver them late).
func (l *Lab) SetLink(node string, up bool) error {
	n, ok := l.NodeByName(node)
	if !ok {
		return fmt.Errorf("node %s is not in the lab", node)
	}
	if err := SetLinkIn(n.Path(), up); err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	return nil
}

// Netlink opens netlink in the network namespace at path ("" is the
// caller's own); the caller closes the handle.
func Netlink(path string) (*netlink.Handle, error) {
	if path == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("opening netlink: %w", err)
		}
		return h, nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer func() { _ = ns.Close() }()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	return h, nil
}

// DeleteLink deletes a network device in a node's namespace, as an
// operator's mistake or a broken script would (a data plane's VXLAN
// device, flannel.1); the lab's own eth0 is not for deleting.
func (l *Lab) DeleteLink(node, name string) error {
	n, ok := l.NodeByName(node)
	if !ok {
		return fmt.Errorf("node %s is not in the lab", node)
	}
	if name == "eth0" || name == "lo" {
		return fmt.Errorf("node %s: %s is the lab's own; take it down with link-down instead", node, name)
	}
	h, err := Netlink(n.Path())
	if err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("node %s has no device %s: %w", node, name, err)
	}
	if err := h.LinkDel(link); err != nil {
		return fmt.Errorf("deleting %s on node %s: %w", name, node, err)
	}
	return nil
}

// SetLinkIn takes eth0 of the namespace at path down or up.
func SetLinkIn(path string, up bool) error {
	h, err := Netlink(path)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("finding eth0 in %s: %w", path, err)
	}
	if up {
		err = h.LinkSetUp(link)
	} else {
		err = h.LinkSetDown(link)
	}
	if err != nil {
		return fmt.Errorf("setting eth0 in %s up=%t: %w", path, up, err)
	}
	return nil
}

// SetLoss drops percent of the packets a node receives, at random
// (nftables numgen random; this kernel has no netem). 0 removes the
// fault.
func (l *Lab) SetLoss(node string, percent int) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("loss %d%%: want 0 to 100", percent)
	}
	n, ok := l.NodeByName(node)
	if !ok {
		return fmt.Errorf("node %s is not in the lab", node)
	}
	ns, err := netns.GetFromPath(n.Path())
	if err != nil {
		return fmt.Errorf("opening namespace of node %s: %w", node, err)
	}
	defer func() { _ = ns.Close() }()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("nftables in node %s: %w", node, err)
	}
	c.DelTable(&nftables.Table{Name: faultTable, Family: nftables.TableFamilyINet})
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("clearing faults of node %s: %w", node, err)
	}
	if percent == 0 {
		return nil
	}
	t := c.AddTable(&nftables.Table{Name: faultTable, Family: nftables.TableFamilyINet})
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	// numgen random mod 100 < percent drop, as nft writes it: the
	// number is converted to network order before the comparison.
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Numgen{Register: 1, Modulus: 100, Type: unix.NFT_NG_RANDOM},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: binaryutil.BigEndian.PutUint32(uint32(percent))},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("adding %d%% loss to node %s: %w", percent, node, err)
	}
	return nil
}

package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/localcluster/lab"
)

// overlayRoutes checks that a node with an overlay device (VXLAN, Geneve:
// flannel.1, vxlan.calico, genev_sys_6081 ...) routes every other node's pod
// subnet, and that the devices are up. A data plane that lost its device
// or its routes (flannel's device deleted under it) leaves this node's pods
// cut off from the others' while every pod still reports Ready: learned in
// the packet lab, where a route deleted from flannel's device stayed
// deleted and blackholed the paths to that node's pods.
func overlayRoutes(_ context.Context, h *Host) check.Outcome {
	nh, err := lab.Netlink(h.NetNS)
	if err != nil {
		return check.Errored(err)
	}
	defer nh.Close()
	links, err := nh.LinkList()
	if err != nil {
		return check.Errored(fmt.Errorf("listing links: %w", err))
	}
	var overlays, down []string
	for _, l := range links {
		switch l.(type) {
		case *netlink.Vxlan, *netlink.Geneve:
		default:
			continue
		}
		a := l.Attrs()
		overlays = append(overlays, a.Name)
		if a.Flags&net.FlagUp == 0 {
			down = append(down, a.Name)
		}
	}
	if len(overlays) == 0 {
		return check.Outcome{Status: check.Skip, Message: "no overlay device (VXLAN, Geneve) on this node"}
	}
	slices.Sort(overlays)
	if len(down) > 0 {
		return check.Outcome{Status: check.Fail, Message: fmt.Sprintf("overlay device %s is down: this node's pods reach no pod on another node over it", strings.Join(down, ", ")),
			Remediation: "restart the network plugin's pod on this node (it recreates its device and routes), then run the postflight again"}
	}
	if h.NodesErr != nil {
		return check.Errored(fmt.Errorf("overlay %s up, but the other nodes' pod subnets are unknown: listing nodes: %w", strings.Join(overlays, ", "), h.NodesErr))
	}
	var routes []netlink.Route
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := nh.RouteList(nil, fam)
		if err != nil {
			return check.Errored(fmt.Errorf("listing routes: %w", err))
		}
		routes = append(routes, rs...)
	}
	var missing []string
	peers := 0
	for _, n := range h.Nodes {
		if h.Node != nil && n.Name == h.Node.Name {
			continue
		}
		for _, c := range podCIDRs(&n) {
			pfx, err := netip.ParsePrefix(c)
			if err != nil {
				continue
			}
			peers++
			if _, ok := covering(routes, pfx); !ok {
				missing = append(missing, fmt.Sprintf("%s (node %s)", pfx, n.Name))
			}
		}
	}
	if peers == 0 {
		return check.Passed("overlay %s up; no other node has a pod subnet to route", strings.Join(overlays, ", "))
	}
	if len(missing) > 0 {
		return check.Outcome{Status: check.Fail,
			Message: fmt.Sprintf("overlay %s: no route to %d of %d other nodes' pod subnets: %s; traffic from this node's pods to theirs is lost",
				strings.Join(overlays, ", "), len(missing), peers, strings.Join(missing, ", ")),
			Remediation: "restart the network plugin's pod on this node so that it installs its routes again, then run the postflight again"}
	}
	return check.Passed("overlay %s up; routes to all %d other nodes' pod subnets", strings.Join(overlays, ", "), peers)
}

// covering returns the most specific route whose destination holds pfx;
// a default route does not count (the pod subnet would leave by it,
// unencapsulated).
func covering(routes []netlink.Route, pfx netip.Prefix) (netlink.Route, bool) {
	best, bits := netlink.Route{}, -1
	for _, r := range routes {
		if r.Dst == nil || r.Type == 6 /* RTN_BLACKHOLE */ || r.Type == 7 /* RTN_UNREACHABLE */ {
			continue
		}
		addr, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		dst := netip.PrefixFrom(addr.Unmap(), ones)
		if ones == 0 || ones > pfx.Bits() || !dst.Contains(pfx.Addr()) {
			continue
		}
		if ones > bits {
			best, bits = r, ones
		}
	}
	return best, bits >= 0
}

func podCIDRs(n *corev1.Node) []string {
	if len(n.Spec.PodCIDRs) > 0 {
		return n.Spec.PodCIDRs
	}
	if n.Spec.PodCIDR != "" {
		return []string{n.Spec.PodCIDR}
	}
	return nil
}

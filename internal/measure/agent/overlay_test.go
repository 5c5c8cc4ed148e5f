package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/localcluster/lab"
)

// The overlay check reads a real network namespace: a VXLAN device
// routing the other nodes' pod subnets as flannel sets it up passes; a
// deleted route, a device down, fail naming what is missing; a node with
// no overlay device skips.
func TestOverlayRoutes(t *testing.T) {
	if testing.Short() {
		t.Skip("needs root and network namespaces (skipped under -short)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root: it creates a network namespace")
	}
	name := fmt.Sprintf("hitless-ovl-%d", os.Getpid())
	ns, err := lab.NewNamespace(name)
	if err != nil {
		t.Fatal(err)
	}
	_ = ns.Close()
	t.Cleanup(func() { _ = netns.DeleteNamed(name) })
	path := filepath.Join(lab.NetNSDir, name)
	nh, err := lab.Netlink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()

	node := func(name, cidr string) corev1.Node {
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}}}
	}
	h := &Host{NetNS: path, Nodes: []corev1.Node{node("me", "10.244.1.0/24"), node("a", "10.244.0.0/24"), node("b", "10.244.2.0/24")}}
	h.Node = &h.Nodes[0]
	run := func() check.Outcome { return overlayRoutes(context.Background(), h) }

	if o := run(); o.Status != check.Skip {
		t.Fatalf("no overlay device: %s %s, want a skip", o.Status, o.Message)
	}
	lo, err := nh.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := nh.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "flannel.1", MTU: 1450}, VxlanId: 1, Port: 8472, Learning: false}
	if err := nh.LinkAdd(vx); err != nil {
		t.Fatal(err)
	}
	dev, err := nh.LinkByName("flannel.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := nh.LinkSetUp(dev); err != nil {
		t.Fatal(err)
	}
	if err := nh.AddrAdd(dev, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("10.244.1.0"), Mask: net.CIDRMask(32, 32)}}); err != nil {
		t.Fatal(err)
	}
	// flannel's routes: each other node's subnet via its VTEP address, onlink.
	for _, c := range []string{"10.244.0.0/24", "10.244.2.0/24"} {
		_, dst, _ := net.ParseCIDR(c)
		r := &netlink.Route{LinkIndex: dev.Attrs().Index, Dst: dst, Gw: dst.IP, Flags: int(netlink.FLAG_ONLINK)}
		if err := nh.RouteAdd(r); err != nil {
			t.Fatalf("route %s: %v", c, err)
		}
	}
	if o := run(); o.Status != check.Pass {
		t.Fatalf("every route there: %s %s", o.Status, o.Message)
	}

	_, gone, _ := net.ParseCIDR("10.244.2.0/24")
	if err := nh.RouteDel(&netlink.Route{LinkIndex: dev.Attrs().Index, Dst: gone}); err != nil {
		t.Fatal(err)
	}
	o := run()
	if o.Status != check.Fail || !strings.Contains(o.Message, "10.244.2.0/24 (node b)") || strings.Contains(o.Message, "node a") || o.Remediation == "" {
		t.Fatalf("a route deleted: %s %q (%s), want a failure naming 10.244.2.0/24 of node b only", o.Status, o.Message, o.Remediation)
	}
	// A route of the whole cluster network (Cilium's, via its host
	// device) covers every node's subnet.
	_, cluster, _ := net.ParseCIDR("10.244.0.0/16")
	if err := nh.RouteAdd(&netlink.Route{LinkIndex: dev.Attrs().Index, Dst: cluster, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	if o := run(); o.Status != check.Pass {
		t.Fatalf("a covering route: %s %s", o.Status, o.Message)
	}
	if err := nh.LinkSetDown(dev); err != nil {
		t.Fatal(err)
	}
	if o := run(); o.Status != check.Fail || !strings.Contains(o.Message, "flannel.1 is down") {
		t.Fatalf("device down: %s %q", o.Status, o.Message)
	}
}

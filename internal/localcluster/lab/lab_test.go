package lab

import (
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func testLab(t *testing.T) *Lab {
	t.Helper()
	if testing.Short() {
		t.Skip("creates network namespaces")
	}
	l := Plan("labtest-"+t.Name()[:4], 16, map[string]string{"a": "172.31.0.1", "b": "172.31.0.2", "c": "172.31.0.3"}, []string{"a", "b", "c"})
	if err := l.Create(); err != nil {
		t.Fatalf("creating the lab (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := l.Delete(); err != nil {
			t.Error(err)
		}
		for _, n := range l.Nodes {
			if _, err := os.Stat(n.Path()); err == nil {
				t.Errorf("namespace %s left behind", n.NetNS)
			}
		}
	})
	return l
}

// echo answers UDP on node n's address and returns the address.
func echo(t *testing.T, n Node) string {
	t.Helper()
	c, err := ListenPacket(n.Path(), "udp", n.IP+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			k, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo(buf[:k], from)
		}
	}()
	return c.LocalAddr().String()
}

// roundTrips sends count datagrams from node from to addr, one at a time,
// and returns how many came back.
func roundTrips(t *testing.T, from Node, addr string, count int) int {
	t.Helper()
	var c net.Conn
	err := Do(from.Path(), func() (err error) { c, err = net.Dial("udp", addr); return err })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ok := 0
	buf := make([]byte, 64)
	for i := range count {
		_ = c.SetDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			continue
		}
		if k, err := c.Read(buf); err == nil && k == 1 && buf[0] == byte(i) {
			ok++
		}
	}
	return ok
}

func TestLabPathsLinkDownAndLoss(t *testing.T) {
	l := testLab(t)
	a, _ := l.NodeByName("a")
	b, _ := l.NodeByName("b")
	c, _ := l.NodeByName("c")
	toB := echo(t, b)
	toC := echo(t, c)
	if got := roundTrips(t, a, toB, 50); got != 50 {
		t.Fatalf("quiet lab: %d of 50 round trips a->b", got)
	}
	if err := l.SetLink("b", false); err != nil {
		t.Fatal(err)
	}
	if got := roundTrips(t, a, toB, 10); got != 0 {
		t.Fatalf("b's link is down but %d of 10 round trips a->b came back", got)
	}
	if got := roundTrips(t, a, toC, 10); got != 10 {
		t.Fatalf("b's link is down and a->c lost: %d of 10", got)
	}
	if err := l.SetLink("b", true); err != nil {
		t.Fatal(err)
	}
	// The veth needs a few milliseconds to carry again.
	deadline := time.Now().Add(time.Second)
	for roundTrips(t, a, toB, 10) != 10 {
		if time.Now().After(deadline) {
			t.Fatal("a->b does not recover within a second of b's link coming back")
		}
	}
	if err := l.SetLoss("c", 50); err != nil {
		t.Fatal(err)
	}
	got := roundTrips(t, a, toC, 400)
	// 50% on c's input: requests dropped at c, replies arrive at a whole.
	if got < 140 || got > 260 {
		t.Fatalf("50%% loss on c: %d of 400 round trips", got)
	}
	if err := l.SetLoss("c", 0); err != nil {
		t.Fatal(err)
	}
	if got := roundTrips(t, a, toC, 100); got != 100 {
		t.Fatalf("loss removed but %d of 100", got)
	}
}

// TestLabIgnoresHostFirewall rejects every forwarded packet of the lab's
// subnet in the host's firewall: once br_netfilter is loaded (kube-router
// loads it), a bridge in the host namespace would pass the lab's packets
// through it, and a CI machine's firewall rejected them all. The lab's
// bridge lives in a namespace of its own, so nodes still reach each other.
func TestLabIgnoresHostFirewall(t *testing.T) {
	l := testLab(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Fatalf("iptables is needed to give the host a firewall: %v", err)
	}
	rule := []string{"FORWARD", "-s", "172.31.0.0/16", "-j", "REJECT"}
	if out, err := exec.Command("iptables", append([]string{"-I"}, rule...)...).CombinedOutput(); err != nil {
		t.Fatalf("iptables -I %v: %v: %s", rule, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("iptables", append([]string{"-D"}, rule...)...).CombinedOutput(); err != nil {
			t.Errorf("iptables -D %v: %v: %s", rule, err, out)
		}
	})
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		t.Log("br_netfilter is not loaded on this host: a host bridge would not meet the rule either")
	}
	a, _ := l.NodeByName("a")
	b, _ := l.NodeByName("b")
	if got := roundTrips(t, a, echo(t, b), 50); got != 50 {
		t.Fatalf("with the host rejecting forwarded packets: %d of 50 round trips a->b", got)
	}
	sw, err := Netlink(l.SwitchPath())
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	if _, err := sw.LinkByName(l.Bridge); err != nil {
		t.Errorf("bridge %s is not in namespace %s: %v", l.Bridge, l.Switch, err)
	}
	if _, err := netlink.LinkByName(l.Bridge); err == nil {
		t.Errorf("bridge %s is in the host's namespace", l.Bridge)
	}
}

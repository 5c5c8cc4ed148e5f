package probe

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hitless-dev/hitless/internal/localcluster/lab"
)

// peer is one lab node's probe endpoint and TCP echo server.
type peer struct {
	node lab.Node
	ep   *Endpoint
	udp  *net.UDPAddr
	tcp  string
	stop func()
}

func newLab(t testing.TB, name string, nodes int) *lab.Lab {
	t.Helper()
	if testing.Short() {
		t.Skip("creates network namespaces")
	}
	ips := map[string]string{}
	var order []string
	for i := range nodes {
		n := fmt.Sprintf("n%d", i+1)
		ips[n] = fmt.Sprintf("172.31.%d.%d", len(name)%200, i+1)
		order = append(order, n)
	}
	l := lab.Plan("pt-"+name, 16, ips, order)
	if err := l.Create(); err != nil {
		t.Fatalf("creating the lab (needs root): %v", err)
	}
	t.Cleanup(func() { _ = l.Delete() })
	return l
}

func startPeer(t testing.TB, n lab.Node) *peer {
	t.Helper()
	c, err := lab.ListenPacket(n.Path(), "udp", n.IP+":9473")
	if err != nil {
		t.Fatal(err)
	}
	l, err := lab.Listen(n.Path(), "tcp", n.IP+":9473")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			go func() {
				buf := make([]byte, 256)
				for {
					k, err := conn.Read(buf)
					if err != nil {
						_ = conn.Close()
						return
					}
					_, _ = conn.Write(buf[:k])
				}
			}()
		}
	}()
	p := &peer{node: n, ep: Serve(c), udp: c.LocalAddr().(*net.UDPAddr), tcp: l.Addr().String()}
	// stop is what the process dying does: every socket closes.
	p.stop = func() {
		_ = c.Close()
		_ = l.Close()
		mu.Lock()
		for _, conn := range conns {
			_ = conn.Close()
		}
		mu.Unlock()
	}
	t.Cleanup(p.stop)
	return p
}

func dialIn(path string) Dialer {
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = lab.Do(path, func() error {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// probeAll starts a session on every peer to every other peer.
func probeAll(peers []*peer, rate int) []*Session {
	var out []*Session
	for _, from := range peers {
		var targets []Target
		for _, to := range peers {
			if to != from {
				targets = append(targets, Target{Node: to.node.Name, UDP: to.udp, TCP: to.tcp})
			}
		}
		out = append(out, Start(context.Background(), from.ep, Options{ID: "s", From: from.node.Name, Rate: rate, Dial: dialIn(from.node.Path())}, targets))
	}
	return out
}

func stopAll(sessions []*Session) map[string]Path {
	out := map[string]Path{}
	for _, s := range sessions {
		s.Stop()
		for _, p := range s.Paths() {
			out[p.From+">"+p.To] = p
		}
	}
	return out
}

// A 2.0 s link-down on one node is measured as 2.0 s +- 50 ms on every
// path through it and on no other path.
func TestLinkDownMeasured(t *testing.T) {
	t.Parallel()
	l := newLab(t, "linkdown", 3)
	var peers []*peer
	for _, n := range l.Nodes {
		peers = append(peers, startPeer(t, n))
	}
	sessions := probeAll(peers, 100)
	time.Sleep(time.Second)
	if err := l.SetLink("n2", false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := l.SetLink("n2", true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	paths := stopAll(sessions)
	if len(paths) != 6 {
		t.Fatalf("%d paths measured, want 6 (3 nodes, each to the 2 others): %v", len(paths), slices.Collect(maps.Keys(paths)))
	}
	for key, p := range paths {
		through := p.From == "n2" || p.To == "n2"
		switch {
		case through && len(p.Windows) != 1:
			t.Errorf("%s: %d loss windows, want 1: %+v", key, len(p.Windows), p.Windows)
		case through && math.Abs(p.Windows[0].DurationMs-2000) > 50:
			t.Errorf("%s: outage measured %.1f ms, want 2000 +- 50", key, p.Windows[0].DurationMs)
		case !through && p.Lost != 0:
			t.Errorf("%s does not pass n2 but lost %d probes: %+v", key, p.Lost, p.Windows)
		}
		if through {
			t.Logf("%s: outage %.1f ms, %d probes lost of %d", key, p.LongestOutageMs, p.Lost, p.Sent)
		}
	}
}

// 5 % random loss injected with nftables, over 10,000 probes, is measured
// within +- 1 %.
func TestRandomLossMeasured(t *testing.T) {
	t.Parallel()
	l := newLab(t, "randomloss", 2)
	a, b := startPeer(t, l.Nodes[0]), startPeer(t, l.Nodes[1])
	if err := l.SetLoss("n2", 5); err != nil {
		t.Fatal(err)
	}
	s := Start(context.Background(), a.ep, Options{ID: "loss", From: "n1", Rate: 1000}, []Target{{Node: "n2", UDP: b.udp}})
	// 10,000 probes: 10 s at 1,000/s, longer on a busy machine, whose
	// ticker drops ticks.
	deadline := time.Now().Add(time.Minute)
	for s.Paths()[0].Sent < 10000 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	s.Stop()
	p := s.Paths()[0]
	if p.Sent < 10000 {
		t.Fatalf("only %d probes sent in a minute", p.Sent)
	}
	t.Logf("n1>n2: %d sent, %d lost, %.3f%%", p.Sent, p.Lost, p.LossPct)
	if math.Abs(p.LossPct-5) > 1 {
		t.Fatalf("measured %.3f%% loss, want 5 +- 1", p.LossPct)
	}
}

// A quiet lab network for 60 s: not one probe lost, on any path.
func TestQuietNetworkLosesNothing(t *testing.T) {
	t.Parallel()
	l := newLab(t, "quiet", 3)
	var peers []*peer
	for _, n := range l.Nodes {
		peers = append(peers, startPeer(t, n))
	}
	sessions := probeAll(peers, 100)
	time.Sleep(60 * time.Second)
	paths := stopAll(sessions)
	if len(paths) != 6 {
		t.Fatalf("%d paths measured, want 6 (3 nodes, each to the 2 others): %v", len(paths), slices.Collect(maps.Keys(paths)))
	}
	for key, p := range paths {
		if p.Lost != 0 || p.Sent < 4000 || p.Received != p.Sent || p.TCPResets != 0 {
			t.Errorf("%s: sent %d received %d lost %d resets %d", key, p.Sent, p.Received, p.Lost, p.TCPResets)
		}
	}
}

// A long-lived TCP connection reset by a fault (the peer's agent
// restarting) is counted.
func TestTCPResetCounted(t *testing.T) {
	t.Parallel()
	l := newLab(t, "tcpreset", 2)
	a, b := startPeer(t, l.Nodes[0]), startPeer(t, l.Nodes[1])
	s := Start(context.Background(), a.ep, Options{ID: "tcp", From: "n1", Rate: 100, Dial: dialIn(a.node.Path())},
		[]Target{{Node: "n2", UDP: b.udp, TCP: b.tcp}})
	time.Sleep(time.Second)
	if p := s.Paths()[0]; !p.TCPConnected || p.TCPResets != 0 {
		t.Fatalf("before the fault: %+v", p)
	}
	b.stop() // the agent on n2 dies: its sockets close
	time.Sleep(500 * time.Millisecond)
	startPeer(t, b.node) // and comes back
	time.Sleep(time.Second)
	s.Stop()
	p := s.Paths()[0]
	if p.TCPResets != 1 {
		t.Fatalf("%d TCP resets counted, want 1", p.TCPResets)
	}
	if p.Lost == 0 || len(p.Windows) != 1 {
		t.Fatalf("the restart is not a loss window: %+v", p)
	}
}

func TestTrackerWindows(t *testing.T) {
	tr := NewTracker("a", "b", "udp", 100, 100*time.Millisecond)
	base := time.Unix(1000, 0)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	for i := range 10 {
		seq := tr.Next(at(i * 10))
		if i < 3 || i > 6 { // probes 3..6 lost
			tr.Answered(seq, at(i*10+1))
		}
	}
	tr.Judge(at(1000))
	p := tr.Snapshot(at(1000))
	if p.Sent != 10 || p.Received != 6 || p.Lost != 4 || p.LossPct != 40 {
		t.Fatalf("counts %+v", p)
	}
	if len(p.Windows) != 1 || p.Windows[0].DurationMs != 40 || p.Windows[0].Lost != 4 || !p.Windows[0].Start.Equal(at(30)) {
		t.Fatalf("window %+v, want 30ms..70ms, 4 lost", p.Windows)
	}
	if p.Latency.P50 < 0.95 || p.Latency.P50 > 1.05 {
		t.Fatalf("latency %+v, want about 1 ms", p.Latency)
	}
}

// A polled path (the API server, DNS): a stretch of failing polls is one
// loss window as long as the stretch.
func TestPollWindow(t *testing.T) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	s := Start(context.Background(), Serve(c), Options{ID: "poll", From: "n1"}, nil)
	var down sync.Mutex
	failing := false
	s.AddPoll("apiserver", "http", 50, func(context.Context) error {
		down.Lock()
		defer down.Unlock()
		if failing {
			return fmt.Errorf("refused")
		}
		return nil
	})
	set := func(v bool) { down.Lock(); failing = v; down.Unlock() }
	time.Sleep(500 * time.Millisecond)
	set(true)
	time.Sleep(time.Second)
	set(false)
	time.Sleep(500 * time.Millisecond)
	s.Stop()
	p := s.Paths()[0]
	if p.To != "apiserver" || p.Kind != "http" || len(p.Windows) != 1 {
		t.Fatalf("path %+v, want one window", p)
	}
	if d := p.Windows[0].DurationMs; d < 940 || d > 1060 {
		t.Fatalf("window of %.0f ms, want about 1000", d)
	}
}

// A peer restarted at a new address (an agent's pod re-wired by a new
// data plane) is probed there once the session is retargeted: its path
// carries on, the outage ends, and it is one path, not two.
func TestRetarget(t *testing.T) {
	listen := func() (net.PacketConn, *net.UDPAddr) {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return c, c.LocalAddr().(*net.UDPAddr)
	}
	selfConn, _ := listen()
	defer func() { _ = selfConn.Close() }()
	self := Serve(selfConn)
	oldConn, oldAddr := listen()
	Serve(oldConn)
	s := Start(context.Background(), self, Options{ID: "retarget", From: "a", Rate: 100, Timeout: 200 * time.Millisecond},
		[]Target{{Node: "b", UDP: oldAddr}})
	time.Sleep(500 * time.Millisecond)
	_ = oldConn.Close() // the peer's pod goes
	time.Sleep(500 * time.Millisecond)
	newConn, newAddr := listen() // and comes back elsewhere
	defer func() { _ = newConn.Close() }()
	Serve(newConn)
	s.Retarget([]Target{{Node: "b", UDP: newAddr}, {Node: "unknown", UDP: oldAddr}})
	time.Sleep(time.Second)
	s.Stop()
	paths := s.Paths()
	if len(paths) != 1 || paths[0].To != "b" {
		t.Fatalf("paths %+v, want the one path a -> b", paths)
	}
	p := paths[0]
	if p.Lost == 0 || p.LongestOutageMs < 300 || p.LongestOutageMs > 1500 {
		t.Errorf("lost %d, longest outage %.0f ms: want the restart's half second or so", p.Lost, p.LongestOutageMs)
	}
	if last := p.Windows[len(p.Windows)-1]; last.Open {
		t.Errorf("the outage is still open after the retarget: %+v", last)
	}
	t.Logf("sent %d, lost %d, longest outage %.0f ms", p.Sent, p.Lost, p.LongestOutageMs)
}

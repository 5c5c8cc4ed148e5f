package probe

import (
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// FuzzPacket: whatever arrives, an endpoint sends back at most what it
// received, only in answer to an ask, and never something another
// endpoint would send back again; a session handed any answer counts
// only its own probes.
func FuzzPacket(f *testing.F) {
	f.Add(Ask(7, time.Unix(1, 0)))
	f.Add([]byte("hitless 1700000000000000000\n"))
	f.Add(append([]byte(magic), 2, 0, 0, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		switch classify(b) {
		case answer:
			reply := append([]byte{}, b...)
			reply[4] = kindAnswer
			if classify(reply) == answer {
				t.Fatalf("the answer to %x would be answered again", b)
			}
			if !Answered(b, reply) {
				t.Fatalf("the answer to %x is not taken for its answer", b)
			}
		case deliver:
			s := &Session{tag: 0}
			tr := NewTracker("a", "b", "udp", 100, time.Second)
			from := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 9473}
			s.table.Store(&addrTable{addrs: []*net.UDPAddr{from}, byAddr: map[string]*Tracker{from.String(): tr}})
			tr.Next(time.Unix(1, 0))
			s.answered(from, b, time.Unix(2, 0))
			tr.Judge(time.Unix(10, 0))
			if p := tr.Snapshot(time.Unix(10, 0)); p.Received > p.Sent || p.Received+p.Lost != p.Sent {
				t.Fatalf("after %x: sent %d, received %d, lost %d", b, p.Sent, p.Received, p.Lost)
			}
		case drop:
		}
	})
}

// TestEndpointsNeverBounce: a datagram that is not an ask, sent to an
// endpoint with another endpoint's address as its source, is dropped; an
// answer to an ask is not answered again. Two endpoints on loopback, a
// stranger's datagram spoofed through a third socket bound to nothing.
func TestEndpointsNeverBounce(t *testing.T) {
	conns := make([]net.PacketConn, 2)
	for i := range conns {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		conns[i] = c
	}
	// Endpoint a serves its socket; b's socket stays a plain socket we
	// read, standing for an endpoint whose traffic we watch.
	Serve(conns[0])
	a, b := conns[0].LocalAddr(), conns[1]
	read := func() []byte {
		buf := make([]byte, 2048)
		_ = b.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := b.ReadFrom(buf)
		if err != nil {
			return nil
		}
		return buf[:n]
	}
	for _, tc := range []struct {
		name string
		send []byte
		want bool // an answer comes back
	}{
		{"a stranger's datagram", []byte("hitless 1700000000000000000\n"), false},
		{"an answer", func() []byte { p := Ask(1, time.Now()); p[4] = kindAnswer; return p }(), false},
		{"an unknown kind", func() []byte { p := Ask(1, time.Now()); p[4] = 9; return p }(), false},
		{"an ask", Ask(2, time.Now()), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.WriteTo(tc.send, a); err != nil {
				t.Fatal(err)
			}
			got := read()
			switch {
			case tc.want && !Answered(tc.send, got):
				t.Fatalf("no answer to the ask: got %x", got)
			case !tc.want && got != nil:
				t.Fatalf("the endpoint sent back %x", got)
			}
		})
	}
}

// A served socket has the large receive buffer (as root, past the
// system's rmem_max): a reader held up by a busy CPU loses nothing that
// arrived meanwhile.
func TestServeGrowsReceiveBuffer(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	size := func() int {
		raw, err := conn.(*net.UDPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var n int
		var gerr error
		if err := raw.Control(func(fd uintptr) { n, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) }); err != nil || gerr != nil {
			t.Fatal(err, gerr)
		}
		return n
	}
	before := size()
	Serve(conn)
	after := size()
	// The kernel doubles what is asked (its bookkeeping).
	want := before + 1
	if os.Geteuid() == 0 {
		want = ReceiveBuffer
	}
	if after < want {
		t.Fatalf("receive buffer %d bytes after Serve (was %d), want at least %d", after, before, want)
	}
}

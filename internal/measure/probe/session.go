package probe

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"io"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

const (
	// judgeEvery is how often outstanding probes are judged; windows are
	// timed from send times, so this only delays the verdict.
	judgeEvery = 50 * time.Millisecond
)

// Target is a peer to probe.
type Target struct {
	Node string
	UDP  *net.UDPAddr
	// TCP is the peer's TCP echo address for the long-lived connection;
	// "" for none.
	TCP string
}

// Dialer opens connections (inside the node's network namespace in the
// lab).
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// Options shape a session.
type Options struct {
	ID      string
	From    string
	Rate    int           // probes per second per peer (default 100)
	Timeout time.Duration // a probe unanswered this long is lost (default 1s)
	Dial    Dialer
}

// Session probes a set of peers until stopped.
type Session struct {
	opts    Options
	ep      *Endpoint
	tag     uint32
	table   atomic.Pointer[addrTable]
	udp     []*Tracker // by target, fixed at Start
	nodes   []string   // each udp tracker's node
	mu      sync.Mutex
	polls   []*Tracker
	ctx     context.Context // ends sending
	cancel  context.CancelFunc
	judging context.CancelFunc // ends judging, after the last answers
	wg      sync.WaitGroup
	judgeWG sync.WaitGroup
	stopped atomic.Bool
}

// addrTable is where each target is probed (by the index of its
// tracker) and whose answer an address is; Retarget swaps it whole.
type addrTable struct {
	addrs  []*net.UDPAddr
	byAddr map[string]*Tracker
}

func sessionTag(id string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return h.Sum32()
}

// Start begins probing targets from the endpoint's socket; the endpoint
// hands the answers to the session.
func Start(ctx context.Context, ep *Endpoint, opts Options, targets []Target) *Session {
	if opts.Rate <= 0 {
		opts.Rate = 100
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	jctx, judging := context.WithCancel(ctx)
	ctx, cancel := context.WithCancel(ctx)
	s := &Session{opts: opts, ep: ep, tag: sessionTag(opts.ID), ctx: ctx, cancel: cancel, judging: judging}
	sort.Slice(targets, func(i, j int) bool { return targets[i].Node < targets[j].Node })
	table := &addrTable{byAddr: map[string]*Tracker{}}
	for _, t := range targets {
		tr := NewTracker(opts.From, t.Node, "udp", opts.Rate, opts.Timeout)
		table.byAddr[t.UDP.String()] = tr
		table.addrs = append(table.addrs, t.UDP)
		s.udp = append(s.udp, tr)
		s.nodes = append(s.nodes, t.Node)
		if t.TCP != "" && opts.Dial != nil {
			s.wg.Go(func() { keepTCP(ctx, opts.Dial, t.TCP, tr) })
		}
	}
	s.table.Store(table)
	ep.session.Store(s)
	s.wg.Go(func() { s.send(ctx, targets) })
	s.judgeWG.Go(func() { s.judge(jctx) })
	return s
}

// AddPoll adds a path measured by calling fn rate times a second (the API
// server, DNS) for the session's life: an error or a timeout is a lost
// probe. Call it right after Start, before Stop.
func (s *Session) AddPoll(to, kind string, rate int, fn func(ctx context.Context) error) {
	ctx := s.ctx
	tr := NewTracker(s.opts.From, to, kind, rate, s.opts.Timeout)
	s.mu.Lock()
	s.polls = append(s.polls, tr)
	s.mu.Unlock()
	s.wg.Go(func() {
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			seq := tr.Next(time.Now())
			// Not the session's context: stopping must not turn the
			// probe in flight into a loss.
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.Timeout)
			err := fn(pctx)
			cancel()
			if err == nil {
				tr.Answered(seq, time.Now())
			}
		}
	})
}

func (s *Session) send(ctx context.Context, targets []Target) {
	t := time.NewTicker(time.Second / time.Duration(s.opts.Rate))
	defer t.Stop()
	msgs := newMessages(len(targets), packetLen)
	for i := range targets {
		buf := msgs[i].Buffers[0]
		copy(buf, magic)
		buf[4] = kindAsk
		binary.BigEndian.PutUint32(buf[5:], s.tag)
	}
	var table *addrTable
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if cur := s.table.Load(); cur != table {
				table = cur
				for i := range msgs {
					msgs[i].Addr = table.addrs[i]
				}
			}
			for i := range targets {
				buf := msgs[i].Buffers[0]
				binary.BigEndian.PutUint64(buf[9:], s.udp[i].Next(now))
				binary.BigEndian.PutUint64(buf[17:], uint64(now.UnixNano())) //nolint:gosec // a timestamp
			}
			s.ep.b.write(msgs)
		}
	}
}

func (s *Session) judge(ctx context.Context) {
	t := time.NewTicker(judgeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, tr := range s.all() {
				tr.Judge(now)
			}
		}
	}
}

func (s *Session) answered(from net.Addr, b []byte, at time.Time) {
	if len(b) != packetLen {
		return
	}
	if binary.BigEndian.Uint32(b[5:]) != s.tag {
		return // an earlier session's late answer
	}
	if tr := s.table.Load().byAddr[from.String()]; tr != nil {
		tr.Answered(binary.BigEndian.Uint64(b[9:]), at)
	}
}

// Retarget probes each target's node at its new address from now on (a
// peer restarted on the pod network has a new one); its path carries on.
// A node the session did not start with is ignored.
func (s *Session) Retarget(targets []Target) {
	old := s.table.Load()
	table := &addrTable{addrs: slices.Clone(old.addrs), byAddr: map[string]*Tracker{}}
	changed := false
	for _, t := range targets {
		for i, node := range s.nodes {
			if node == t.Node && t.UDP != nil && t.UDP.String() != table.addrs[i].String() {
				table.addrs[i] = t.UDP
				changed = true
			}
		}
	}
	if !changed {
		return
	}
	for i, tr := range s.udp {
		table.byAddr[table.addrs[i].String()] = tr
	}
	s.table.Store(table)
}

func (s *Session) all() []*Tracker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(append([]*Tracker{}, s.udp...), s.polls...)
}

// Stop ends probing: outstanding probes get their timeout, then every
// path is judged to the end.
func (s *Session) Stop() {
	if s.stopped.Swap(true) {
		return
	}
	s.cancel() // stop sending
	s.wg.Wait()
	time.Sleep(s.opts.Timeout) // let the last answers arrive
	s.judging()
	s.judgeWG.Wait()
	s.ep.session.CompareAndSwap(s, nil)
	now := time.Now()
	for _, tr := range s.all() {
		tr.Flush(now)
	}
}

// Paths returns every path's numbers so far.
func (s *Session) Paths() []Path {
	now := time.Now()
	all := s.all()
	out := make([]Path, 0, len(all))
	for _, tr := range all {
		out = append(out, tr.Snapshot(now))
	}
	return out
}

// keepTCP holds a long-lived connection to addr, writing a line every
// 100ms and reading its echo; a reset or close by the peer is counted,
// then the connection is made again.
func keepTCP(ctx context.Context, dial Dialer, addr string, tr *Tracker) {
	for ctx.Err() == nil {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := dial(dctx, "tcp", addr)
		cancel()
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		tr.TCPConnected(true)
		exchanged, reset := hold(ctx, c)
		if reset && exchanged {
			// Only a connection that carried data counts: a peer that
			// accepts and closes at once is not up yet.
			tr.TCPReset()
		}
		tr.TCPConnected(false)
		_ = c.Close()
		if reset {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// hold exchanges lines on c until ctx ends or the peer resets or closes
// it (reset). exchanged says whether at least one line came back.
// Timeouts are outages, not resets: TCP retransmits through them.
func hold(ctx context.Context, c net.Conn) (exchanged, reset bool) {
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	r := bufio.NewReader(c)
	line := []byte("hitless-keepalive\n")
	for ctx.Err() == nil {
		_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(line); err != nil {
			return exchanged, ctx.Err() == nil && isReset(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := r.ReadBytes('\n'); err != nil {
			return exchanged, ctx.Err() == nil && isReset(err)
		}
		exchanged = true
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return exchanged, false
}

func isReset(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// Endpoint serves a UDP socket: it answers asks (the sessions' probes and
// the agents' one-off connectivity checks), hands answers to the running
// session and drops anything else.
type Endpoint struct {
	conn    net.PacketConn
	b       *batcher
	session atomic.Pointer[Session]
}

// ReceiveBuffer is the receive buffer a served socket asks for: a busy
// CPU (a build beside the measurement on two cores) delays the reader for
// a hundred milliseconds and more, and the kernel's default buffer drops
// what arrives meanwhile, which would read as loss on the network.
const ReceiveBuffer = 4 << 20

// Serve starts serving conn until it is closed. It enlarges the socket's
// receive buffer to ReceiveBuffer (beyond net.core.rmem_max where it is
// allowed to: CAP_NET_ADMIN).
func Serve(conn net.PacketConn) *Endpoint {
	growReceiveBuffer(conn)
	ep := &Endpoint{conn: conn, b: newBatcher(conn)}
	go ep.loop()
	return ep
}

func (ep *Endpoint) loop() {
	in := newMessages(batchSize, 2048)
	out := make([]ipv4.Message, 0, batchSize)
	for {
		n, err := ep.b.read(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := time.Now()
		out = out[:0]
		s := ep.session.Load()
		for _, m := range in[:n] {
			b := m.Buffers[0][:m.N]
			switch classify(b) {
			case answer:
				b[4] = kindAnswer
				out = append(out, ipv4.Message{Buffers: [][]byte{b}, Addr: m.Addr})
			case deliver:
				if s != nil {
					s.answered(m.Addr, b, now)
				}
			case drop:
			}
		}
		if len(out) > 0 {
			ep.b.write(out)
		}
	}
}

// growReceiveBuffer asks for ReceiveBuffer bytes of receive buffer, forced
// past the system's limit when the process may, else up to that limit.
func growReceiveBuffer(conn net.PacketConn) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	forced := false
	_ = raw.Control(func(fd uintptr) {
		forced = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, ReceiveBuffer) == nil
	})
	if !forced {
		if rb, ok := conn.(interface{ SetReadBuffer(int) error }); ok {
			_ = rb.SetReadBuffer(ReceiveBuffer)
		}
	}
}

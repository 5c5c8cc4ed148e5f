package probe

import (
	"net"

	"golang.org/x/net/ipv4"
)

// batchSize is how many datagrams one system call moves.
const batchSize = 64

// batcher moves datagrams in batches (sendmmsg, recvmmsg) on an IPv4 UDP
// socket, and one at a time on any other.
type batcher struct {
	conn net.PacketConn
	v4   *ipv4.PacketConn
}

func newBatcher(conn net.PacketConn) *batcher {
	b := &batcher{conn: conn}
	if u, ok := conn.(*net.UDPConn); ok {
		if a, ok := u.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
			b.v4 = ipv4.NewPacketConn(u)
		}
	}
	return b
}

// write sends msgs; errors of single datagrams are dropped, as a lost
// probe is what the tracker measures.
func (b *batcher) write(msgs []ipv4.Message) {
	if b.v4 == nil || len(msgs) == 1 {
		for _, m := range msgs {
			_, _ = b.conn.WriteTo(m.Buffers[0], m.Addr)
		}
		return
	}
	for len(msgs) > 0 {
		n, err := b.v4.WriteBatch(msgs, 0)
		if err != nil || n <= 0 {
			n = 1 // skip the datagram that failed
		}
		msgs = msgs[n:]
	}
}

// read fills msgs with up to len(msgs) datagrams and returns how many.
func (b *batcher) read(msgs []ipv4.Message) (int, error) {
	if b.v4 == nil {
		n, from, err := b.conn.ReadFrom(msgs[0].Buffers[0])
		if err != nil {
			return 0, err
		}
		msgs[0].N, msgs[0].Addr = n, from
		return 1, nil
	}
	return b.v4.ReadBatch(msgs, 0)
}

func newMessages(n, size int) []ipv4.Message {
	msgs := make([]ipv4.Message, n)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, size)}
	}
	return msgs
}

package probe

import (
	"encoding/binary"
	"time"
)

// Wire format of a UDP probe: magic, kind, session tag, sequence number,
// send time (unix ns). The answer is the same datagram with kind answer.
const (
	magic      = "HLP1"
	kindAsk    = 1
	kindAnswer = 2
	packetLen  = 4 + 1 + 4 + 8 + 8
)

// verdict is what an endpoint does with a datagram it receives.
type verdict int

const (
	drop    verdict = iota // not a probe, or an answer with no session
	answer                 // an ask: sent back as an answer
	deliver                // an answer: handed to the running session
)

// classify decides what an endpoint does with b. Only an ask is ever sent
// back, and what is sent back is an answer, which no endpoint sends back:
// two endpoints cannot be made to bounce a datagram between them, and an
// endpoint never sends more bytes than it received.
func classify(b []byte) verdict {
	if len(b) != packetLen || string(b[:4]) != magic {
		return drop
	}
	switch b[4] {
	case kindAsk:
		return answer
	case kindAnswer:
		return deliver
	}
	return drop
}

// Ask returns a one-off probe (tag 0) with sequence number seq, for a
// connectivity check from a socket of its own: an endpoint answers it
// with Answered(ask, reply) true.
func Ask(seq uint64, at time.Time) []byte {
	b := make([]byte, packetLen)
	copy(b, magic)
	b[4] = kindAsk
	binary.BigEndian.PutUint64(b[9:], seq)
	binary.BigEndian.PutUint64(b[17:], uint64(at.UnixNano())) //nolint:gosec // a timestamp
	return b
}

// Answered says whether reply is an endpoint's answer to ask.
func Answered(ask, reply []byte) bool {
	return len(ask) == packetLen && len(reply) == packetLen && reply[4] == kindAnswer &&
		string(reply[:4]) == string(ask[:4]) && string(reply[5:]) == string(ask[5:])
}

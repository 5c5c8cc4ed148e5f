package probe

import (
	"math"
	"sync"
	"time"
)

// Window is one outage on a path: from the first lost probe's send time
// to the send time of the next probe that came back.
type Window struct {
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	DurationMs float64   `json:"durationMs"`
	Lost       int       `json:"lost"`
	Open       bool      `json:"open,omitempty"` // still going when measured
}

// Latency is a path's round-trip time distribution, in milliseconds.
type Latency struct {
	P50 float64 `json:"p50Ms"`
	P90 float64 `json:"p90Ms"`
	P99 float64 `json:"p99Ms"`
	Max float64 `json:"maxMs"`
}

// Path is what one path measured.
type Path struct {
	From            string   `json:"from"`
	To              string   `json:"to"`
	Kind            string   `json:"kind"` // udp, http, dns
	Sent            int64    `json:"sent"`
	Received        int64    `json:"received"`
	Lost            int64    `json:"lost"`
	LossPct         float64  `json:"lossPct"`
	LongestOutageMs float64  `json:"longestOutageMs"`
	Windows         []Window `json:"windows"`
	Latency         Latency  `json:"latency"`
	TCPResets       int64    `json:"tcpResets"`
	TCPConnected    bool     `json:"tcpConnected"`
}

// maxWindows bounds the windows a path keeps (the longest are kept).
const maxWindows = 2000

// Tracker judges one path's probes in sequence order: a probe is received
// when its answer arrives, lost when its timeout passes first.
type Tracker struct {
	mu       sync.Mutex
	path     Path
	timeout  time.Duration
	sentAt   []int64 // unix ns by seq % len
	got      []bool
	next     uint64 // next seq to send
	judged   uint64 // next seq to judge
	open     *Window
	hist     histogram
	windows  []Window
	longest  float64
	resets   int64
	tcpAlive bool
}

// NewTracker returns a tracker for a path probed at rate per second.
func NewTracker(from, to, kind string, rate int, timeout time.Duration) *Tracker {
	size := max(1024, int(float64(rate)*timeout.Seconds()*4))
	return &Tracker{path: Path{From: from, To: to, Kind: kind}, timeout: timeout,
		sentAt: make([]int64, size), got: make([]bool, size)}
}

// Next reserves the next sequence number and records its send time.
func (t *Tracker) Next(at time.Time) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	seq := t.next
	t.next++
	i := seq % uint64(len(t.sentAt))
	t.sentAt[i], t.got[i] = at.UnixNano(), false
	t.path.Sent++
	return seq
}

// Answered records the answer to seq, received at.
func (t *Tracker) Answered(seq uint64, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq < t.judged || seq >= t.next {
		return // too late (already judged lost) or not ours
	}
	i := seq % uint64(len(t.sentAt))
	if t.got[i] {
		return // duplicate
	}
	t.got[i] = true
	t.hist.add(float64(at.UnixNano()-t.sentAt[i]) / 1e6)
}

// Judge decides every probe that can be decided at now, in order.
func (t *Tracker) Judge(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	limit := now.Add(-t.timeout).UnixNano()
	for t.judged < t.next {
		i := t.judged % uint64(len(t.sentAt))
		sent := t.sentAt[i]
		switch {
		case t.got[i]:
			t.path.Received++
			if t.open != nil {
				t.close(time.Unix(0, sent))
			}
		case sent <= limit:
			t.path.Lost++
			if t.open == nil {
				t.open = &Window{Start: time.Unix(0, sent)}
			}
			t.open.Lost++
		default:
			return
		}
		t.judged++
	}
}

func (t *Tracker) close(end time.Time) {
	w := *t.open
	t.open = nil
	w.End = end
	w.DurationMs = float64(end.Sub(w.Start).Microseconds()) / 1000
	t.longest = max(t.longest, w.DurationMs)
	t.windows = append(t.windows, w)
	if len(t.windows) > maxWindows {
		// Keep the longest: drop the shortest.
		shortest := 0
		for j, x := range t.windows {
			if x.DurationMs < t.windows[shortest].DurationMs {
				shortest = j
			}
		}
		t.windows = append(t.windows[:shortest], t.windows[shortest+1:]...)
	}
}

// Flush judges every outstanding probe as if its timeout had passed, and
// closes an open window at now.
func (t *Tracker) Flush(now time.Time) {
	t.Judge(now.Add(t.timeout + time.Second))
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open != nil {
		t.close(now)
	}
}

// TCPReset counts a reset of the path's long-lived TCP connection.
func (t *Tracker) TCPReset() {
	t.mu.Lock()
	t.resets++
	t.mu.Unlock()
}

// TCPConnected records whether the long-lived connection is up.
func (t *Tracker) TCPConnected(up bool) {
	t.mu.Lock()
	t.tcpAlive = up
	t.mu.Unlock()
}

// Snapshot returns the path's numbers so far; an open window is shown
// with its end at now.
func (t *Tracker) Snapshot(now time.Time) Path {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.path
	p.Windows = append([]Window{}, t.windows...)
	p.LongestOutageMs = t.longest
	if t.open != nil {
		w := *t.open
		w.End, w.Open = now, true
		w.DurationMs = float64(now.Sub(w.Start).Microseconds()) / 1000
		p.Windows = append(p.Windows, w)
		p.LongestOutageMs = max(p.LongestOutageMs, w.DurationMs)
	}
	if judged := p.Received + p.Lost; judged > 0 {
		p.LossPct = math.Round(float64(p.Lost)/float64(judged)*1e5) / 1e3
	}
	p.Latency = t.hist.latency()
	p.TCPResets, p.TCPConnected = t.resets, t.tcpAlive
	return p
}

// histogram keeps round-trip times in logarithmic buckets (about 5%
// wide) from 1 µs to 100 s: bounded memory for any duration.
type histogram struct {
	counts [400]int64
	n      int64
	max    float64
}

const histBase, histGrowth = 0.001, 1.05

func (h *histogram) add(ms float64) {
	i := 0
	if ms > histBase {
		i = min(len(h.counts)-1, int(math.Log(ms/histBase)/math.Log(histGrowth))+1)
	}
	h.counts[i]++
	h.n++
	h.max = max(h.max, ms)
}

func (h *histogram) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return math.Round(histBase*math.Pow(histGrowth, float64(i))*1000) / 1000
		}
	}
	return h.max
}

func (h *histogram) latency() Latency {
	return Latency{P50: h.quantile(0.5), P90: h.quantile(0.9), P99: h.quantile(0.99), Max: math.Round(h.max*1000) / 1000}
}

// Merge adds the numbers of an earlier run of the same session (before an
// agent restarted) to the current ones, path by path.
func Merge(prior, current []Path) []Path {
	if len(prior) == 0 {
		return current
	}
	idx := map[string]int{}
	out := make([]Path, len(current))
	copy(out, current)
	for i, p := range out {
		idx[p.To+"/"+p.Kind] = i
	}
	for _, p := range prior {
		i, ok := idx[p.To+"/"+p.Kind]
		if !ok {
			out = append(out, p)
			continue
		}
		c := &out[i]
		c.Sent += p.Sent
		c.Received += p.Received
		c.Lost += p.Lost
		c.TCPResets += p.TCPResets
		c.Windows = append(append([]Window{}, p.Windows...), c.Windows...)
		c.LongestOutageMs = max(c.LongestOutageMs, p.LongestOutageMs)
		if judged := c.Received + c.Lost; judged > 0 {
			c.LossPct = math.Round(float64(c.Lost)/float64(judged)*1e5) / 1e3
		}
		c.Latency.Max = max(c.Latency.Max, p.Latency.Max)
	}
	return out
}

package agent

import (
	"context"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/measure/probe"
)

// Objects of the probe protocol, in hitless-system.
const (
	ProbeRequestName = "hitless-probe-request"
	LabelProbe       = "hitless.dev/probe-result"
	probePrefix      = "hitless-probe-"
	// MaxSession bounds a session without a duration, should whoever
	// started it never stop it.
	MaxSession = 12 * time.Hour
	// MaxRate bounds the probes per second to each peer, whatever a
	// request asks.
	MaxRate = 1000
	// DefaultRate is the rate of a request that names none.
	DefaultRate = 100
	// publishEvery is how often a running session's numbers are written.
	publishEvery = time.Second
	// pollRate is the rate of the API server probes.
	pollRate = 10
	// retargetEvery is how many publish ticks pass between reads of the
	// peers' addresses.
	retargetEvery = 2
)

// ProbeRequest asks every agent to probe its peers.
type ProbeRequest struct {
	ID       string
	Rate     int
	Duration time.Duration // 0: until stopped
	Sample   int           // peers per agent, 0 for all
	Stop     bool
	Asked    time.Time
}

// ProbeResult is one agent's numbers for a session.
type ProbeResult struct {
	Session string       `json:"session"`
	Node    string       `json:"node"`
	Rate    int          `json:"rate"`
	Started time.Time    `json:"started"`
	Updated time.Time    `json:"updated"`
	Final   bool         `json:"final"`
	Paths   []probe.Path `json:"paths"`
	// Modeled says the node's data plane is the lab's model (its link
	// follows its data-plane pod: --follow-data-plane), so a loss at
	// the node is made, not measured.
	Modeled bool `json:"modeled,omitempty"`
	// MaxLoad is the highest one-minute load average the node showed
	// during the session, beside its CPUs: a loaded node delays probes.
	MaxLoad float64 `json:"maxLoad,omitempty"`
	CPUs    int     `json:"cpus,omitempty"`
}

func probeRequestOf(cm *corev1.ConfigMap) ProbeRequest {
	d := cm.Data
	rate, err := strconv.Atoi(d["rate"])
	if err != nil || rate < 1 {
		rate = DefaultRate
	}
	sample, _ := strconv.Atoi(d["sample"])
	dur, _ := time.ParseDuration(d["duration"])
	asked, _ := time.Parse(time.RFC3339Nano, d["asked"])
	// Whoever wrote the request, an agent never probes faster than
	// MaxRate, and a negative duration or sample means none.
	return ProbeRequest{ID: d["id"], Rate: min(rate, MaxRate), Duration: max(dur, 0), Sample: max(sample, 0), Stop: d["stop"] == "true", Asked: asked}
}

// AskProbe publishes a probe request: every agent starts (or, with Stop,
// ends) the session.
func AskProbe(ctx context.Context, cs kubernetes.Interface, req ProbeRequest) error {
	data := map[string]string{"id": req.ID, "rate": strconv.Itoa(req.Rate), "duration": req.Duration.String(),
		"sample": strconv.Itoa(req.Sample), "stop": strconv.FormatBool(req.Stop), "asked": req.Asked.UTC().Format(time.RFC3339Nano)}
	if err := store.New(cs).PutData(ctx, ProbeRequestName, data); err != nil {
		return fmt.Errorf("asking the agents to probe: %w", err)
	}
	return nil
}

func probeRecords(cs kubernetes.Interface) *store.Records[ProbeResult] {
	return store.For[ProbeResult](store.New(cs), store.Kind{What: "probe result", Key: "result.json.gz"})
}

// ProbeResults reads every agent's latest numbers for session id.
func ProbeResults(ctx context.Context, cs kubernetes.Interface, id string) (map[string]*ProbeResult, error) {
	recs, _, err := probeRecords(cs).List(ctx, LabelProbe, nil)
	if err != nil {
		return nil, err
	}
	out := map[string]*ProbeResult{}
	for _, r := range recs {
		if r.Value.Session == id {
			out[r.Value.Node] = r.Value
		}
	}
	return out, nil
}

func publishProbe(ctx context.Context, cs kubernetes.Interface, r *ProbeResult) error {
	meta := metav1.ObjectMeta{Name: probePrefix + r.Node,
		Labels:      map[string]string{LabelProbe: "true"},
		Annotations: map[string]string{"hitless.dev/session": r.Session}}
	if err := probeRecords(cs).Put(ctx, meta, r); err != nil {
		return fmt.Errorf("publishing probe result of %s: %w", r.Node, err)
	}
	return nil
}

// running is the agent's session in progress.
type running struct {
	id      string
	session *probe.Session
	cancel  context.CancelFunc
	done    chan struct{}
}

func (a *Agent) onProbeRequest(ctx context.Context, req ProbeRequest) {
	a.mu.Lock()
	cur := a.session
	a.mu.Unlock()
	if cur != nil && cur.id == req.ID {
		if req.Stop {
			a.stopSession()
		}
		return
	}
	if req.Stop || req.ID == "" {
		return
	}
	limit := req.Duration
	if limit == 0 {
		limit = MaxSession
	}
	left := time.Until(req.Asked.Add(limit))
	if left <= 0 {
		return // a session that ended before this agent started
	}
	a.stopSession()
	a.startSession(ctx, req, left)
}

func (a *Agent) startSession(ctx context.Context, req ProbeRequest, left time.Duration) {
	log := klog.FromContext(ctx).WithValues("session", req.ID)
	reports, _, err := Reports(ctx, a.cs)
	if err != nil {
		log.Error(err, "reading peers for a probe session")
		return
	}
	targets := a.targets(reports, req.Sample)
	// A restarted agent carries on the session: it keeps what it had
	// measured before the restart.
	var prior []probe.Path
	if old, err := ProbeResults(ctx, a.cs, req.ID); err == nil && old[a.opts.Node] != nil {
		prior = old[a.opts.Node].Paths
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := probe.Start(sctx, a.ep, probe.Options{ID: req.ID, From: a.opts.Node, Rate: req.Rate, Dial: a.dial}, targets)
	s.AddPoll("apiserver", "http", pollRate, func(ctx context.Context) error {
		_, err := a.cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
	if svc, err := a.cs.CoreV1().Services(metav1.NamespaceSystem).Get(ctx, "kube-dns", metav1.GetOptions{}); err == nil && svc.Spec.ClusterIP != "" {
		server := net.JoinHostPort(svc.Spec.ClusterIP, "53")
		resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return a.dial(ctx, network, server)
		}}
		s.AddPoll("dns", "dns", pollRate, func(ctx context.Context) error {
			_, err := resolver.LookupHost(ctx, "kubernetes.default.svc.cluster.local")
			return err
		})
	}
	r := &running{id: req.ID, session: s, cancel: cancel, done: make(chan struct{})}
	a.mu.Lock()
	a.session = r
	a.mu.Unlock()
	log.V(1).Info("probe session started", "peers", len(targets), "rate", req.Rate, "for", left)
	started := time.Now()
	go func() {
		defer close(r.done)
		t := time.NewTicker(publishEvery)
		defer t.Stop()
		end := time.After(left)
		maxLoad := LoadAverage(a.opts.Proc)
		result := func(final bool) *ProbeResult {
			maxLoad = max(maxLoad, LoadAverage(a.opts.Proc))
			return &ProbeResult{Session: req.ID, Node: a.opts.Node, Rate: req.Rate, Started: started, Updated: time.Now(),
				Final: final, Paths: probe.Merge(prior, s.Paths()), Modeled: a.models(),
				MaxLoad: maxLoad, CPUs: runtime.NumCPU()}
		}
		ticks := 0
		for {
			select {
			case <-t.C:
				if err := publishProbe(sctx, a.cs, result(false)); err != nil {
					log.V(1).Info("publishing probe numbers", "err", err)
				}
				// A peer restarted on the pod network has a new address:
				// its report says where, every few seconds.
				if ticks++; ticks%retargetEvery == 0 {
					if reports, _, err := Reports(sctx, a.cs); err == nil {
						s.Retarget(a.targets(reports, req.Sample))
					}
				}
				continue
			case <-end:
			case <-sctx.Done():
			}
			break
		}
		s.Stop()
		pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer pcancel()
		if err := publishProbe(pctx, a.cs, result(true)); err != nil {
			log.Error(err, "publishing the final probe numbers")
		}
	}()
}

// LoadAverage reads the one-minute load average from proc's loadavg, or 0.
func LoadAverage(proc string) float64 {
	b, err := os.ReadFile(filepath.Join(proc, "loadavg"))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// stopSession ends the running session and waits for its final numbers.
func (a *Agent) stopSession() {
	a.mu.Lock()
	r := a.session
	a.session = nil
	a.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
}

// targets picks the peers to probe: all, or sample of them chosen by a
// hash of both names, so each agent probes a different, stable subset.
func (a *Agent) targets(reports map[string]*Report, sample int) []probe.Target {
	type cand struct {
		t    probe.Target
		rank uint32
	}
	var cands []cand
	for node, r := range reports {
		if node == a.opts.Node || r.Endpoint.UDPPort == 0 {
			continue
		}
		h := fnv.New32a()
		_, _ = h.Write([]byte(a.opts.Node + "/" + node))
		cands = append(cands, cand{probe.Target{Node: node,
			UDP: &net.UDPAddr{IP: net.ParseIP(r.Endpoint.Address), Port: r.Endpoint.UDPPort},
			TCP: net.JoinHostPort(r.Endpoint.Address, strconv.Itoa(r.Endpoint.TCPPort))}, h.Sum32()})
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].rank < cands[j].rank })
	if sample > 0 && len(cands) > sample {
		cands = cands[:sample]
	}
	out := make([]probe.Target, len(cands))
	for i, c := range cands {
		out[i] = c.t
	}
	return out
}

package agent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/kube/store"
)

// Objects of the agent protocol, in hitless-system.
const (
	LabelReport   = "hitless.dev/agent-report"
	RequestName   = "hitless-agent-request"
	reportPrefix  = "hitless-agent-"
	reportKey     = "report.json.gz"
	requestID     = "id"
	requestProf   = "profile"
	requestAsked  = "asked"
	requestLabels = "hitlessAgentRequest"
)

// Report is what an agent publishes for its node.
type Report struct {
	Node string `json:"node"`
	// Request is the id of the check run this report answers, "" for the
	// report an agent publishes when it starts.
	Request  string    `json:"request"`
	Profile  string    `json:"profile"`
	Time     time.Time `json:"time"`
	Endpoint Endpoint  `json:"endpoint"`
	Kernel   string    `json:"kernel"`
	// MTU is the MTU of the interface carrying the node's address.
	MTU       int            `json:"mtu"`
	Results   []check.Result `json:"results"`
	Peers     []Peer         `json:"peers"`
	APIServer Probe          `json:"apiserver"`
	// DNS is nil when the cluster has no DNS Service.
	DNS *Probe `json:"dns,omitempty"`
}

// Endpoint is where an agent answers its peers.
type Endpoint struct {
	Address string `json:"address"`
	TCPPort int    `json:"tcpPort"`
	UDPPort int    `json:"udpPort"`
}

// Peer is one connectivity measurement from this agent to another.
type Peer struct {
	Node     string  `json:"node"`
	TCP      bool    `json:"tcp"`
	UDP      bool    `json:"udp"`
	TCPError string  `json:"tcpError,omitempty"`
	UDPError string  `json:"udpError,omitempty"`
	RTTMs    float64 `json:"rttMs"`
}

// Probe is one reachability measurement.
type Probe struct {
	OK        bool    `json:"ok"`
	Error     string  `json:"error,omitempty"`
	LatencyMs float64 `json:"latencyMs"`
	Detail    string  `json:"detail,omitempty"`
}

// Request asks every agent for fresh results.
type Request struct {
	ID      string
	Profile string
	Asked   time.Time
}

func reportRecords(cs kubernetes.Interface) *store.Records[Report] {
	return store.For[Report](store.New(cs), store.Kind{What: "agent report", Key: reportKey})
}

// Publish writes r as its node's report.
func Publish(ctx context.Context, cs kubernetes.Interface, r *Report) error {
	meta := metav1.ObjectMeta{
		Name:        reportPrefix + r.Node,
		Labels:      map[string]string{LabelReport: "true"},
		Annotations: map[string]string{"hitless.dev/node": r.Node, "hitless.dev/request": r.Request},
	}
	if err := reportRecords(cs).Put(ctx, meta, r); err != nil {
		return fmt.Errorf("publishing report of node %s: %w", r.Node, err)
	}
	return nil
}

// Reports lists every agent's latest report, by node.
func Reports(ctx context.Context, cs kubernetes.Interface) (map[string]*Report, string, error) {
	recs, rv, err := reportRecords(cs).List(ctx, LabelReport, nil)
	if err != nil {
		return nil, "", err
	}
	out := map[string]*Report{}
	for _, r := range recs {
		out[r.Value.Node] = r.Value
	}
	return out, rv, nil
}

// Ask publishes a request for fresh results; every agent answers it.
func Ask(ctx context.Context, cs kubernetes.Interface, req Request) error {
	data := map[string]string{requestID: req.ID, requestProf: req.Profile, requestAsked: req.Asked.UTC().Format(time.RFC3339Nano)}
	if err := store.New(cs).PutData(ctx, RequestName, data); err != nil {
		return fmt.Errorf("asking the agents for fresh results: %w", err)
	}
	return nil
}

func requestOf(cm *corev1.ConfigMap) Request {
	t, _ := time.Parse(time.RFC3339Nano, cm.Data[requestAsked])
	return Request{ID: cm.Data[requestID], Profile: cm.Data[requestProf], Asked: t}
}

// Await waits until every agent that has ever reported has answered
// request id, or until timeout. It returns the fresh reports and the
// nodes whose agent did not answer in time. One LIST and one WATCH,
// whatever the number of agents.
func Await(ctx context.Context, cs kubernetes.Interface, id string, timeout time.Duration) (fresh map[string]*Report, silent []string, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	all, rv, err := Reports(ctx, cs)
	if err != nil {
		return nil, nil, err
	}
	fresh = map[string]*Report{}
	pending := map[string]bool{}
	for n, r := range all {
		if r.Request == id {
			fresh[n] = r
		} else {
			pending[n] = true
		}
	}
	for len(pending) > 0 && ctx.Err() == nil {
		w, err := store.New(cs).ConfigMaps().Watch(ctx, metav1.ListOptions{LabelSelector: LabelReport, ResourceVersion: rv})
		if err != nil {
			break
		}
		next, expired := consume(w, reportRecords(cs), id, fresh, pending, rv)
		w.Stop()
		rv = next
		if expired && ctx.Err() == nil {
			// The watch's resource version is too old: read again.
			all, rv, err = Reports(ctx, cs)
			if err != nil {
				break
			}
			for n, r := range all {
				if r.Request == id {
					fresh[n] = r
					delete(pending, n)
				}
			}
		}
	}
	return fresh, slices.Sorted(maps.Keys(pending)), nil
}

// consume reads watch events into fresh and pending until every pending
// agent answered or the watch ends; expired is true when the watch ended
// on an error (such as an expired resource version).
func consume(w watch.Interface, recs *store.Records[Report], id string, fresh map[string]*Report, pending map[string]bool, rv string) (next string, expired bool) {
	for ev := range w.ResultChan() {
		if ev.Type == watch.Error {
			return rv, true
		}
		cm, ok := ev.Object.(*corev1.ConfigMap)
		if !ok {
			continue
		}
		rv = cm.ResourceVersion
		if ev.Type != watch.Added && ev.Type != watch.Modified {
			continue
		}
		rec, err := recs.DecodeConfigMap(cm)
		if err != nil || rec.Value.Request != id {
			continue
		}
		r := rec.Value
		fresh[r.Node] = r
		delete(pending, r.Node)
		if len(pending) == 0 {
			return rv, false
		}
	}
	return rv, false
}

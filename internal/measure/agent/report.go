package agent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/kube/blob"
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

// Publish writes r as its node's report.
func Publish(ctx context.Context, cs kubernetes.Interface, r *Report) error {
	packed, err := blob.Pack(r)
	if err != nil {
		return fmt.Errorf("publishing report of node %s: %w", r.Node, err)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:      reportPrefix + r.Node,
			Namespace: lock.Namespace,
			Labels:    map[string]string{LabelReport: "true", "app.kubernetes.io/managed-by": "hitless"},
			Annotations: map[string]string{
				"hitless.dev/node": r.Node, "hitless.dev/request": r.Request,
			},
		},
		BinaryData: map[string][]byte{reportKey: packed},
	}
	if err := put(ctx, cs, cm); err != nil {
		return fmt.Errorf("publishing report of node %s: %w", r.Node, err)
	}
	return nil
}

// put writes cm in hitless-system, replacing what is there: these
// ConfigMaps have a single writer, so the last write wins.
func put(ctx context.Context, cs kubernetes.Interface, cm *corev1.ConfigMap) error {
	cms := cs.CoreV1().ConfigMaps(lock.Namespace)
	_, err := cms.Update(ctx, cm, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
	}
	return err
}

func decodeReport(cm *corev1.ConfigMap) (*Report, error) {
	var r Report
	if err := blob.Unpack(cm.BinaryData[reportKey], &r); err != nil {
		return nil, fmt.Errorf("reading agent report %s: %w", cm.Name, err)
	}
	return &r, nil
}

// Reports lists every agent's latest report, by node.
func Reports(ctx context.Context, cs kubernetes.Interface) (map[string]*Report, string, error) {
	l, err := cs.CoreV1().ConfigMaps(lock.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelReport})
	if err != nil {
		return nil, "", fmt.Errorf("listing agent reports: %w", err)
	}
	out := map[string]*Report{}
	for i := range l.Items {
		r, err := decodeReport(&l.Items[i])
		if err != nil {
			return nil, "", err
		}
		out[r.Node] = r
	}
	return out, l.ResourceVersion, nil
}

// Ask publishes a request for fresh results; every agent answers it.
func Ask(ctx context.Context, cs kubernetes.Interface, req Request) error {
	if err := lock.EnsureNamespace(ctx, cs); err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: RequestName, Namespace: lock.Namespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "hitless"}},
		Data: map[string]string{requestID: req.ID, requestProf: req.Profile, requestAsked: req.Asked.UTC().Format(time.RFC3339Nano)},
	}
	if err := put(ctx, cs, cm); err != nil {
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
		w, err := cs.CoreV1().ConfigMaps(lock.Namespace).Watch(ctx, metav1.ListOptions{LabelSelector: LabelReport, ResourceVersion: rv})
		if err != nil {
			break
		}
		next, expired := consume(w, id, fresh, pending, rv)
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
func consume(w watch.Interface, id string, fresh map[string]*Report, pending map[string]bool, rv string) (next string, expired bool) {
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
		r, err := decodeReport(cm)
		if err != nil || r.Request != id {
			continue
		}
		fresh[r.Node] = r
		delete(pending, r.Node)
		if len(pending) == 0 {
			return rv, false
		}
	}
	return rv, false
}

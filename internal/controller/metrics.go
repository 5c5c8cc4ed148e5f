package controller

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// Metrics are the controller's Prometheus metrics, served on /metrics with
// controller-runtime's own.
type Metrics struct {
	operations *prometheus.CounterVec
	phases     *prometheus.HistogramVec
	cordoned   *prometheus.GaugeVec
	takeovers  prometheus.Counter
	breaches   *prometheus.CounterVec
	outage     *prometheus.GaugeVec
	loss       *prometheus.GaugeVec
	lock       *lockCollector

	mu       sync.Mutex
	observed map[string]bool // operation/node whose phases are observed
}

// NewMetrics makes the metrics and registers them with reg; kube reads
// the lock when they are scraped.
func NewMetrics(reg prometheus.Registerer, kube kubernetes.Interface) (*Metrics, error) {
	m := &Metrics{
		operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hitless_operations_total",
			Help: "Operations the controller ran to an end, by kind and result (Succeeded, Failed, Paused, Aborted).",
		}, []string{"kind", "result"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hitless_node_phase_duration_seconds",
			Help:    "How long each node spent in each phase of a roll (cordon, drain, action, wait, uncordon).",
			Buckets: []float64{0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800},
		}, []string{"kind", "phase"}),
		cordoned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hitless_nodes_cordoned",
			Help: "Nodes hitless cordoned and has not yet uncordoned, by operation.",
		}, []string{"operation"}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hitless_lock_takeovers_total",
			Help: "Operations the controller resumed whose lock was held by a holder that is gone.",
		}),
		breaches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hitless_budget_breaches_total",
			Help: "Operations whose probes exceeded their disruption budget, by kind and what followed (paused, rolled-back, rollback-failed).",
		}, []string{"kind", "then"}),
		outage: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hitless_probe_longest_outage_seconds",
			Help: "The longest outage on any probed path during the last probed operation of each kind.",
		}, []string{"kind"}),
		loss: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hitless_probe_loss_ratio",
			Help: "Probes lost over all paths during the last probed operation of each kind (0 to 1).",
		}, []string{"kind"}),
		lock:     newLockCollector(kube),
		observed: map[string]bool{},
	}
	for _, c := range []prometheus.Collector{m.operations, m.phases, m.cordoned, m.takeovers, m.breaches, m.outage, m.loss, m.lock} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// journal reads a roll's journal into the metrics: the phases of every
// node that finished since the controller process started (a node a dead
// leader finished was counted there), and the nodes still cordoned by it.
func (m *Metrics) journal(op *roll.Journal, since time.Time) {
	if m == nil {
		return
	}
	cordoned := 0
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range op.Record.Nodes {
		if n.CordonedByUs {
			cordoned++
		}
		key := op.ID + "/" + n.Name
		if n.CompletedAt == nil || n.CompletedAt.Before(since) || m.observed[key] {
			continue
		}
		m.observed[key] = true
		for _, ph := range n.Phases {
			if ph.Finished != nil {
				m.phases.WithLabelValues(roll.Kind, ph.Name).Observe(ph.Finished.Sub(ph.Started).Seconds())
			}
		}
	}
	m.cordoned.WithLabelValues(op.ID).Set(float64(cordoned))
}

// ended counts an operation that ended and forgets its gauges.
func (m *Metrics) ended(op *roll.Journal, result string) {
	if m == nil {
		return
	}
	m.operations.WithLabelValues(roll.Kind, result).Inc()
	if op == nil {
		return
	}
	m.cordoned.DeleteLabelValues(op.ID)
	if result != "Succeeded" && result != "Aborted" {
		return // it may be resumed: its nodes stay counted once
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range op.Record.Nodes {
		delete(m.observed, op.ID+"/"+n.Name)
	}
}

// component counts a component operation that ended.
func (m *Metrics) component(out outcome, phase string) {
	if m != nil {
		m.operations.WithLabelValues(out.action, historyResult(phase)).Inc()
	}
}

// migration counts a migration (or its rollback) that ended.
func (m *Metrics) migration(phase string) {
	if m != nil {
		m.operations.WithLabelValues(migrate.Kind, historyResult(phase)).Inc()
	}
}

// probed records what an operation of kind measured, and a breach with
// what followed it.
func (m *Metrics) probed(kind string, p probed, then string) {
	if m == nil {
		return
	}
	if rep := p.report; rep != nil {
		m.outage.WithLabelValues(kind).Set(rep.Summary.LongestOutageMs / 1000)
		m.loss.WithLabelValues(kind).Set(rep.Summary.LossPct / 100)
	}
	if p.breach {
		m.breaches.WithLabelValues(kind, then).Inc()
	}
}

// tookOver counts a lock takeover.
func (m *Metrics) tookOver() {
	if m != nil {
		m.takeovers.Inc()
	}
}

// lockCollector reports the cluster lock when scraped: who holds it, for
// which operation, and since when.
type lockCollector struct {
	kube kubernetes.Interface
	held *prometheus.Desc
	age  *prometheus.Desc
}

func newLockCollector(kube kubernetes.Interface) *lockCollector {
	return &lockCollector{
		kube: kube,
		held: prometheus.NewDesc("hitless_lock_held", "1 while an operation holds the cluster lock, with the operation and its holder.", []string{"operation", "holder"}, nil),
		age:  prometheus.NewDesc("hitless_lock_age_seconds", "How long the current holder has held the cluster lock.", []string{"operation"}, nil),
	}
}

func (c *lockCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.held
	ch <- c.age
}

func (c *lockCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := lock.Current(ctx, c.kube)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.held, err)
		return
	}
	if h == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, 1, h.Operation, h.String())
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, time.Since(h.Started).Seconds(), h.Operation)
}

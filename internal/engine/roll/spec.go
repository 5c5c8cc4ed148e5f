package roll

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/kube/eviction"
)

// Orders of nodes in a roll.
const (
	OrderName             = "name"
	OrderZone             = "zone"
	OrderControlPlaneLast = "control-plane-last"
)

// Drain-timeout policies.
const (
	// OnDrainTimeoutFail fails the node: it is uncordoned, not acted on,
	// and counts toward MaxFailures.
	OnDrainTimeoutFail = "fail"
	// OnDrainTimeoutSkip skips the node: it is uncordoned, not acted on,
	// and the roll goes on without counting a failure.
	OnDrainTimeoutSkip = "skip"
	// OnDrainTimeoutUncordon uncordons the node and pauses the whole roll,
	// so the operator can fix what blocks the drain and re-run to resume.
	OnDrainTimeoutUncordon = "uncordon"
)

// Spec is what a roll does. It is journaled: the same Spec resumes the same
// operation.
type Spec struct {
	Selector string   `json:"selector,omitempty"`
	Nodes    []string `json:"nodes,omitempty"`
	// Batch is a node count ("2") or a percentage of the selected nodes ("10%").
	Batch  string `json:"batch"`
	Order  string `json:"order"`
	Canary int    `json:"canary,omitempty"`

	// Actions run on each node, in order, between its drain and the wait
	// for it to be Ready: registered per-node actions (DefaultActions and
	// what the caller registers).
	Actions  []ActionSpec `json:"actions,omitempty"`
	PreNode  string       `json:"preNode,omitempty"`
	PostNode string       `json:"postNode,omitempty"`
	Confirm  bool         `json:"confirm,omitempty"`
	// PreNodeActions run on each node after its cordon and before its
	// drain (after PreNode or the confirmation); PostNodeActions after it
	// is Ready again, before its uncordon (after PostNode): hooks, as
	// registered actions (a job, a label).
	PreNodeActions  []ActionSpec `json:"preNodeActions,omitempty"`
	PostNodeActions []ActionSpec `json:"postNodeActions,omitempty"`

	DrainTimeout       time.Duration `json:"drainTimeout"`
	OnDrainTimeout     string        `json:"onDrainTimeout"`
	MaxFailures        int           `json:"maxFailures"`
	Force              bool          `json:"force,omitempty"`
	DeleteEmptyDirData bool          `json:"deleteEmptyDirData,omitempty"`
	// EvictRetryDelay is the pause after an eviction refused with 429.
	EvictRetryDelay time.Duration `json:"evictRetryDelay"`
	// ActionTimeout bounds the action and the wait for the node and its
	// DaemonSet pods to be Ready.
	ActionTimeout time.Duration `json:"actionTimeout"`
}

// SpecError is bad input in a spec: Field names the spec field.
type SpecError = operation.FieldError

// Defaults fills unset fields.
func (s *Spec) Defaults() {
	if s.Batch == "" {
		s.Batch = "1"
	}
	if s.Order == "" {
		s.Order = OrderName
	}
	if s.OnDrainTimeout == "" {
		s.OnDrainTimeout = OnDrainTimeoutFail
	}
	if s.DrainTimeout == 0 {
		s.DrainTimeout = 10 * time.Minute
	}
	if s.MaxFailures == 0 {
		s.MaxFailures = 1
	}
	if s.EvictRetryDelay == 0 {
		s.EvictRetryDelay = 2 * time.Second
	}
	if s.ActionTimeout == 0 {
		s.ActionTimeout = 10 * time.Minute
	}
	slices.Sort(s.Nodes)
}

// Validate checks the spec without touching the cluster.
func (s *Spec) Validate() error {
	if s.Selector != "" && len(s.Nodes) > 0 {
		return &SpecError{Field: "selector", Msg: "give `selector` or `nodes`, not both"}
	}
	if s.Selector != "" {
		if _, err := labels.Parse(s.Selector); err != nil {
			return &SpecError{Field: "selector", Msg: fmt.Sprintf("%q: %v", s.Selector, err)}
		}
	}
	for _, n := range s.Nodes {
		if msgs := validation.IsDNS1123Subdomain(n); len(msgs) > 0 {
			return &SpecError{Field: "nodes", Msg: fmt.Sprintf("%q is not a node name: %s", n, strings.Join(msgs, "; "))}
		}
	}
	if _, _, err := ParseBatch(s.Batch); err != nil {
		return &SpecError{Field: "batch", Msg: err.Error()}
	}
	switch s.Order {
	case OrderName, OrderZone, OrderControlPlaneLast:
	default:
		return &SpecError{Field: "order", Msg: fmt.Sprintf("%q: want name, zone or control-plane-last", s.Order)}
	}
	switch s.OnDrainTimeout {
	case OnDrainTimeoutFail, OnDrainTimeoutSkip, OnDrainTimeoutUncordon:
	default:
		return &SpecError{Field: "onDrainTimeout", Msg: fmt.Sprintf("%q: want fail, skip or uncordon", s.OnDrainTimeout)}
	}
	if s.Canary < 0 {
		return &SpecError{Field: "canary", Msg: fmt.Sprintf("%d: must not be negative", s.Canary)}
	}
	if s.MaxFailures < 1 {
		return &SpecError{Field: "maxFailures", Msg: fmt.Sprintf("%d: must be at least 1", s.MaxFailures)}
	}
	if s.DrainTimeout < 0 || s.ActionTimeout < 0 || s.EvictRetryDelay < 0 {
		return &SpecError{Field: "drainTimeout", Msg: "durations must not be negative"}
	}
	if s.Confirm && s.PreNode != "" {
		return &SpecError{Field: "confirm", Msg: "give `confirm` or `preNode`, not both: `confirm` is the interactive pre-node step"}
	}
	return nil
}

// ParseBatch reads "N" or "N%".
func ParseBatch(s string) (n int, percent bool, err error) {
	v, isPct := strings.CutSuffix(strings.TrimSpace(s), "%")
	n, err = strconv.Atoi(v)
	if err != nil || n < 1 || (isPct && n > 100) {
		return 0, false, fmt.Errorf("%q: want a positive count or a percentage from 1%% to 100%%", s)
	}
	return n, isPct, nil
}

// BatchSize resolves the batch to a node count for total selected nodes:
// a percentage rounds down, but never below one node.
func (s *Spec) BatchSize(total int) int {
	n, pct, err := ParseBatch(s.Batch)
	if err != nil {
		return 1
	}
	if pct {
		n = int(math.Floor(float64(total) * float64(n) / 100))
	}
	return max(1, n)
}

// Hash identifies the spec: re-running a roll with the same hash resumes it.
func (s *Spec) Hash() string { return operation.Hash(s) }

// hasPreNode and hasPostNode report whether the node has those phases.
func (s *Spec) hasPreNode() bool  { return s.PreNode != "" || s.Confirm || len(s.PreNodeActions) > 0 }
func (s *Spec) hasPostNode() bool { return s.PostNode != "" || s.Confirm || len(s.PostNodeActions) > 0 }

// HasAction reports whether the roll changes something on each node beyond
// the drain.
func (s *Spec) HasAction() bool { return len(s.Actions) > 0 }

func (s *Spec) evictionOptions() eviction.Options {
	return eviction.Options{Force: s.Force, DeleteEmptyDirData: s.DeleteEmptyDirData}
}

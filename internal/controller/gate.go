package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/engine/operation"
)

// gate is what a NodeRoll says, read afresh before each node: the roll
// engine's guard (paused, outside the maintenance window: the roll pauses
// before the node and is resumed when the resource allows it again) and its
// approver (the canary, by spec.canaryApproved).
type gate struct {
	get func(ctx context.Context) (*v1alpha1.NodeRoll, error)
	now func() time.Time
	// probe, when set, is the probe session of spec.probe with its
	// budget, asked after the resource.
	probe operation.Guard

	mu      sync.Mutex
	refusal string // the reason of the last refusal
}

func (g *gate) refused(reason string) {
	g.mu.Lock()
	g.refusal = reason
	g.mu.Unlock()
}

// lastRefusal is the condition reason of the gate's last refusal, or "".
func (g *gate) lastRefusal() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refusal
}

// Check implements operation.Guard.
func (g *gate) Check(ctx context.Context, next string) error {
	nr, err := g.get(ctx)
	if err != nil {
		return fmt.Errorf("reading the NodeRoll before node %s: %w", next, err)
	}
	if why, reason, _ := closed(nr, g.now()); why != "" {
		g.refused(reason)
		return fmt.Errorf("before %s: %s", operation.Before(next), why)
	}
	if g.probe != nil {
		if err := g.probe.Check(ctx, next); err != nil {
			g.refused(reasonBudget)
			return err
		}
	}
	return nil
}

// Aborts implements operation.Guard: a closed gate pauses, never aborts.
func (g *gate) Aborts() bool { return false }

// Spec implements operation.Guard: the gate is the resource itself, not
// journaled (a resume from the CLI runs without it); its probe session
// is, so that any resume probes again.
func (g *gate) Spec() json.RawMessage {
	if g.probe != nil {
		return g.probe.Spec()
	}
	return nil
}

// Approve implements operation.Approver.
func (g *gate) Approve(ctx context.Context, q operation.Question) error {
	if q.Kind != operation.AskCanary {
		return fmt.Errorf("%s: a NodeRoll cannot answer a %s question", q.Text, q.Kind)
	}
	nr, err := g.get(ctx)
	if err != nil {
		return fmt.Errorf("reading the NodeRoll for the canary's approval: %w", err)
	}
	if !nr.Spec.CanaryApproved {
		g.refused(reasonAwaitingApproval)
		return fmt.Errorf("%s: the canary nodes are done; set spec.canaryApproved to go on", q.Text)
	}
	return nil
}

// closed says why no node may start now ("" when one may), with the
// condition reason, and when the maintenance window opens next if that is
// what keeps it closed.
func closed(nr *v1alpha1.NodeRoll, now time.Time) (why, reason string, opens time.Time) {
	if nr.DeletionTimestamp != nil {
		return "the NodeRoll is being deleted", reasonPaused, time.Time{}
	}
	if nr.Spec.Paused {
		return "paused (spec.paused)", reasonPaused, time.Time{}
	}
	if w := nr.Spec.MaintenanceWindow; w != nil {
		if open, next := window(w, now); !open {
			return fmt.Sprintf("outside the maintenance window (opens %s)", next.Format(time.RFC3339)), reasonOutsideWindow, next
		}
	}
	return "", "", time.Time{}
}

// window says whether w is open at now and, when it is not, when it opens
// next. A bad time zone reads as UTC (rollSpec refuses it first).
func window(w *v1alpha1.MaintenanceWindow, now time.Time) (open bool, next time.Time) {
	loc, err := time.LoadLocation(w.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	start, err := time.Parse("15:04", w.Start)
	if err != nil {
		return false, time.Time{}
	}
	local := now.In(loc)
	onDay := func(t time.Time) bool {
		if len(w.Days) == 0 {
			return true
		}
		for _, d := range w.Days {
			if d == t.Weekday().String()[:3] {
				return true
			}
		}
		return false
	}
	// A window that opened on an earlier day may still be open: look back
	// as many days as it lasts, then forward a week for the next opening.
	back := int(w.Duration.Duration/(24*time.Hour)) + 1
	for d := -back; d <= 7; d++ {
		day := local.AddDate(0, 0, d)
		opens := time.Date(day.Year(), day.Month(), day.Day(), start.Hour(), start.Minute(), 0, 0, loc)
		if !onDay(opens) {
			continue
		}
		if !now.Before(opens) && now.Before(opens.Add(w.Duration.Duration)) {
			return true, opens
		}
		if opens.After(now) {
			return false, opens
		}
	}
	return false, time.Time{}
}

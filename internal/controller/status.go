package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// historyLen is how many operations a resource's status remembers.
const historyLen = 10

// statusWriter keeps a NodeRoll's status in step with its running roll: the
// journal (the truth, which survives the controller) is read into the
// status at most every `every`, and once more at the end.
type statusWriter struct {
	r       *NodeRolls
	key     client.ObjectKey
	gate    *gate
	run     *run
	every   time.Duration
	since   time.Time // phases that ended before are not this process's to count
	changed chan struct{}

	mu      sync.Mutex
	last    map[string]string // node: the newest progress message
	waiting string            // why the next node has not started, or ""
}

func (w *statusWriter) poke() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// started is told the operation's ID by the engine.
func (w *statusWriter) started(id string) {
	w.run.setOperation(id)
	w.poke()
}

// progress is the engine's progress callback.
func (w *statusWriter) progress(e roll.Event) {
	w.mu.Lock()
	switch {
	case e.Phase == "waiting":
		w.waiting = "node " + e.Node + " waits: " + e.Message
	case e.Node != "" && e.Message != "":
		if w.last == nil {
			w.last = map[string]string{}
		}
		w.last[e.Node] = e.Message
		fallthrough
	default:
		if e.Phase == roll.PhaseCordon {
			w.waiting = ""
		}
	}
	w.mu.Unlock()
	w.poke()
}

func (w *statusWriter) message(node string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last[node]
}

// loop writes the status while the roll runs.
func (w *statusWriter) loop(ctx context.Context) {
	announced := ""
	writeLoop(ctx, w.changed, w.every, "NodeRoll "+w.key.Name, func(ctx context.Context) error { return w.flush(ctx, &announced) })
}

// flush reads the journal into the status.
func (w *statusWriter) flush(ctx context.Context, announced *string) error {
	id := w.run.operation()
	if id == "" {
		return nil
	}
	op, err := w.journal(ctx, id)
	if err != nil {
		return err
	}
	w.r.Metrics.journal(op, w.since)
	nr := &v1alpha1.NodeRoll{}
	if err := w.r.Client.Get(ctx, w.key, nr); err != nil {
		return client.IgnoreNotFound(err)
	}
	if *announced != id {
		*announced = id
		verb := "started"
		if op.Runs > 1 {
			verb = fmt.Sprintf("resumed (run %d)", op.Runs)
		}
		w.r.Events.Eventf(nr, nil, corev1.EventTypeNormal, reasonStarted, "Roll", "operation %s %s: %d nodes (`hitless status %s`)", id, verb, len(op.Record.Nodes), id)
	}
	return w.r.patchStatus(ctx, nr, func(st *v1alpha1.NodeRollStatus) {
		w.fill(st, op)
		st.Phase = v1alpha1.PhaseRunning
		setConditions(&st.Conditions, nr.Generation, v1alpha1.ConditionProgressing, reasonRolling, w.progressLine(op, st.Summary))
	})
}

func (w *statusWriter) journal(ctx context.Context, id string) (*roll.Journal, error) {
	raw, err := journal.NewStore(w.r.Kube).Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("reading operation %s: %w", id, err)
	}
	return journal.Decode[roll.Record](raw)
}

// fill copies the journal's nodes into the status: counts, and the nodes
// that are in flight, failed or skipped, with what they wait for.
func (w *statusWriter) fill(st *v1alpha1.NodeRollStatus, op *roll.Journal) {
	st.Operation = op.ID
	st.Summary = v1alpha1.NodeRollSummary{Total: int32(len(op.Record.Nodes))}
	st.Nodes = nil
	for _, n := range op.Record.Nodes {
		switch n.Phase {
		case roll.PhaseDone:
			st.Summary.Done++
			continue
		case roll.PhasePending:
			continue
		case roll.PhaseFailed:
			st.Summary.Failed++
		case roll.PhaseSkipped, roll.PhaseAborted:
			st.Summary.Skipped++
		}
		p := v1alpha1.NodeProgress{Name: n.Name, Batch: int32(n.Batch), Phase: n.Phase, Message: n.Error}
		if p.Message == "" {
			p.Message = w.message(n.Name)
		}
		if len(n.Blockers) > 0 {
			p.Message = strings.TrimPrefix(p.Message+"; blocked by "+strings.Join(n.Blockers, ", "), "; ")
		}
		if n.StartedAt != nil {
			t := metav1.NewTime(*n.StartedAt)
			p.Started = &t
		}
		st.Nodes = append(st.Nodes, p)
	}
}

// progressLine sums up a running roll for the Progressing condition.
func (w *statusWriter) progressLine(op *roll.Journal, sum v1alpha1.NodeRollSummary) string {
	var inFlight []string
	for _, n := range op.Record.Nodes {
		if !roll.InFlight(n.Phase) {
			continue
		}
		s := n.Name + " " + n.Phase
		if m := w.message(n.Name); m != "" {
			s += " (" + m + ")"
		}
		inFlight = append(inFlight, s)
	}
	line := fmt.Sprintf("operation %s: %d/%d nodes done", op.ID, sum.Done, sum.Total)
	if len(inFlight) > 0 {
		line += "; in flight: " + strings.Join(inFlight, ", ")
	}
	w.mu.Lock()
	if w.waiting != "" {
		line += "; " + w.waiting
	}
	w.mu.Unlock()
	return line
}

// finish writes the status of a roll that ended, and says so in an Event.
// It returns the condition's reason.
func (w *statusWriter) finish(ctx context.Context, res *roll.Result, runErr error, p probed) (string, error) {
	nr := &v1alpha1.NodeRoll{}
	if err := w.r.Client.Get(ctx, w.key, nr); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	var op *roll.Journal
	if res != nil {
		op = res.Operation
	}
	if op == nil {
		if id := w.run.operation(); id != "" {
			op, _ = w.journal(ctx, id)
		}
	}
	phase, cond, reason, msg := w.outcome(runErr)
	if op != nil {
		w.r.Metrics.journal(op, w.since)
	}
	if reason != reasonError {
		w.r.Metrics.ended(op, phase)
	}
	w.r.Metrics.probed(roll.Kind, p, "paused")
	if nr.DeletionTimestamp != nil {
		return "", nil // the deletion tells its own story
	}
	evType := corev1.EventTypeNormal
	if phase == v1alpha1.PhaseFailed || reason == reasonError {
		evType = corev1.EventTypeWarning
	}
	w.r.Events.Eventf(nr, nil, evType, reason, "Roll", "%s", msg)
	return reason, w.r.patchStatus(ctx, nr, func(st *v1alpha1.NodeRollStatus) {
		if op != nil {
			w.fill(st, op)
			record(st, op, phase)
		}
		st.Phase = phase
		if p.report != nil {
			st.Disruption = p.disruption(msg)
		}
		setConditions(&st.Conditions, nr.Generation, cond, reason, msg)
	})
}

// outcome reads how a roll ended into the resource's phase and condition.
func (w *statusWriter) outcome(runErr error) (phase, cond, reason, msg string) {
	var incomplete *roll.IncompleteError
	var blocked *roll.PlanBlockedError
	switch {
	case runErr == nil:
		return v1alpha1.PhaseSucceeded, v1alpha1.ConditionReady, reasonSucceeded, fmt.Sprintf("operation %s: every node rolled", w.run.operation())
	case errors.As(runErr, &blocked):
		return v1alpha1.PhaseFailed, v1alpha1.ConditionFailed, reasonPlanBlocked, runErr.Error()
	case errors.As(runErr, &incomplete):
		switch incomplete.Status {
		case journal.Aborted:
			return v1alpha1.PhaseAborted, "", reasonAborted, runErr.Error()
		case journal.Paused:
			reason := w.gate.lastRefusal()
			if reason == "" {
				reason = reasonStopped
			}
			return v1alpha1.PhasePaused, v1alpha1.ConditionPaused, reason, runErr.Error()
		case journal.Interrupted:
			return v1alpha1.PhasePaused, v1alpha1.ConditionPaused, reasonError, runErr.Error()
		}
		return v1alpha1.PhaseFailed, v1alpha1.ConditionFailed, reasonFailed, runErr.Error()
	}
	// Not the roll's verdict (the lock held by another operation, the API
	// server unreachable): tried again after a pause.
	return v1alpha1.PhasePaused, v1alpha1.ConditionPaused, reasonError, runErr.Error()
}

// record puts the operation in the status's history, newest last.
func record(st *v1alpha1.NodeRollStatus, op *roll.Journal, phase string) {
	remember(&st.History, &op.Operation, phase)
}

// remember puts op in a history, newest last, at most historyLen long.
func remember(hist *[]v1alpha1.OperationRecord, op *journal.Operation, phase string) {
	rec := v1alpha1.OperationRecord{Operation: op.ID, Result: phase, Started: metav1.NewTime(op.Started), Message: op.Message}
	if op.Finished != nil {
		t := metav1.NewTime(*op.Finished)
		rec.Finished = &t
	}
	for i := range *hist {
		if (*hist)[i].Operation == op.ID {
			(*hist)[i] = rec
			return
		}
	}
	*hist = append(*hist, rec)
	if len(*hist) > historyLen {
		*hist = (*hist)[len(*hist)-historyLen:]
	}
}

// setConditions sets the four conditions so that at most one is True:
// active (Ready, Progressing, Paused or Failed; "" for none, an aborted
// roll) with reason and msg, the others False with the same reason.
func setConditions(conds *[]metav1.Condition, gen int64, active, reason, msg string) {
	for _, t := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionProgressing, v1alpha1.ConditionPaused, v1alpha1.ConditionFailed} {
		c := metav1.Condition{Type: t, Status: metav1.ConditionFalse, Reason: reason, Message: msg, ObservedGeneration: gen}
		if t == active {
			c.Status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(conds, c)
	}
}

package roll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	knode "github.com/hitless-dev/hitless/internal/kube/node"
	"github.com/hitless-dev/hitless/internal/kube/transient"
)

// Phases of a node, in order. Each is journaled before it acts.
const (
	PhasePending  = "pending"
	PhaseCordon   = "cordon"
	PhasePreNode  = "pre-node"
	PhaseDrain    = "drain"
	PhaseAction   = "action"
	PhaseWait     = "wait"
	PhasePostNode = "post-node"
	PhaseUncordon = "uncordon"
	PhaseDone     = "done"
	PhaseFailed   = "failed"
	PhaseSkipped  = "skipped"
	PhaseAborted  = "aborted"
)

// Outcomes of a node, as in Ansible's recap.
const (
	OutcomeOK          = "ok"
	OutcomeChanged     = "changed"
	OutcomeFailed      = "failed"
	OutcomeSkipped     = "skipped"
	OutcomeUnreachable = "unreachable"
)

// InFlight says whether a node in phase is being rolled: started and not
// yet done, failed, skipped or aborted.
func InFlight(phase string) bool {
	switch phase {
	case PhasePending, PhaseDone, PhaseFailed, PhaseSkipped, PhaseAborted, "":
		return false
	}
	return true
}

func everything() labels.Selector { return labels.Everything() }

// phases returns the node's phases for this spec, in order.
func (r *runner) phases() []string {
	out := []string{PhaseCordon}
	if r.spec.hasPreNode() {
		out = append(out, PhasePreNode)
	}
	out = append(out, PhaseDrain)
	if r.spec.HasAction() {
		out = append(out, PhaseAction)
	}
	out = append(out, PhaseWait)
	if r.spec.hasPostNode() {
		out = append(out, PhasePostNode)
	}
	return append(out, PhaseUncordon)
}

func recordDrain(n *Node, res drainResult) {
	n.Evicted = append(n.Evicted, res.Evicted...)
	n.Deleted = append(n.Deleted, res.Deleted...)
}

// enter journals that the node starts phase, closing the previous one.
func (r *runner) enter(ctx context.Context, name, phase string, extra func(n *Node)) error {
	err := r.w.Update(ctx, startPhase(name, phase, extra))
	if err == nil {
		r.emit(Event{Node: name, Batch: r.batchOf(name), Phase: phase})
	}
	return err
}

// enterLater is enter for a phase whose start need not be written before
// it acts: the journal writes it with its next change, or within
// journalLag. A crash before that resumes the node from the phase before
// it, which is idempotent and redoes it.
func (r *runner) enterLater(name, phase string) {
	r.w.Defer(startPhase(name, phase, nil))
	r.emit(Event{Node: name, Batch: r.batchOf(name), Phase: phase})
}

func startPhase(name, phase string, extra func(n *Node)) func(op *Journal) {
	return func(op *Journal) {
		n := op.Record.NodeByName(name)
		now := time.Now().UTC()
		closePhase(n, now, "")
		n.Phase = phase
		n.Phases = append(n.Phases, PhaseRecord{Name: phase, Started: now})
		if extra != nil {
			extra(n)
		}
	}
}

// journalLag is how long a change the journal need not write at once
// (enterLater, a node done) may wait for the next write before it is
// written on its own, so that `hitless status` is never further behind.
const journalLag = 5 * time.Second

// flushJournal writes the deferred changes that waited journalLag, until
// ctx ends.
func (r *runner) flushJournal(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// A failed write keeps the changes for the next one; the
			// operation's final write carries them at the latest.
			_ = r.w.Flush(ctx, journalLag)
		}
	}
}

func closePhase(n *Node, now time.Time, errMsg string) {
	if k := len(n.Phases); k > 0 && n.Phases[k-1].Finished == nil {
		n.Phases[k-1].Finished = &now
		n.Phases[k-1].Error = errMsg
	}
}

func (r *runner) batchOf(name string) int { return r.byName[name].Batch }

func (r *runner) planOf(name string) NodePlan { return r.byName[name] }

// runNode takes one node through its phases, from where the journal says
// it is. Failures are journaled on the node; they never leave it cordoned.
func (r *runner) runNode(ctx context.Context, name string, batch int) {
	snap := r.w.Snapshot().Record.NodeByName(name)
	phases := r.phases()
	start := 0
	if InFlight(snap.Phase) {
		for i, p := range phases {
			if p == snap.Phase {
				start = i
			}
		}
	}
	run := &nodeRun{env: hookEnv{Node: name, NodeIP: r.planOf(name).InternalIP, Operation: r.w.Snapshot().ID, Batch: batch}}
	for i, phase := range phases[start:] {
		var err error
		if r.later(phases, start+i) {
			r.enterLater(name, phase)
		} else {
			err = r.enterPhase(ctx, name, phase)
			run.onNode = nil // something may run on the node: list afresh
		}
		if err == nil {
			err = r.doPhase(ctx, name, phase, run)
		}
		if err != nil {
			if run.drained != "" && phase != PhaseUncordon {
				r.event(ctx, name, "Drained", run.drained)
			}
			r.nodeFailed(ctx, name, phase, err)
			return
		}
	}
	// Uncordoned and unmarked: a crash before this is written redoes the
	// uncordon, which is idempotent.
	r.w.Defer(func(op *Journal) {
		n := op.Record.NodeByName(name)
		now := time.Now().UTC()
		closePhase(n, now, "")
		n.Phase = PhaseDone
		n.Outcome = OutcomeChanged
		n.CompletedAt = &now
		n.CordonedByUs = false // uncordoned: nothing of ours left on it
	})
	r.emit(Event{Node: name, Batch: batch, Phase: PhaseDone})
}

// later says whether phases[i] may start without a write of its own: the
// drain right after the cordon (a resume from the cordon cordons again,
// a no-op, and drains) and the wait right after the drain (waiting
// changes nothing). A phase after a hook or an action is always written,
// so that a resume never runs a hook or an action again unannounced.
func (r *runner) later(phases []string, i int) bool {
	if i == 0 {
		return false
	}
	prev := phases[i-1]
	return (phases[i] == PhaseDrain && prev == PhaseCordon) || (phases[i] == PhaseWait && prev == PhaseDrain)
}

func (r *runner) enterPhase(ctx context.Context, name, phase string) error {
	switch phase {
	case PhaseCordon:
		node, err := r.nodeObject(name)
		if err != nil {
			return fmt.Errorf("reading node %s: %w", name, err)
		}
		ours := node.Annotations[AnnotationOperation] == r.w.Snapshot().ID
		return r.enter(ctx, name, phase, func(n *Node) {
			if n.StartedAt == nil {
				now := time.Now().UTC()
				n.StartedAt = &now
				// Cordoned by someone else before we touched it: it stays so.
				n.CordonedBefore = node.Spec.Unschedulable && !ours
				// The cordon patch is conditional on this version, so a
				// cordon by someone else in between is not taken for ours.
				r.mu.Lock()
				r.cordonRV[name] = node.ResourceVersion
				r.mu.Unlock()
			}
			n.CordonedByUs = !n.CordonedBefore
		})
	case PhaseAction:
		return r.enter(ctx, name, phase, func(n *Node) {
			n.ActionRuns++
			if n.ActionRuns > 1 {
				n.Notes = append(n.Notes, fmt.Sprintf("action started again (run %d): the previous run stopped during it", n.ActionRuns))
			}
		})
	default:
		return r.enter(ctx, name, phase, nil)
	}
}

// nodeRun is what one run of a node carries from phase to phase.
type nodeRun struct {
	env hookEnv
	// onNode is every pod on the node when the drain listed them, while
	// nothing else has run there since (a wait right after the drain).
	onNode []corev1.Pod
	// drained is the Drained event's message, held for the Uncordoned
	// event when nothing but the wait comes between them.
	drained string
}

func (r *runner) doPhase(ctx context.Context, name, phase string, run *nodeRun) error {
	env := run.env
	switch phase {
	case PhaseCordon:
		if err := r.cordon(ctx, name); err != nil {
			return err
		}
		msg := "hitless cordoned the node for operation " + env.Operation
		if r.w.Snapshot().Record.NodeByName(name).CordonedBefore {
			msg = "hitless marked the node, cordoned before by someone else (it stays cordoned), for operation " + env.Operation
		}
		r.event(ctx, name, "Cordoned", msg)
		return nil
	case PhasePreNode:
		return r.hook(ctx, name, "pre-node", r.spec.PreNode, fmt.Sprintf("Stop routing requests to node %s (%s)", name, env.NodeIP), env)
	case PhaseDrain:
		res, err := drainNode(ctx, r.cs, name, r.spec, r.budgets)
		run.onNode = res.onNode
		// Journaled with the next write, not in one of its own: a resume
		// that lost it drains again and finds the pods gone.
		r.w.Defer(func(op *Journal) { recordDrain(op.Record.NodeByName(name), res) })
		if err != nil {
			return err
		}
		msg := fmt.Sprintf("hitless drained the node: %d pods evicted", len(res.Evicted))
		if len(res.Deleted) > 0 {
			msg += fmt.Sprintf("; unmanaged pods deleted as forced: %s", strings.Join(res.Deleted, ", "))
		}
		if r.uncordonsRightAfterDrain(name) {
			// One event says both, a moment apart: one request fewer.
			run.drained = msg
			return nil
		}
		r.event(ctx, name, "Drained", msg)
		return nil
	case PhaseAction:
		if err := r.action(ctx, name, env); err != nil {
			return err
		}
		r.event(ctx, name, "Updated", "hitless ran the action of operation "+env.Operation)
		return nil
	case PhaseWait:
		wctx, cancel := context.WithTimeout(ctx, r.spec.ActionTimeout)
		defer cancel()
		return waitNodeHealthy(wctx, r.cs, r.nodes, name, run.onNode)
	case PhasePostNode:
		return r.hook(ctx, name, "post-node", r.spec.PostNode, fmt.Sprintf("Resume routing requests to node %s (%s)", name, env.NodeIP), env)
	case PhaseUncordon:
		n := r.w.Snapshot().Record.NodeByName(name)
		if err := r.patchNode(ctx, name, "", n.CordonedByUs, false); err != nil {
			return err
		}
		if n.CordonedByUs {
			msg := "hitless uncordoned the node"
			if run.drained != "" {
				msg = run.drained + "; then uncordoned it"
			}
			r.event(ctx, name, "Uncordoned", msg)
		}
		return nil
	}
	return fmt.Errorf("unknown phase %q", phase)
}

// uncordonsRightAfterDrain says whether only the wait comes between the
// node's drain and its uncordon.
func (r *runner) uncordonsRightAfterDrain(name string) bool {
	return !r.spec.HasAction() && !r.spec.hasPostNode() && r.w.Snapshot().Record.NodeByName(name).CordonedByUs
}

func (r *runner) action(ctx context.Context, name string, env hookEnv) error {
	actx, cancel := context.WithTimeout(ctx, r.spec.ActionTimeout)
	defer cancel()
	return r.runActions(actx, name, PhaseAction, r.actions.action, env)
}

// runActions runs a phase's actions on the node, in order.
func (r *runner) runActions(ctx context.Context, name, phase string, acts []Action, env hookEnv) error {
	t := Target{Client: r.cs, Node: name, NodeIP: env.NodeIP, Operation: env.Operation, Batch: env.Batch, Phase: phase,
		Record: func(rec HookRecord) error { return r.recordHook(ctx, name, rec) },
		Progress: func(msg string) {
			r.emit(Event{Node: name, Batch: env.Batch, Phase: phase, Message: msg})
		}}
	for _, a := range acts {
		if err := a.Run(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// hook runs a pre- or post-node command, or with Confirm asks the
// operator through the approver, then the phase's hook actions.
func (r *runner) hook(ctx context.Context, name, which, command, question string, env hookEnv) error {
	if err := r.hookStep(ctx, name, which, command, question, env); err != nil {
		return err
	}
	acts := r.actions.pre
	if which == PhasePostNode {
		acts = r.actions.post
	}
	if len(acts) == 0 {
		return nil
	}
	hctx, cancel := context.WithTimeout(ctx, r.spec.ActionTimeout)
	defer cancel()
	return r.runActions(hctx, name, which, acts, env)
}

func (r *runner) hookStep(ctx context.Context, name, which, command, question string, env hookEnv) error {
	if command == "" && !r.spec.Confirm {
		return nil
	}
	if r.spec.Confirm {
		start := time.Now()
		kind := operation.AskPreNode
		if which == "post-node" {
			kind = operation.AskPostNode
		}
		if err := operation.Ask(ctx, r.opts.Approver, operation.Question{Kind: kind, Node: name, Text: question}); err != nil {
			return fmt.Errorf("%s on node %s: no answer: %w", which, name, err)
		}
		return r.recordHook(ctx, name, HookRecord{Name: which, Output: "confirmed by the operator", Took: time.Since(start).Round(time.Millisecond).String()})
	}
	rec, err := runCommand(ctx, which, command, env, r.spec.ActionTimeout)
	if uerr := r.recordHook(ctx, name, rec); uerr != nil {
		return uerr
	}
	return err
}

func (r *runner) recordHook(ctx context.Context, name string, rec HookRecord) error {
	return r.w.Update(ctx, func(op *Journal) {
		n := op.Record.NodeByName(name)
		n.Hooks = append(n.Hooks, rec)
	})
}

// cordon marks and cordons the node, on the condition that it did not
// change since hitless read it; if it did, hitless reads it again and, when
// someone else cordoned it meanwhile, journals that before marking it.
func (r *runner) cordon(ctx context.Context, name string) error {
	r.mu.Lock()
	rv := r.cordonRV[name]
	delete(r.cordonRV, name)
	r.mu.Unlock()
	for attempt := 0; ; attempt++ {
		n := r.w.Snapshot().Record.NodeByName(name)
		err := r.patchNode(ctx, name, r.w.Snapshot().ID, !n.CordonedBefore, true, rv)
		if err == nil || !apierrors.IsConflict(err) || attempt >= 3 {
			return err
		}
		fresh, gerr := r.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("reading node %s: %w", name, gerr)
		}
		rv = fresh.ResourceVersion
		if fresh.Spec.Unschedulable && fresh.Annotations[AnnotationOperation] != r.w.Snapshot().ID && !n.CordonedBefore {
			if err := r.w.Update(ctx, func(op *Journal) {
				n := op.Record.NodeByName(name)
				n.CordonedBefore, n.CordonedByUs = true, false
				n.Notes = append(n.Notes, "someone else cordoned the node just before hitless did: it stays cordoned")
			}); err != nil {
				return err
			}
		}
	}
}

// patchNode sets or clears hitless's mark, and cordons or uncordons when
// touchSchedulable says the node's schedulability is ours to change. A
// non-empty resourceVersion makes the patch conditional on it.
func (r *runner) patchNode(ctx context.Context, name, mark string, touchSchedulable, unschedulable bool, resourceVersion ...string) error {
	var annotation any = mark
	if mark == "" {
		annotation = nil
	}
	metadata := map[string]any{"annotations": map[string]any{AnnotationOperation: annotation}}
	if len(resourceVersion) > 0 && resourceVersion[0] != "" {
		metadata["resourceVersion"] = resourceVersion[0]
	}
	body := map[string]any{"metadata": metadata}
	if touchSchedulable {
		if unschedulable {
			body["spec"] = map[string]any{"unschedulable": true}
		} else {
			body["spec"] = map[string]any{"unschedulable": nil}
		}
	}
	patch, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encoding node patch: %w", err)
	}
	err = transient.Retry(ctx, func() error {
		_, err := r.cs.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
	if err != nil {
		verb := "marking"
		switch {
		case touchSchedulable && unschedulable:
			verb = "cordoning"
		case touchSchedulable:
			verb = "uncordoning"
		}
		return fmt.Errorf("%s node %s: %w", verb, name, err)
	}
	return nil
}

// nodeFailed handles a node that could not finish phase: it is uncordoned
// (when hitless cordoned it) and unmarked, and the outcome journaled.
func (r *runner) nodeFailed(ctx context.Context, name, phase string, cause error) {
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	snap := r.w.Snapshot().Record.NodeByName(name)
	restore := func() error {
		// Only a node carrying our mark was cordoned by us: the mark and
		// the cordon are set in one patch. Anything else is left alone.
		node, err := r.cs.CoreV1().Nodes().Get(cleanup, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading node %s: %w", name, err)
		}
		if node.Annotations[AnnotationOperation] != r.w.Snapshot().ID {
			return nil
		}
		return r.patchNode(cleanup, name, "", snap.CordonedByUs, false)
	}

	final, outcome, msg := PhaseFailed, OutcomeFailed, cause.Error()
	var timeout *DrainTimeoutError
	switch {
	case errors.Is(context.Cause(ctx), journal.ErrAborted) || errors.Is(cause, journal.ErrAborted):
		final, outcome, msg = PhaseAborted, OutcomeSkipped, "aborted in phase "+phase
	case ctx.Err() != nil:
		// Interrupted (a signal, a lost lock): back to pending so a
		// resume redoes it; never left cordoned meanwhile.
		final, outcome, msg = PhasePending, "", "interrupted in phase "+phase
	case errors.As(cause, &timeout):
		switch r.spec.OnDrainTimeout {
		case OnDrainTimeoutSkip:
			final, outcome = PhaseSkipped, OutcomeSkipped
		case OnDrainTimeoutUncordon:
			final, outcome = PhasePending, ""
			r.stop(fmt.Sprintf("paused: %s; uncordoned it (`onDrainTimeout` uncordon); fix the blocker and re-run to resume", msg))
		}
	case phase == PhaseWait:
		if n, err := r.nodeObject(name); err == nil && !knode.Ready(n) {
			outcome = OutcomeUnreachable
		}
	}
	rerr := transient.Retry(cleanup, restore)
	if rerr != nil {
		msg += "; and restoring the node failed: " + rerr.Error()
	}
	var blockers []string
	if timeout != nil {
		blockers = append(blockers, timeout.Blocking...)
		if len(timeout.Blocking) == 0 {
			blockers = append(blockers, "pods still on the node: "+strings.Join(timeout.Pods, ", "))
		}
	}
	_ = r.w.Force(cleanup, func(op *Journal) {
		n := op.Record.NodeByName(name)
		now := time.Now().UTC()
		closePhase(n, now, cause.Error())
		n.Phase, n.Outcome = final, outcome
		if final != PhasePending {
			n.Error = msg
			n.CompletedAt = &now
			n.Blockers = blockers
		} else {
			n.Notes = append(n.Notes, msg)
		}
		if rerr == nil && snap.CordonedByUs {
			n.CordonedByUs = false
		}
	})
	if outcome == OutcomeFailed || outcome == OutcomeUnreachable {
		r.mu.Lock()
		r.failures++
		failures := r.failures
		r.mu.Unlock()
		if failures >= r.spec.MaxFailures {
			r.stop(fmt.Sprintf("%d node(s) failed (`maxFailures` %d); last: %s", failures, r.spec.MaxFailures, msg))
		}
	}
	r.emit(Event{Node: name, Batch: r.batchOf(name), Phase: final, Message: msg})
}

// event records a Kubernetes Event on the node.
func (r *runner) event(ctx context.Context, name, reason, message string) {
	node, err := r.nodeObject(name)
	if err != nil {
		return
	}
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{GenerateName: name + ".", Namespace: metav1.NamespaceDefault},
		InvolvedObject:      corev1.ObjectReference{Kind: "Node", Name: name, UID: node.UID, APIVersion: "v1"},
		Reason:              reason,
		Message:             message,
		Source:              corev1.EventSource{Component: "hitless"},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		Type:                corev1.EventTypeNormal,
		ReportingController: "hitless.dev/roll",
		ReportingInstance:   r.w.Snapshot().ID,
	}
	if _, err := r.cs.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		r.emit(Event{Node: name, Phase: "event", Message: "recording event: " + err.Error()})
	}
}

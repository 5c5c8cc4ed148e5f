package roll

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/controller"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	core "github.com/hitless-dev/hitless/internal/engine/roll"
)

// inCluster is `hitless roll --in-cluster`: the same spec as a NodeRoll,
// which the controller runs; the command follows its status (asking for
// the canary's approval at the terminal, or --yes) until the roll is over.
// Run again, the same command follows the same NodeRoll.
type inCluster struct {
	streams genericiooptions.IOStreams
	getter  genericclioptions.RESTClientGetter
	name    string
	yes     bool
	dryRun  bool
	format  output.Format
	every   time.Duration
	probe   *v1alpha1.ProbeBudget
}

func (ic *inCluster) run(cmd *cobra.Command, spec core.Spec) error {
	nr, err := controller.NodeRollFor(ic.name, spec)
	if err != nil {
		return opcmd.Classify(err)
	}
	nr.Spec.CanaryApproved = ic.yes && spec.Canary > 0
	nr.Spec.Probe = ic.probe
	if ic.dryRun {
		return output.Print(ic.streams.Out, output.YAML, nr, nil)
	}
	c, err := opcmd.APIClient(ic.getter)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	live, created, err := controller.Create(ctx, c, nr)
	if err != nil {
		return err
	}
	verb := "created"
	if !created {
		verb = "exists; following it"
	}
	_, _ = fmt.Fprintf(ic.streams.ErrOut, "NodeRoll %s %s (the controller runs it; `kubectl get noderoll %s -o yaml`)\n", live.Name, verb, live.Name)
	approver := opcmd.NewTerminal(ic.streams.In, ic.streams.ErrOut, ic.yes)
	for {
		live, err = controller.Follow(ctx, c, live.Name, ic.every, func(nr *v1alpha1.NodeRoll) {
			_, _ = fmt.Fprintf(ic.streams.ErrOut, "%s  %s\n", time.Now().Format("15:04:05"), controller.StatusLine(nr))
		})
		if err != nil {
			return err
		}
		reason, msg, waiting := controller.Waiting(live)
		if !waiting || reason != "AwaitingCanaryApproval" {
			break
		}
		q := operation.Question{Kind: operation.AskCanary, Text: msg}
		if err := approver.Approve(ctx, q); err != nil {
			return fmt.Errorf("NodeRoll %s waits for its canary's approval (`kubectl patch noderoll %s --type merge -p '{\"spec\":{\"canaryApproved\":true}}'`): %w", live.Name, live.Name, err)
		}
		patch := client.MergeFrom(live.DeepCopy())
		live.Spec.CanaryApproved = true
		if err := c.Patch(ctx, live, patch); err != nil {
			return fmt.Errorf("approving the canary of NodeRoll %s: %w", live.Name, err)
		}
	}
	if err := output.Print(ic.streams.Out, ic.format, live, func(w io.Writer) error {
		return printNodeRoll(w, live)
	}); err != nil {
		return err
	}
	switch live.Status.Phase {
	case v1alpha1.PhaseSucceeded:
		return nil
	case v1alpha1.PhasePaused:
		_, msg, _ := controller.Waiting(live)
		return fmt.Errorf("NodeRoll %s is paused: %s", live.Name, msg)
	}
	return fmt.Errorf("NodeRoll %s %s: %s", live.Name, live.Status.Phase, controller.StatusLine(live))
}

func printNodeRoll(w io.Writer, nr *v1alpha1.NodeRoll) error {
	if _, err := fmt.Fprintf(w, "NodeRoll %s, operation %s (`hitless status %s`)\n%s\n", nr.Name, nr.Status.Operation, nr.Status.Operation, controller.StatusLine(nr)); err != nil {
		return err
	}
	if d := nr.Status.Disruption; d != nil {
		if _, err := fmt.Fprintln(w, controller.DisruptionLine(d)); err != nil {
			return err
		}
	}
	for _, n := range nr.Status.Nodes {
		if _, err := fmt.Fprintf(w, "  node %s (batch %d): %s %s\n", n.Name, n.Batch, n.Phase, n.Message); err != nil {
			return err
		}
	}
	return nil
}

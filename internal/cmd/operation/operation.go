// Package operation holds what the commands of mutating operations share:
// a client from the kubectl flags, exit codes for the engine's errors, and
// the printing of plans, progress and recaps.
package operation

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/exitcode"
	"github.com/hitless-dev/hitless/internal/journal"
	"github.com/hitless-dev/hitless/internal/lock"
	"github.com/hitless-dev/hitless/internal/roll"
)

// Client builds a clientset from the kubectl connection flags.
func Client(getter genericclioptions.RESTClientGetter) (kubernetes.Interface, error) {
	cfg, err := getter.ToRESTConfig()
	if err != nil {
		return nil, exitcode.BadInput(fmt.Errorf("loading kubeconfig: %w", err))
	}
	cfg.QPS, cfg.Burst = 100, 200
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	return cs, nil
}

// Classify maps engine errors to exit codes.
func Classify(err error) error {
	var (
		spec *roll.SpecError
		held *lock.HeldError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &spec):
		return exitcode.BadInput(err)
	case errors.As(err, &held):
		return exitcode.LockHeld(err)
	case errors.Is(err, journal.ErrNotFound):
		return exitcode.BadInput(err)
	}
	return err
}

// CommandLine returns how this process was invoked, for the journal and
// the lock.
func CommandLine() string {
	return strings.Join(append([]string{"hitless"}, os.Args[1:]...), " ")
}

// Progress returns a progress printer writing plain timestamped lines.
func Progress(w io.Writer) func(roll.Event) {
	return func(e roll.Event) {
		line := fmt.Sprintf("%s batch %d  %-28s %s", e.Time.Format("15:04:05.000"), e.Batch, e.Node, e.Phase)
		if e.Message != "" {
			line += "  " + e.Message
		}
		_, _ = fmt.Fprintln(w, line)
	}
}

// PrintPlan writes a roll plan as text.
func PrintPlan(w io.Writer, p *roll.Plan) {
	_, _ = fmt.Fprintf(w, "PLAN: %d nodes in %d batches of up to %d, estimated %s\n", len(p.Nodes), len(p.Batches), p.BatchSize, p.Estimate.Round(time.Second))
	byName := map[string]roll.NodePlan{}
	for _, n := range p.Nodes {
		byName[n.Name] = n
	}
	for i, b := range p.Batches {
		label := fmt.Sprintf("batch %d", i)
		if len(p.Nodes) > 0 && byName[b[0]].Canary {
			label += " (canary)"
		}
		_, _ = fmt.Fprintf(w, "  %s:\n", label)
		for _, name := range b {
			n := byName[name]
			state := ""
			if n.Cordoned {
				state += " [cordoned before the roll: stays cordoned]"
			}
			if !n.Ready {
				state += " [NotReady]"
			}
			_, _ = fmt.Fprintf(w, "    %-28s evicts %3d pods, keeps %d DaemonSet pods, ~%s%s\n", name, len(n.Evict), len(n.DaemonSetPods), n.Estimate.Round(time.Second), state)
			for _, bl := range n.Blockers {
				_, _ = fmt.Fprintf(w, "      blocker %s [%s]: %s\n", bl.Pod, bl.Kind, bl.Detail)
			}
		}
	}
}

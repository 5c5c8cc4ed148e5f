package migrate

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// NewCommand returns the `migrate` command and its subcommands.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter, actions *roll.Actions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Run migration plans: journaled steps with forward and rollback actions, gated on the cluster's state",
		Long: `A migration plan is a YAML document (apiVersion hitless.dev/v1alpha1, kind
MigrationPlan) of parameters and ordered steps: backup, patch, wait (a CEL
condition), check, roll (node groups with a per-node action such as reboot),
component, pause and delete. Each step is journaled in the cluster before it
acts; the plan's gates are checked before every step and pause it with the
reason; running the same plan with the same parameters resumes it; rollback
undoes the steps newest first. hitless status, resume and abort know
migrations too.`,
	}
	cmd.AddCommand(newPlans(streams), newShow(streams), newRun(streams, getter, actions), newRollback(streams, getter))
	return cmd
}

// source is how a command names its plan: a built-in name or -f FILE.
type source struct {
	file string
	// data is the file's content, once loaded.
	data []byte
}

func (s *source) addFlag(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&s.file, "filename", "f", "", "Plan file (YAML or JSON) instead of a built-in plan")
}

// load reads the plan the arguments name; bad input exits 2.
func (s *source) load(args []string) (*plan.Plan, error) {
	switch {
	case s.file != "" && len(args) > 0:
		return nil, exitcode.BadInput(errors.New("give a built-in plan's name or -f FILE, not both"))
	case s.file != "":
		if fi, err := os.Stat(s.file); err == nil && fi.Size() > plan.MaxSize {
			return nil, exitcode.BadInput(&plan.Error{File: s.file, Msg: fmt.Sprintf("%d bytes: a plan is at most %d", fi.Size(), plan.MaxSize)})
		}
		b, err := os.ReadFile(s.file)
		if err != nil {
			return nil, exitcode.BadInput(&plan.Error{File: s.file, Msg: err.Error()})
		}
		s.data = b
		p, err := plan.Parse(s.file, b)
		return p, classify(err)
	case len(args) == 1:
		p, err := plan.Builtin(args[0])
		return p, classify(err)
	}
	return nil, exitcode.BadInput(fmt.Errorf("name a built-in plan (%s) or give -f FILE", strings.Join(plan.BuiltinNames(), ", ")))
}

// classify maps migration errors to exit codes: bad plans and parameters
// are bad input.
func classify(err error) error {
	var pe *plan.Error
	if errors.As(err, &pe) {
		if pe.Field == "set" && pe.Step == "" {
			return exitcode.BadInput(fmt.Errorf("--set: %s", pe.Msg))
		}
		return exitcode.BadInput(err)
	}
	return opcmd.Classify(err)
}

// parseSet reads --set k=v pairs.
func parseSet(pairs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, exitcode.BadInput(fmt.Errorf("--set %q: want name=value", p))
		}
		if _, dup := out[k]; dup {
			return nil, exitcode.BadInput(fmt.Errorf("--set %s is given twice", k))
		}
		out[k] = v
	}
	return out, nil
}

func newPlans(streams genericiooptions.IOStreams) *cobra.Command {
	var format output.Format
	cmd := &cobra.Command{
		Use:   "plans",
		Short: "List the built-in plans and the procedures they follow",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			var plans []*plan.Plan
			for _, n := range plan.BuiltinNames() {
				p, err := plan.Builtin(n)
				if err != nil {
					return err
				}
				plans = append(plans, p)
			}
			return output.Print(streams.Out, format, plans, func(w io.Writer) error {
				return printPlans(w, plans)
			})
		},
	}
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

package roll

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/controller"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	core "github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/measure"
)

// NewCommand returns the `roll` command; actions is the registry of
// per-node actions it offers.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter, actions *core.Actions) *cobra.Command {
	var (
		spec          core.Spec
		nodes         string
		labels        []string
		annots        []string
		exec          string
		restart       string
		custom        []string
		preActions    []string
		postActions   []string
		yes, dry      bool
		format        output.Format
		batchFlag     string
		probing       opcmd.Probing
		ic            inCluster
		inClusterFlag bool
	)
	cmd := &cobra.Command{
		Use:   "roll",
		Short: "Node-by-node maintenance: cordon, drain (PDBs respected), act, wait, uncordon",
		Long: `Rolls through the selected nodes in batches. Per node, each step is journaled
in the cluster before it acts: mark and cordon (a node someone else cordoned
stays cordoned), the pre-node step, a drain through the Eviction API that never
goes around a PodDisruptionBudget, the action, a wait for the node and its
DaemonSet pods Ready, the post-node step, uncordon.

The plan comes first (--dry-run stops there). One operation runs per cluster:
a second one exits 3 naming the holder. Re-running the same command after a
crash, or 'hitless resume ID', continues from the journal; 'hitless abort ID'
stops cleanly and uncordons what hitless cordoned.

--on-drain-timeout: fail (the node fails and counts toward --max-failures),
skip (the node is skipped and the roll goes on), uncordon (the node is
uncordoned and the roll pauses until re-run).

--probe has the node agents measure the whole roll with real packets; the
recap then lists every loss window with the node and step it overlapped
(--report FILE.html draws them on a timeline). --max-outage and --max-loss
are checked before each node: exceeded, the roll pauses there and says why,
or with --on-budget abort stops cleanly.`,
		Example: `  hitless roll --selector pool=blue --batch 2 --exec './upgrade-node.sh' --dry-run
  hitless roll --nodes w1,w2,w3 --restart-daemonset contrail/contrail-vrouter-nodes
  hitless roll --batch 10% --order zone --canary 1 --confirm
  hitless roll --selector pool=blue --pre-node-action job=@lb-deregister.yaml --post-node-action job=@lb-register.yaml
  hitless roll --restart-daemonset contrail/contrail-vrouter-nodes --probe --max-outage 3s --report roll.html`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes != "" {
				spec.Nodes = strings.Split(nodes, ",")
			}
			spec.Batch = batchFlag
			if err := probing.Validate(); err != nil {
				return err
			}
			var err error
			if spec.Actions, err = actionSpecs(exec, restart, labels, annots, custom, spec.ActionTimeout); err != nil {
				return exitcode.BadInput(err)
			}
			if spec.PreNodeActions, err = namedActions("--pre-node-action", preActions); err != nil {
				return exitcode.BadInput(err)
			}
			if spec.PostNodeActions, err = namedActions("--post-node-action", postActions); err != nil {
				return exitcode.BadInput(err)
			}
			if ic.name != "" && !inClusterFlag {
				return exitcode.BadInput(fmt.Errorf("--noderoll names the NodeRoll of --in-cluster"))
			}
			if inClusterFlag {
				if exec != "" {
					return opcmd.Classify(&operation.FieldError{Field: "exec", Msg: "the controller runs no command of yours in its pod: use a registered action"})
				}
				if probing.Enabled {
					if probing.Report != "" {
						return exitcode.BadInput(fmt.Errorf("--report: the controller keeps the disruption in the NodeRoll's status (status.disruption), not in a file where the CLI runs"))
					}
					if probing.OnBudget != "pause" {
						return exitcode.BadInput(fmt.Errorf("--on-budget %s: a NodeRoll pauses on a breach (a larger budget resumes it; deleting it aborts)", probing.OnBudget))
					}
					ic.probe = controller.ProbeBudgetFor(measure.GuardSpec{Rate: probing.Options.Rate, Sample: probing.Options.Sample, Budget: probing.Budget, Settle: probing.Settle})
				}
				ic.streams, ic.getter, ic.yes, ic.dryRun, ic.format, ic.every = streams, getter, yes, dry, format, time.Second
				return ic.run(cmd, spec)
			}
			cs, err := opcmd.Client(getter)
			if err != nil {
				return err
			}
			opts := core.Options{Spec: spec, Command: opcmd.CommandLine(cmd), DryRun: dry, Approver: opcmd.NewTerminal(streams.In, streams.ErrOut, yes), Actions: actions}
			return opcmd.RunRoll(cmd.Context(), streams, cs, opts, format, probing)
		},
	}
	f := cmd.Flags()
	opcmd.AddProbeFlags(f, &probing)
	f.StringVar(&spec.Selector, "selector", "", "Label selector of the nodes to roll")
	f.StringVar(&nodes, "nodes", "", "Comma-separated names of the nodes to roll")
	f.StringVar(&batchFlag, "batch", "1", "Nodes unavailable at once: a count or a percentage (10%); nodes already NotReady or cordoned by others count")
	f.StringVar(&spec.Order, "order", core.OrderName, "Node order: name, zone or control-plane-last")
	f.IntVar(&spec.Canary, "canary", 0, "Roll this many nodes alone first, then ask before going on")
	f.StringVar(&exec, "exec", "", "Action: a shell command run per node (HITLESS_NODE, HITLESS_NODE_IP, HITLESS_BATCH, HITLESS_OPERATION set)")
	f.StringVar(&restart, "restart-daemonset", "", "Action: replace the pods of DaemonSet NAMESPACE/NAME on the node and wait for them Ready")
	f.StringArrayVar(&labels, "set-node-label", nil, "Action: set a node label k=v (repeatable)")
	f.StringArrayVar(&annots, "wait-node-annotation", nil, "Action: wait until the node has annotation k=v (repeatable)")
	f.StringArrayVar(&custom, "action", nil, "Action: a registered per-node action NAME or NAME=PARAMS (PARAMS a JSON object), run after the actions above (repeatable; registered: "+strings.Join(actions.Names(), ", ")+")")
	f.StringArrayVar(&preActions, "pre-node-action", nil, "Pre-node hook: a registered action NAME=PARAMS run after --pre-node, before the drain (repeatable; PARAMS JSON or @FILE in JSON or YAML; job=@FILE runs a Job per node)")
	f.StringArrayVar(&postActions, "post-node-action", nil, "Post-node hook: a registered action NAME=PARAMS run after --post-node, before the uncordon (repeatable, as --pre-node-action)")
	f.StringVar(&spec.PreNode, "pre-node", "", "Command run before draining each node")
	f.StringVar(&spec.PostNode, "post-node", "", "Command run before uncordoning each node")
	f.BoolVar(&spec.Confirm, "confirm", false, "Ask the operator before draining and before uncordoning each node (stop / resume routing)")
	f.DurationVar(&spec.DrainTimeout, "drain-timeout", 10*time.Minute, "How long a drain may take")
	f.StringVar(&spec.OnDrainTimeout, "on-drain-timeout", core.OnDrainTimeoutFail, "What a drain timeout does: fail, skip or uncordon")
	f.DurationVar(&spec.EvictRetryDelay, "evict-retry-delay", 2*time.Second, "Pause after an eviction a PodDisruptionBudget refused")
	f.DurationVar(&spec.ActionTimeout, "action-timeout", 10*time.Minute, "How long the action and the wait for Ready may take")
	f.IntVar(&spec.MaxFailures, "max-failures", 1, "Stop the roll after this many failed nodes")
	f.BoolVar(&spec.Force, "force", false, "Delete unmanaged pods (no controller) instead of refusing")
	f.BoolVar(&spec.DeleteEmptyDirData, "delete-emptydir-data", false, "Evict pods with emptyDir volumes, losing their data")
	f.BoolVar(&yes, "yes", false, "Continue after the canary without asking")
	f.BoolVar(&dry, "dry-run", false, "Print the plan and change nothing (with --in-cluster: the NodeRoll)")
	f.BoolVar(&inClusterFlag, "in-cluster", false, "Have the in-cluster controller run the roll: create a NodeRoll of these flags and follow its status (run again, follow the same one)")
	f.StringVar(&ic.name, "noderoll", "", "The NodeRoll's name with --in-cluster (default: derived from the flags, so the same command finds the same NodeRoll)")
	output.AddFlag(f, &format)
	return cmd
}

func keyValues(flag string, in []string) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range in {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s: %q is not key=value", flag, kv)
		}
		out[k] = v
	}
	return out, nil
}

// actionSpecs turns the action flags into the spec's actions, in the order
// they run: --exec, --restart-daemonset, --set-node-label,
// --wait-node-annotation, then each --action.
func actionSpecs(exec, restart string, labels, annots, custom []string, timeout time.Duration) ([]core.ActionSpec, error) {
	var out []core.ActionSpec
	add := func(name string, params any) error {
		a, err := core.NewAction(name, params)
		out = append(out, a)
		return err
	}
	if exec != "" {
		if err := add(core.ActionExec, core.ExecParams{Command: exec, Timeout: timeout}); err != nil {
			return nil, err
		}
	}
	if restart != "" {
		if err := add(core.ActionRestartDaemonSet, core.RestartParams{DaemonSet: restart}); err != nil {
			return nil, err
		}
	}
	for _, a := range []struct {
		flag, name string
		kvs        []string
	}{{"--set-node-label", core.ActionSetNodeLabels, labels}, {"--wait-node-annotation", core.ActionWaitNodeAnnotation, annots}} {
		values, err := keyValues(a.flag, a.kvs)
		if err != nil {
			return nil, err
		}
		if values != nil {
			if err := add(a.name, core.LabelParams{Values: values}); err != nil {
				return nil, err
			}
		}
	}
	more, err := namedActions("--action", custom)
	return append(out, more...), err
}

// namedActions reads NAME or NAME=PARAMS values of flag, PARAMS a JSON
// object or @FILE, a file holding one in JSON or YAML.
func namedActions(flag string, values []string) ([]core.ActionSpec, error) {
	var out []core.ActionSpec
	for _, c := range values {
		name, params, _ := strings.Cut(c, "=")
		if name == "" {
			return nil, fmt.Errorf("%s %q: want NAME or NAME=PARAMS", flag, c)
		}
		raw := []byte(params)
		if file, ok := strings.CutPrefix(params, "@"); ok {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", flag, name, err)
			}
			if raw, err = yaml.YAMLToJSON(b); err != nil {
				return nil, fmt.Errorf("%s %s: %s: %w", flag, name, file, err)
			}
		} else if params != "" && !json.Valid(raw) {
			return nil, fmt.Errorf("%s %s: parameters %q are not JSON (or @FILE)", flag, name, params)
		}
		out = append(out, core.ActionSpec{Name: name, Params: json.RawMessage(raw)})
	}
	return out, nil
}

// FromSpec resumes a roll from its journaled spec, as `hitless resume`
// does for a roll a library started: the same printing, approvals and
// guard (the journaled one) as the roll command.
func FromSpec(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter, actions *core.Actions) func(cmd *cobra.Command, op *journal.Raw, yes bool, format output.Format) error {
	return func(cmd *cobra.Command, op *journal.Raw, yes bool, format output.Format) error {
		spec, err := core.SpecOf(&op.Operation)
		if err != nil {
			return exitcode.BadInput(err)
		}
		cs, err := opcmd.Client(getter)
		if err != nil {
			return err
		}
		opts := core.Options{Spec: spec, Command: opcmd.CommandLine(cmd), Approver: opcmd.NewTerminal(streams.In, streams.ErrOut, yes), Actions: actions}
		return opcmd.RunRoll(cmd.Context(), streams, cs, opts, format, opcmd.Probing{OnBudget: "pause"})
	}
}

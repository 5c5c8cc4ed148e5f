package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	engine "github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/measure"
)

func newShow(streams genericiooptions.IOStreams) *cobra.Command {
	var (
		src    source
		format output.Format
	)
	cmd := &cobra.Command{
		Use:   "show NAME | -f FILE",
		Short: "Show a plan: its parameters, gates, steps and the rollback of each step",
		Example: `  hitless migrate show openshift-sdn-to-ovn
  hitless migrate show -f my-plan.yaml -o yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			p, err := src.load(args)
			if err != nil {
				return err
			}
			return output.Print(streams.Out, format, p, func(w io.Writer) error {
				return printPlan(w, p, nil, nil, nil)
			})
		},
	}
	src.addFlag(cmd)
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

type runFlags struct {
	src       source
	set       []string
	releases  []string
	dryRun    bool
	yes       bool
	backupDir string
	agents    time.Duration
	format    output.Format
	probing   opcmd.Probing
	ic        inCluster
}

func newRun(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter, actions *roll.Actions) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run NAME | -f FILE [--set name=value]...",
		Short: "Run a plan: checked against the cluster first, every step journaled, resumed by running it again",
		Long: `Checks the plan against the cluster (every kind served, every named object
there or created by an earlier step, every CEL condition compiling against
its kind's schema), then runs it step by step. A gate that does not hold or a
wait that times out with onTimeout: pause stops the plan before the step,
naming the object; fix it and run the same command again to continue.`,
		Example: `  hitless migrate run openshift-sdn-to-ovn --dry-run
  hitless migrate run openshift-sdn-to-ovn --set mtu=1400 --set workerBatch=25% --yes
  hitless migrate run -f my-plan.yaml --probe --max-outage 2s --report migration.html`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, streams, getter, actions, &f, args)
		},
	}
	fs := cmd.Flags()
	f.src.addFlag(cmd)
	fs.StringArrayVar(&f.set, "set", nil, "A parameter's value, name=value (repeatable)")
	fs.StringArrayVar(&f.releases, "release", nil, "A release a component step deploys, NAME=PATH (the step's source; a file, directory or kustomization; repeatable)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "Check the plan against the cluster, print it with every step's rollback, change nothing")
	fs.BoolVar(&f.yes, "yes", false, "Answer yes to the plan's pause steps and its rolls' questions")
	fs.StringVar(&f.backupDir, "backup-dir", "", "Also write every backup to a file (mode 0600) in this directory")
	fs.DurationVar(&f.agents, "agent-timeout", 20*time.Second, "How long the plan's preflight and postflight wait for the node agents' fresh results (node MTU, kernel, connectivity); 0 runs them without")
	opcmd.AddProbeFlags(fs, &f.probing)
	f.ic.addFlags(cmd)
	output.AddFlag(fs, &f.format)
	return cmd
}

func run(cmd *cobra.Command, streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter, actions *roll.Actions, f *runFlags, args []string) error {
	ctx := cmd.Context()
	p, err := f.src.load(args)
	if err != nil {
		return err
	}
	set, err := parseSet(f.set)
	if err != nil {
		return err
	}
	if f.agents < 0 {
		return exitcode.BadInput(errors.New("--agent-timeout: must not be negative"))
	}
	if f.ic.enabled {
		return f.ic.run(cmd, streams, getter, f, p, set, args)
	}
	switch {
	case f.ic.name != "":
		return exitcode.BadInput(errors.New("--migration names the Migration of --in-cluster"))
	case f.ic.rollbackOnBreach:
		return exitcode.BadInput(errors.New("--rollback-on-breach is for --in-cluster (without it: --on-budget abort)"))
	}
	if err := f.probing.Validate(); err != nil {
		return err
	}
	cfg, cs, err := opcmd.Clients(getter)
	if err != nil {
		return err
	}
	sources, err := loadReleases(f.releases)
	if err != nil {
		return err
	}
	opts := engine.Options{Plan: p, Set: set, DryRun: f.dryRun, Command: opcmd.CommandLine(cmd), Actions: actions, AgentTimeout: f.agents,
		Approver: opcmd.NewTerminal(streams.In, streams.ErrOut, f.yes), Sources: sources}
	if f.backupDir != "" {
		dir := f.backupDir
		opts.OnBackup = func(_ context.Context, step string, objs []*unstructured.Unstructured) (string, error) {
			return writeBackup(dir, p.Metadata.Name, step, objs)
		}
	}
	return execute(ctx, streams, operation.Cluster{Client: cs, Config: cfg}, opts, f)
}

// FromSpec resumes a migration from its journal, as `hitless resume`
// does: the plan and parameters the journal holds (the plan file may be
// gone or changed since), the journaled guard, and this invocation's
// --yes and -o.
func FromSpec(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter, actions *roll.Actions) func(cmd *cobra.Command, op *journal.Raw, yes bool, format output.Format) error {
	return func(cmd *cobra.Command, op *journal.Raw, yes bool, format output.Format) error {
		j, err := journal.Decode[engine.Record](op)
		if err != nil {
			return exitcode.BadInput(err)
		}
		if j.Record.Plan == nil {
			return exitcode.BadInput(fmt.Errorf("operation %s: its journal holds no plan", op.ID))
		}
		cfg, cs, err := opcmd.Clients(getter)
		if err != nil {
			return err
		}
		set := map[string]string{}
		for k, v := range j.Record.Params {
			set[k] = fmt.Sprint(v)
		}
		f := &runFlags{yes: yes, format: format, agents: 20 * time.Second, probing: opcmd.Probing{OnBudget: "pause"}}
		opts := engine.Options{Plan: j.Record.Plan, Set: set, Command: opcmd.CommandLine(cmd), Actions: actions, AgentTimeout: f.agents,
			Approver: opcmd.NewTerminal(streams.In, streams.ErrOut, yes)}
		return execute(cmd.Context(), streams, operation.Cluster{Client: cs, Config: cfg}, opts, f)
	}
}

// execute runs a migration with the probe session of the flags, progress
// on streams.ErrOut, and prints what it did.
func execute(ctx context.Context, streams genericiooptions.IOStreams, c operation.Cluster, opts engine.Options, f *runFlags) error {
	cs := c.Client
	session := f.probing.Session(cs, f.dryRun)
	if err := session.Start(ctx); err != nil {
		return classify(err)
	}
	opts.Guard, opts.Guards = session.Guard(), session.Guards()
	if f.format == output.Table {
		progress := opcmd.NewProgress(streams.ErrOut)
		defer progress.Close()
		opts.RollProgress = progress.Event
		opts.Progress = func(s string) { _, _ = fmt.Fprintf(streams.ErrOut, "%s %s\n", time.Now().Format("15:04:05.000"), s) }
	}
	res, runErr := engine.Run(ctx, c, opts)
	var rep *measure.Report
	if res != nil && !f.dryRun {
		var err error
		if rep, err = session.Finish(ctx, res.Operation, res); err == nil {
			err = f.probing.WriteReport(rep)
		}
		if err != nil && runErr == nil {
			runErr = err
		}
	}
	if res == nil {
		return classify(runErr)
	}
	out := struct {
		*engine.Result
		Probe *measure.Report `json:"probe,omitempty"`
	}{res, rep}
	perr := output.Print(streams.Out, f.format, out, func(w io.Writer) error {
		if f.dryRun || res.Operation == "" {
			if err := printPlan(w, res.Plan, res.Rollbacks, res.Skipped, res.Params); err != nil {
				return err
			}
			for _, warn := range res.Warnings {
				_, _ = fmt.Fprintf(w, "warning: %s\n", warn)
			}
			if f.dryRun {
				_, _ = fmt.Fprintln(w, "\nDry run: nothing was changed.")
			}
			return nil
		}
		printResult(w, res, "Migration")
		if runErr != nil {
			_, _ = fmt.Fprintf(w, "\nContinue with the same command or `hitless resume %s`; undo the started steps with `hitless migrate rollback %s`.\n", res.Operation, res.Operation)
		}
		if rep != nil {
			_, _ = fmt.Fprintln(w)
			measure.PrintTable(w, rep)
		}
		return nil
	})
	if runErr != nil {
		return classify(runErr)
	}
	return perr
}

// writeBackup writes a step's backup as YAML with mode 0600.
func writeBackup(dir, planName, step string, objs []*unstructured.Unstructured) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	var b []byte
	for _, u := range objs {
		y, err := yaml.Marshal(u.Object)
		if err != nil {
			return "", err
		}
		b = append(append(b, "---\n"...), y...)
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.yaml", planName, step, time.Now().UTC().Format("20060102-150405")))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}

func newRollback(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	var (
		yes    bool
		format output.Format
		nodes  []string
	)
	cmd := &cobra.Command{
		Use:   "rollback ID",
		Short: "Undo a migration's steps, newest first: explicit rollbacks, or the inverse derived from each step's backup",
		Long: `Walks back the steps the migration started, newest first: a patch's fields
are restored from the backup taken before it, deleted objects re-created, an
installed component uninstalled, an upgraded one rolled back; rolls in flight
are aborted (their nodes uncordoned). Each undo is journaled; running the
command again continues where it stopped. A roll step whose actions can be
undone on a node (a cutover) rolls every node it moved back.

With --nodes, only those nodes are rolled back, by the roll steps that moved
them; the migration's other nodes and steps are untouched, it stays open
(Paused), and its next run moves them again, journaling why.`,
		Example: `  hitless migrate rollback migrate-20261202-101500-3fa2
  hitless migrate rollback migrate-20261202-101500-3fa2 --nodes worker-3,worker-4`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := opcmd.Config(getter)
			if err != nil {
				return err
			}
			cs, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("creating client: %w", err)
			}
			for _, n := range nodes {
				if msgs := validation.IsDNS1123Subdomain(n); len(msgs) > 0 {
					return exitcode.BadInput(fmt.Errorf("--nodes: %q is not a node name: %s", n, strings.Join(msgs, "; ")))
				}
			}
			opts := engine.RollbackOptions{Command: opcmd.CommandLine(cmd), Approver: opcmd.NewTerminal(streams.In, streams.ErrOut, yes), Nodes: nodes}
			if format == output.Table {
				progress := opcmd.NewProgress(streams.ErrOut)
				defer progress.Close()
				opts.RollProgress = progress.Event
				opts.Progress = func(s string) { _, _ = fmt.Fprintf(streams.ErrOut, "%s %s\n", time.Now().Format("15:04:05.000"), s) }
			}
			res, runErr := engine.Rollback(cmd.Context(), operation.Cluster{Client: cs, Config: cfg}, args[0], opts)
			if res == nil {
				return classify(runErr)
			}
			perr := output.Print(streams.Out, format, res, func(w io.Writer) error {
				printResult(w, res, "Rollback of")
				return nil
			})
			if runErr != nil {
				return classify(runErr)
			}
			return perr
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "Answer yes to the rollback's pause steps")
	cmd.Flags().StringSliceVar(&nodes, "nodes", nil, "Roll back only these nodes (comma-separated): the roll steps that moved them move them back; the migration stays open")
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

// loadReleases reads --release NAME=PATH values; bad input exits 2
// naming the flag and the file.
func loadReleases(vals []string) (map[string]*component.Source, error) {
	out := map[string]*component.Source{}
	for _, v := range vals {
		name, path, ok := strings.Cut(v, "=")
		if !ok || name == "" || path == "" {
			return nil, exitcode.BadInput(fmt.Errorf("--release %q: want NAME=PATH", v))
		}
		if _, dup := out[name]; dup {
			return nil, exitcode.BadInput(fmt.Errorf("--release: %s is given twice", name))
		}
		src, err := component.Load(path)
		if err != nil {
			return nil, exitcode.BadInput(fmt.Errorf("--release %s: %w", name, err))
		}
		out[name] = src
	}
	return out, nil
}

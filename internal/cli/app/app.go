package app

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hitless-dev/hitless/internal/cli/abort"
	"github.com/hitless-dev/hitless/internal/cli/agent"
	"github.com/hitless-dev/hitless/internal/cli/checks"
	"github.com/hitless-dev/hitless/internal/cli/cluster"
	controllercmd "github.com/hitless-dev/hitless/internal/cli/controller"
	"github.com/hitless-dev/hitless/internal/cli/demo"
	"github.com/hitless-dev/hitless/internal/cli/diff"
	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/history"
	"github.com/hitless-dev/hitless/internal/cli/install"
	migratecmd "github.com/hitless-dev/hitless/internal/cli/migrate"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/cli/postflight"
	"github.com/hitless-dev/hitless/internal/cli/preflight"
	"github.com/hitless-dev/hitless/internal/cli/probe"
	"github.com/hitless-dev/hitless/internal/cli/resume"
	"github.com/hitless-dev/hitless/internal/cli/roll"
	"github.com/hitless-dev/hitless/internal/cli/rollback"
	"github.com/hitless-dev/hitless/internal/cli/status"
	"github.com/hitless-dev/hitless/internal/cli/uninstall"
	"github.com/hitless-dev/hitless/internal/cli/upgrade"
	"github.com/hitless-dev/hitless/internal/cli/version"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	rollcore "github.com/hitless-dev/hitless/internal/engine/roll"
)

// Main runs hitless with the process's arguments and streams and returns
// the exit code.
func Main() int { return MainWith(Options{}) }

// MainWith is Main with extensions (see RunWith).
func MainWith(opts Options) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	return RunWith(ctx, filepath.Base(os.Args[0]), os.Args[1:], streams, opts)
}

// Options extend the command tree.
type Options struct {
	// Actions is the registry of per-node actions `hitless roll --action`
	// and `hitless resume` offer; nil is roll.DefaultActions.
	Actions *rollcore.Actions
	// Kinds are further kinds of operation for resume, abort and status,
	// beside the roll and the component operations.
	Kinds []operation.Kind
}

// Run executes the command line args as program name argv0 would and
// returns the exit code. Errors are printed to streams.ErrOut.
func Run(ctx context.Context, argv0 string, args []string, streams genericiooptions.IOStreams) int {
	return RunWith(ctx, argv0, args, streams, Options{})
}

// RunWith is Run with extensions: a build of hitless with its own
// per-node actions registered calls it.
func RunWith(ctx context.Context, argv0 string, args []string, streams genericiooptions.IOStreams, opts Options) int {
	// controller-runtime's client (under fluxcd/pkg/ssa) logs through its
	// own root logger: it goes to klog like the rest.
	ctrllog.SetLogger(klog.NewKlogr())
	root, reached := NewRoot(argv0, streams, opts)
	root.SetArgs(args)
	root.Annotations[opcmd.AnnotationArgs] = opcmd.JournalLine(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitcode.OK
	}
	code := exitcode.Of(err)
	if !*reached && code == exitcode.Failed {
		// cobra refused the command line before any command ran: an
		// unknown command, a missing or extra argument.
		code = exitcode.Usage
	}
	_, _ = fmt.Fprintf(streams.ErrOut, "Error: %s\n", opcmd.FlagText(err.Error()))
	if code == exitcode.Usage && !*reached {
		_, _ = fmt.Fprintf(streams.ErrOut, "Run '%s --help' for usage.\n", root.DisplayName())
	}
	return code
}

// NewRoot builds the command tree. reached becomes true once a command's
// own code starts, which tells usage errors from failures.
func NewRoot(argv0 string, streams genericiooptions.IOStreams, opts Options) (*cobra.Command, *bool) {
	if opts.Actions == nil {
		opts.Actions = migrate.Actions()
	}
	kinds, kindsErr := operation.NewRegistry(append(append([]operation.Kind{rollcore.OperationKind(), migrate.OperationKind()}, lifecycle.OperationKinds()...), opts.Kinds...)...)
	rerun := func(ctx context.Context, args []string) error {
		root, _ := NewRoot(argv0, streams, opts)
		root.SetArgs(args)
		root.Annotations[opcmd.AnnotationArgs] = opcmd.JournalLine(args)
		return root.ExecuteContext(ctx)
	}
	reached := new(bool)
	flags := genericclioptions.NewConfigFlags(true)
	root := &cobra.Command{
		Use:   "hitless",
		Short: "Safe, measured day-2 operations on a Kubernetes cluster's network layer",
		Long: `hitless makes the riskiest day-2 operations on a cluster's network layer
safe and measured: checks before and after, install, upgrade, CNI migration,
rollback and uninstall, and node-by-node rolls with drains that respect
PodDisruptionBudgets, resumable after any crash.

Exit codes: 0 success, 1 the operation or a hard check failed, 2 bad input or
usage, 3 refused because another hitless operation holds the cluster lock.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			*reached = true
			return kindsErr
		},
	}
	root.Annotations = map[string]string{}
	if strings.HasPrefix(argv0, "kubectl-") {
		// Invoked as a kubectl plugin: `kubectl hitless ...`.
		root.Annotations[cobra.CommandDisplayNameAnnotation] = "kubectl hitless"
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitcode.BadInput(err) })
	flags.AddFlags(root.PersistentFlags())
	addKlogFlags(root)

	root.AddCommand(
		version.NewCommand(streams),
		cluster.NewCommand(streams),
		demo.NewCommand(streams),
		roll.NewCommand(streams, flags, opts.Actions),
		status.NewCommand(streams, flags, kinds),
		resume.NewCommand(streams, flags, kinds, rerun, map[string]resume.Resumer{
			rollcore.Kind: {FromSpec: roll.FromSpec(streams, flags, opts.Actions)},
			migrate.Kind:  {FromSpec: migratecmd.FromSpec(streams, flags, opts.Actions), Always: true},
		}),
		abort.NewCommand(streams, flags, kinds),
		preflight.NewCommand(streams, flags),
		postflight.NewCommand(streams, flags),
		checks.NewCommand(streams, flags),
		agent.NewCommand(streams, flags),
		probe.NewCommand(streams, flags),
		install.NewCommand(streams, flags),
		upgrade.NewCommand(streams, flags),
		diff.NewCommand(streams, flags),
		rollback.NewCommand(streams, flags),
		uninstall.NewCommand(streams, flags),
		history.NewCommand(streams, flags),
		migratecmd.NewCommand(streams, flags, opts.Actions),
		controllercmd.NewCommand(streams, flags),
	)
	return root, reached
}

// addKlogFlags exposes klog's verbosity as -v; logs go to stderr.
func addKlogFlags(root *cobra.Command) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for _, name := range []string{"v", "vmodule"} {
		if f := fs.Lookup(name); f != nil {
			root.PersistentFlags().AddGoFlag(f)
		}
	}
}

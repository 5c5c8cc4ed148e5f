package checkrun

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/check/catalog"
	"github.com/hitless-dev/hitless/internal/check/params"
	"github.com/hitless-dev/hitless/internal/check/profile"
	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/cli/output"
)

// ErrHardFailure is returned (exit 1) when a hard check failed.
var ErrHardFailure = errors.New("a hard check failed")

// Flags are the options both commands share.
type Flags struct {
	Options catalog.Options
	Format  output.Format
	JUnit   string
}

// AddFlags registers the shared flags.
func AddFlags(cmd *cobra.Command, f *Flags) {
	fs := cmd.Flags()
	fs.StringVar(&f.Options.Profile, "profile", "generic", "Check profile: "+strings.Join(profile.Names(), ", "))
	fs.StringVarP(&f.Options.NetworkFile, "filename", "f", "", "Network parameters file (clusterNetwork, serviceNetwork, machineNetwork, VIPs, mtu, ports, internalSubnet)")
	fs.StringVar(&f.Options.MatrixFile, "matrix", "", "Compatibility matrix file (controller, agent, kernel module, kernel)")
	fs.DurationVar(&f.Options.AgentTimeout, "agent-timeout", 20*time.Second, "How long to wait for the node agents' fresh results; 0 runs without them")
	fs.DurationVar(&f.Options.CheckTimeout, "check-timeout", time.Minute, "Time limit of each check")
	fs.StringVar(&f.Options.Namespace, "workload-namespace", "", "Only check workloads (pods, rollouts) in this namespace")
	fs.StringVarP(&f.Options.Selector, "selector", "l", "", "Only check workloads (pods, rollouts) with these labels")
	fs.StringVar(&f.Options.NetworkType, "network-type", "", "Expected OpenShift network type (default: the profile's)")
	fs.BoolVar(&f.Options.NoRecord, "no-record", false, "Do not record the run in the cluster")
	fs.StringVar(&f.JUnit, "junit", "", "Also write the results as JUnit XML to this file")
	output.AddFlag(fs, &f.Format)
}

// Execute validates, runs, prints and maps the outcome to an exit code.
func Execute(cmd *cobra.Command, streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter, f *Flags) error {
	prep, err := catalog.Prepare(f.Options)
	if err != nil {
		return Classify(err)
	}
	cfg, cs, err := opcmd.Clients(getter)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating client: %w", err)
	}
	rep, err := prep.Run(cmd.Context(), cs, dyn)
	if rep == nil {
		return err
	}
	if f.JUnit != "" {
		if jerr := check.WriteJUnit(f.JUnit, rep); jerr != nil {
			return jerr
		}
	}
	perr := output.Print(streams.Out, f.Format, rep, func(w io.Writer) error {
		check.PrintTable(w, rep, output.IsTerminal(streams.Out))
		return nil
	})
	switch {
	case err != nil:
		return err
	case perr != nil:
		return perr
	case !rep.Summary.OK:
		return fmt.Errorf("%s %s: %w (%d)", rep.Kind, rep.ID, ErrHardFailure, rep.Summary.Blocking)
	}
	return nil
}

// Classify maps input errors to exit code 2.
func Classify(err error) error {
	var (
		pe *params.Error
		oe *catalog.OptionError
	)
	if errors.As(err, &pe) || errors.As(err, &oe) || errors.Is(err, check.ErrNoRun) {
		return exitcode.BadInput(err)
	}
	return err
}

// NewCommand returns the preflight or postflight command.
func NewCommand(kind, short, long, example string, streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	f := &Flags{Options: catalog.Options{Kind: kind}}
	cmd := &cobra.Command{
		Use:     kind,
		Short:   short,
		Long:    long,
		Example: example,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return Execute(cmd, streams, getter, f)
		},
	}
	AddFlags(cmd, f)
	return cmd
}

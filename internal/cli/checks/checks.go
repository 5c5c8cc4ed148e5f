package checks

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/check/catalog"
	"github.com/hitless-dev/hitless/internal/check/profile"
	"github.com/hitless-dev/hitless/internal/cli/checkrun"
	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

// NewCommand returns the `checks` command.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "checks",
		Short: "Past preflight and postflight runs, and the checks each profile runs",
	}
	cmd.AddCommand(history(streams, getter), profiles(streams))
	return cmd
}

func history(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	var format output.Format
	cmd := &cobra.Command{
		Use:   "history [RUN]",
		Short: fmt.Sprintf("List the recorded runs (the newest %d are kept), or show one", check.Keep),
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := opcmd.Client(getter)
			if err != nil {
				return err
			}
			store := check.NewStore(cs)
			if len(args) == 1 {
				rep, err := store.Get(cmd.Context(), args[0])
				if err != nil {
					return checkrun.Classify(err)
				}
				return output.Print(streams.Out, format, rep, func(w io.Writer) error {
					check.PrintTable(w, rep, output.IsTerminal(streams.Out))
					return nil
				})
			}
			runs, err := store.List(cmd.Context())
			if err != nil {
				return err
			}
			return output.Print(streams.Out, format, runs, func(w io.Writer) error {
				_, _ = fmt.Fprintln(w, "RUN\tKIND\tPROFILE\tAGE\tOK\tPASS\tWARN\tFAIL\tERROR\tSKIP")
				for _, r := range runs {
					s := r.Summary
					_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%t\t%d\t%d\t%d\t%d\t%d\n", r.ID, r.Kind, r.Profile,
						duration.HumanDuration(time.Since(r.Started)), s.OK, s.Pass, s.Warn, s.Fail, s.Error, s.Skip)
				}
				return nil
			})
		},
	}
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

func profiles(streams genericiooptions.IOStreams) *cobra.Command {
	var format output.Format
	cmd := &cobra.Command{
		Use:   "profiles [NAME]",
		Short: "List the profiles, or one profile's checks with their severities and thresholds",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				var all []*profile.Profile
				for _, n := range profile.Names() {
					p, _ := profile.Get(n)
					all = append(all, p)
				}
				return output.Print(streams.Out, format, all, func(w io.Writer) error {
					_, _ = fmt.Fprintln(w, "PROFILE\tTITLE\tSEED")
					for _, p := range all {
						_, _ = fmt.Fprintf(w, "%s\t%s\t%s\n", p.Name, p.Title, p.Seed)
					}
					return nil
				})
			}
			p, err := profile.Get(args[0])
			if err != nil {
				return exitcode.BadInput(err)
			}
			titles := map[string]string{}
			for _, c := range catalog.All() {
				titles[c.ID()] = c.Title()
			}
			for _, c := range agent.NodeChecks() {
				titles[c.ID()] = c.Title()
			}
			return output.Print(streams.Out, format, p, func(w io.Writer) error {
				_, _ = fmt.Fprintf(w, "%s: %s\nSeed: %s\nNode: %+v\n\n", p.Name, p.Title, p.Seed, p.Node)
				_, _ = fmt.Fprintln(w, "KIND\tCHECK\tSEVERITY\tTITLE")
				for _, kind := range []string{profile.Preflight, profile.Postflight} {
					for _, id := range p.IDs(kind) {
						s, _ := p.Severity(kind, id)
						_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", kind, id, s, titles[id])
					}
				}
				return nil
			})
		},
	}
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}

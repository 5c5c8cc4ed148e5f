package probe

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/measure"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

// NewCommand returns the `probe` command.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Measure the network between the nodes with real packets, through the node agents",
	}
	cmd.AddCommand(newRun(streams, getter))
	return cmd
}

func newRun(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	var (
		opts   measure.Options
		format output.Format
		html   string
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Probe every path for a while and report loss, outages, latency and TCP resets",
		Long: `Every agent sends sequence-numbered, timestamped UDP probes to its peers (all,
or --sample of them) at --rate per second each, answers theirs, holds a
long-lived TCP connection to each and counts its resets, and polls the API
server 10 times a second. Each path's probes are judged in order: a probe
unanswered within 1 s is lost, and consecutive losses are one loss window
from the first lost probe's send time to the next answered one's.

JSON (-o json): {"session", "started", "ended", "rate", "agents", "missing",
"paths": [{"from", "to" (a node or "apiserver"), "kind" (udp, http), "sent",
"received", "lost", "lossPct", "longestOutageMs", "windows": [{"start", "end",
"durationMs", "lost"}], "latency": {"p50Ms", "p90Ms", "p99Ms", "maxMs"},
"tcpResets", "tcpConnected"}], "summary": {"paths", "pathsWithLoss", "sent",
"lost", "lossPct", "longestOutageMs", "worstPath", "tcpResets"}}`,
		Example: `  hitless probe run --duration 60s
  hitless probe run --duration 5m --rate 50 --sample 10 -o json > probes.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Duration <= 0 || opts.Duration > 24*time.Hour {
				return exitcode.BadInput(fmt.Errorf("--duration %s: want more than 0 and at most 24h", opts.Duration))
			}
			if opts.Rate < 1 || opts.Rate > agent.MaxRate {
				return exitcode.BadInput(fmt.Errorf("--rate %d: want 1 to %d probes per second", opts.Rate, agent.MaxRate))
			}
			if opts.Sample < 0 {
				return exitcode.BadInput(fmt.Errorf("--sample %d: want 0 (all peers) or more", opts.Sample))
			}
			cs, err := opcmd.Client(getter)
			if err != nil {
				return err
			}
			rep, err := measure.Run(cmd.Context(), cs, opts)
			if err != nil {
				return err
			}
			if html != "" {
				if err := measure.WriteHTML(html, rep); err != nil {
					return err
				}
			}
			return output.Print(streams.Out, format, rep, func(w io.Writer) error {
				measure.PrintTable(w, rep)
				return nil
			})
		},
	}
	fs := cmd.Flags()
	fs.DurationVar(&opts.Duration, "duration", 30*time.Second, "How long to probe")
	fs.IntVar(&opts.Rate, "rate", 100, "Probes per second to each peer")
	fs.IntVar(&opts.Sample, "sample", 0, "Peers each agent probes (0: all); in large clusters, a stable sample")
	fs.StringVar(&html, "report", "", "Also write a self-contained HTML report with a timeline to this file")
	output.AddFlag(fs, &format)
	return cmd
}

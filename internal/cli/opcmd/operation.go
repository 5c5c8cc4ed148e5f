package opcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/measure"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

// Config builds the REST config from the kubectl connection flags.
func Config(getter genericclioptions.RESTClientGetter) (*rest.Config, error) {
	cfg, err := getter.ToRESTConfig()
	if err != nil {
		return nil, exitcode.BadInput(fmt.Errorf("loading kubeconfig: %w", err))
	}
	cfg.QPS, cfg.Burst = 100, 200
	return cfg, nil
}

// Client builds a clientset from the kubectl connection flags.
func Client(getter genericclioptions.RESTClientGetter) (kubernetes.Interface, error) {
	_, cs, err := Clients(getter)
	return cs, err
}

// Clients returns the REST config of the kubectl connection flags and a
// clientset built from it.
func Clients(getter genericclioptions.RESTClientGetter) (*rest.Config, kubernetes.Interface, error) {
	cfg, err := Config(getter)
	if err != nil {
		return nil, nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("creating client: %w", err)
	}
	return cfg, cs, nil
}

// Classify maps engine errors to exit codes.
func Classify(err error) error {
	var (
		spec   *roll.SpecError
		held   *lock.HeldError
		format *journal.FormatError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &spec):
		return exitcode.BadInput(err)
	case errors.As(err, &held):
		return exitcode.LockHeld(err)
	case errors.Is(err, journal.ErrNotFound), errors.As(err, &format):
		return exitcode.BadInput(err)
	}
	return err
}

// Probing is how an operation measures its disruption.
type Probing struct {
	Enabled  bool
	Options  measure.Options
	Budget   measure.Budget
	OnBudget string // pause (default) or abort
	Report   string // HTML report path
	Settle   time.Duration
}

// AddProbeFlags registers --probe and its companions.
func AddProbeFlags(fs *pflag.FlagSet, p *Probing) {
	fs.BoolVar(&p.Enabled, "probe", false, "Measure the disruption with the node agents' probes for the whole operation")
	fs.IntVar(&p.Options.Rate, "probe-rate", 100, "Probes per second to each peer")
	fs.IntVar(&p.Options.Sample, "probe-sample", 0, "Peers each agent probes (0: all)")
	fs.DurationVar(&p.Settle, "probe-settle", 5*time.Second, "After the operation, keep probing until no path has lost a probe for this long (at most 2m; 0 stops at once): a data plane may lose packets after its pods are Ready")
	fs.DurationVar(&p.Budget.MaxOutage, "max-outage", 0, "Pause before the next node when the longest outage on any path exceeds this (with --probe)")
	fs.Float64Var(&p.Budget.MaxLossPct, "max-loss", 0, "Pause before the next node when the loss over all paths exceeds this percentage (with --probe)")
	fs.StringVar(&p.OnBudget, "on-budget", "pause", "When a budget is exceeded: pause (resumable) or abort (stop cleanly, uncordon)")
	fs.StringVar(&p.Report, "report", "", "Write the disruption report as self-contained HTML to this file (with --probe)")
}

// Validate checks the probe flags.
func (p *Probing) Validate() error {
	if p.OnBudget != "pause" && p.OnBudget != "abort" {
		return exitcode.BadInput(fmt.Errorf("--on-budget %q: want pause or abort", p.OnBudget))
	}
	if !p.Enabled && (p.Budget.MaxOutage > 0 || p.Budget.MaxLossPct > 0 || p.Report != "") {
		return exitcode.BadInput(errors.New("--max-outage, --max-loss and --report need --probe"))
	}
	if p.Enabled && (p.Options.Rate < 1 || p.Options.Rate > agent.MaxRate) {
		return exitcode.BadInput(fmt.Errorf("--probe-rate %d: want 1 to %d probes per second", p.Options.Rate, agent.MaxRate))
	}
	if p.Settle < 0 || p.Settle > measure.MaxSettle {
		return exitcode.BadInput(fmt.Errorf("--probe-settle %s: want 0 to %s", p.Settle, measure.MaxSettle))
	}
	if p.Enabled && p.Options.Sample < 0 {
		return exitcode.BadInput(fmt.Errorf("--probe-sample %d: want 0 (all peers) or more", p.Options.Sample))
	}
	if p.Budget.MaxOutage < 0 || p.Budget.MaxLossPct < 0 || p.Budget.MaxLossPct > 100 {
		return exitcode.BadInput(errors.New("--max-outage and --max-loss must be positive, --max-loss at most 100"))
	}
	return nil
}

// rollOutput is a roll's result with its disruption report.
type rollOutput struct {
	*roll.Result
	Probe *measure.Report `json:"probe,omitempty"`
}

// Session returns the guard session the probe flags ask for: probing
// the whole operation when --probe is given, else only a resumed
// operation that was probed before. A dry run measures nothing.
func (p *Probing) Session(cs kubernetes.Interface, dryRun bool) *measure.Session {
	if !p.Enabled || dryRun {
		return measure.NewSession(cs, nil)
	}
	return measure.NewSession(cs, &measure.GuardSpec{Rate: p.Options.Rate, Sample: p.Options.Sample, Budget: p.Budget, OnBudget: p.OnBudget, Settle: p.Settle})
}

// WriteReport writes rep as HTML when --report was given.
func (p *Probing) WriteReport(rep *measure.Report) error {
	if p.Report == "" || rep == nil {
		return nil
	}
	return measure.WriteHTML(p.Report, rep)
}

// RunRoll runs a roll with progress on streams.ErrOut (table format only),
// then prints the plan (for a dry run, or when nothing started) and the
// recap, or the whole result in JSON or YAML. With probing, the agents
// measure the whole roll, a budget gates each node, and the report ties
// every loss window to the node and step that overlapped it. The roll's
// error wins over a printing error, with its exit code.
func RunRoll(ctx context.Context, streams genericiooptions.IOStreams, cs kubernetes.Interface, opts roll.Options, format output.Format, probing Probing) error {
	if format == output.Table {
		progress := NewProgress(streams.ErrOut)
		defer progress.Close()
		opts.Progress = progress.Event
	}
	session := probing.Session(cs, opts.DryRun)
	if err := session.Start(ctx); err != nil {
		return Classify(err)
	}
	opts.Guard, opts.Guards = session.Guard(), session.Guards()
	res, runErr := roll.Run(ctx, cs, opts)
	out := rollOutput{Result: res}
	id, ops := "", []measure.Steps(nil)
	if res != nil && res.Operation != nil {
		id, ops = res.Operation.ID, []measure.Steps{&res.Operation.Record}
	}
	rep, err := session.Finish(ctx, id, ops...)
	if err != nil {
		return errors.Join(Classify(runErr), err)
	}
	out.Probe = rep
	if res != nil && res.Operation != nil {
		FlagJournal(res.Operation)
	}
	if err := probing.WriteReport(out.Probe); err != nil {
		return err
	}
	if res == nil {
		return Classify(runErr)
	}
	perr := output.Print(streams.Out, format, out, func(w io.Writer) error {
		if res.Plan != nil && (opts.DryRun || res.Operation == nil) {
			PrintPlan(w, res.Plan)
		}
		if res.Operation != nil {
			PrintRecap(w, res.Operation, res.Recap)
		}
		if out.Probe != nil {
			_, _ = fmt.Fprintln(w)
			measure.PrintTable(w, out.Probe)
		}
		return nil
	})
	if runErr != nil {
		return Classify(runErr)
	}
	return perr
}

// AnnotationArgs holds, on the root command, the arguments it runs with
// as JournalLine writes them, which the journal and the lock record.
const AnnotationArgs = "hitless.dev/args"

// CommandLine returns how cmd's tree was invoked, for the journal and the
// lock: "hitless" and the arguments, each shell-quoted so that resume can
// run it again (unless a secret value was redacted).
func CommandLine(cmd *cobra.Command) string {
	args := cmd.Root().Annotations[AnnotationArgs]
	if args == "" {
		return "hitless"
	}
	return "hitless " + args
}

// Redacted replaces, in a journaled command line, the value of a flag
// that may hold a secret.
const Redacted = "(redacted)"

// JournalLine is Quote(args) for the journal and the lock, where anyone
// who reads ConfigMaps sees it: the values of flags that may hold a
// secret (a bearer token, a password, Helm values given with --set) are
// replaced by Redacted, keeping the value paths --set names.
func JournalLine(args []string) string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		name, value, inline := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !secretFlag(name) {
			out = append(out, a)
			continue
		}
		if !inline {
			if i+1 == len(args) {
				out = append(out, a)
				break
			}
			i++
			value = args[i]
		}
		out = append(out, "--"+name+"="+redact(name, value))
	}
	return Quote(out)
}

// secretFlag says whether a flag's value may hold a secret.
func secretFlag(name string) bool {
	switch name {
	case "token", "password", "set", "set-string", "set-json", "set-literal":
		return true
	}
	return false
}

// redact hides a flag's value; Helm's path=value lists keep their paths.
func redact(flag, value string) string {
	if !strings.HasPrefix(flag, "set") {
		return Redacted
	}
	var parts []string
	start := 0
	for i := 0; i <= len(value); i++ {
		switch {
		case i < len(value) && value[i] == '\\':
			i++ // an escaped character, a comma included, is the value's
		case i == len(value) || value[i] == ',':
			if path, _, ok := strings.Cut(value[start:i], "="); ok && path != "" {
				parts = append(parts, path+"="+Redacted)
			}
			start = i + 1
		}
	}
	if len(parts) == 0 {
		return Redacted
	}
	return strings.Join(parts, ",")
}

// Quote joins args into one line a shell (and SplitCommand) reads back.
func Quote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = quote(a)
	}
	return strings.Join(out, " ")
}

func quote(a string) string {
	if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
		return a
	}
	return "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
}

// SplitCommand splits a line written by Quote into its arguments.
func SplitCommand(line string) ([]string, error) {
	var (
		out    []string
		cur    strings.Builder
		inWord bool
		quoted bool
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\'':
			quoted = false
		case quoted:
			cur.WriteByte(c)
		case c == '\'':
			quoted, inWord = true, true
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case c == ' ':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// Progress prints a roll's transitions: plain timestamped lines, and on a
// terminal also a live status line kept at the bottom (nodes in flight with
// their phase and time in it, nodes done, failed), redrawn every second.
type Progress struct {
	w        io.Writer
	live     bool
	mu       sync.Mutex
	inflight map[string]flight
	done     int
	failed   int
	batch    int
	stop     chan struct{}
}

type flight struct {
	phase string
	since time.Time
}

// NewProgress returns a printer on w; Close it when the roll ends.
func NewProgress(w io.Writer) *Progress {
	p := &Progress{w: w, live: output.IsTerminal(w), inflight: map[string]flight{}, stop: make(chan struct{})}
	if p.live {
		go p.tick()
	}
	return p
}

// Event records one transition.
func (p *Progress) Event(e roll.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e.Phase {
	case roll.PhaseDone:
		delete(p.inflight, e.Node)
		p.done++
	case roll.PhaseFailed, roll.PhaseSkipped, roll.PhaseAborted, roll.PhasePending:
		delete(p.inflight, e.Node)
		if e.Phase == roll.PhaseFailed {
			p.failed++
		}
	default:
		if e.Node != "" && e.Phase != "waiting" && e.Phase != "event" {
			if f, ok := p.inflight[e.Node]; !ok || f.phase != e.Phase {
				p.inflight[e.Node] = flight{phase: e.Phase, since: e.Time}
			}
		}
	}
	p.batch = max(p.batch, e.Batch)
	line := fmt.Sprintf("%s batch %d  %-28s %s", e.Time.Format("15:04:05.000"), e.Batch, e.Node, e.Phase)
	if e.Message != "" {
		line += "  " + FlagText(e.Message)
	}
	if p.live {
		_, _ = fmt.Fprintf(p.w, "\r\033[K%s\n%s", colour(e.Phase, line), p.status())
		return
	}
	_, _ = fmt.Fprintln(p.w, line)
}

// Close stops the live line.
func (p *Progress) Close() {
	close(p.stop)
	if p.live {
		p.mu.Lock()
		_, _ = fmt.Fprint(p.w, "\r\033[K")
		p.mu.Unlock()
	}
}

func (p *Progress) tick() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			_, _ = fmt.Fprintf(p.w, "\r\033[K%s", p.status())
			p.mu.Unlock()
		}
	}
}

func (p *Progress) status() string {
	names := make([]string, 0, len(p.inflight))
	for n := range p.inflight {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		f := p.inflight[n]
		parts = append(parts, fmt.Sprintf("%s %s %s", n, f.phase, time.Since(f.since).Round(time.Second)))
	}
	return fmt.Sprintf("\033[1mbatch %d · done %d · failed %d · in flight: %s\033[0m", p.batch, p.done, p.failed, strings.Join(parts, ", "))
}

func colour(phase, s string) string {
	switch phase {
	case roll.PhaseDone:
		return "\033[32m" + s + "\033[0m"
	case roll.PhaseFailed, roll.PhaseAborted:
		return "\033[31m" + s + "\033[0m"
	case roll.PhaseSkipped, "waiting":
		return "\033[33m" + s + "\033[0m"
	}
	return s
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

// PrintRecap writes the recap as text.
func PrintRecap(w io.Writer, op *roll.Journal, rows []roll.RecapRow) {
	_, _ = fmt.Fprintf(w, "\nROLL RECAP %s (%s) %s\n", op.ID, strings.ToLower(string(op.Status)), FlagText(op.Message))
	order := []string{roll.PhaseCordon, roll.PhasePreNode, roll.PhaseDrain, roll.PhaseAction, roll.PhaseWait, roll.PhasePostNode, roll.PhaseUncordon}
	for _, r := range rows {
		var phases []string
		for _, p := range order {
			if d, ok := r.Phases[p]; ok {
				phases = append(phases, p+"="+d)
			}
		}
		_, _ = fmt.Fprintf(w, "%-28s : ok=%-3d changed=%-2d unreachable=%-2d failed=%-2d skipped=%-2d evicted=%-3d %s\n",
			r.Node, r.OK, r.Changed, r.Unreachable, r.Failed, r.Skipped, r.Evicted, strings.Join(phases, " "))
		if r.StillCordon {
			_, _ = fmt.Fprintf(w, "%-28s   left cordoned: it was cordoned before the roll, not by hitless\n", "")
		}
		if len(r.Deleted) > 0 {
			_, _ = fmt.Fprintf(w, "%-28s   deleted unmanaged pods (--force): %s\n", "", strings.Join(r.Deleted, ", "))
		}
		if r.Error != "" {
			_, _ = fmt.Fprintf(w, "%-28s   error: %s\n", "", FlagText(r.Error))
		}
		for _, b := range r.Blockers {
			_, _ = fmt.Fprintf(w, "%-28s   blocked by: %s\n", "", b)
		}
		for _, n := range r.Notes {
			_, _ = fmt.Fprintf(w, "%-28s   note: %s\n", "", FlagText(n))
		}
	}
}

// FlagJournal renders the spec fields an operation's journal names (its
// message, its nodes' errors and notes) as the flags that set them, for
// printing.
func FlagJournal(op *roll.Journal) {
	op.Message = FlagText(op.Message)
	for i := range op.Record.Nodes {
		n := &op.Record.Nodes[i]
		n.Error = FlagText(n.Error)
		for j := range n.Notes {
			n.Notes[j] = FlagText(n.Notes[j])
		}
	}
}

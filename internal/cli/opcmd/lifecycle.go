package opcmd

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
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/component/chart"
	"github.com/hitless-dev/hitless/internal/component/manifest"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/measure"
)

// ComponentFlags are the flags the component commands share.
type ComponentFlags struct {
	Options lifecycle.Options
	// ValueFiles and Set are a chart's --values and --set.
	ValueFiles, Set []string
	// Source and From are the paths of -f and --from; BackupDir is
	// --backup-dir.
	Source, From, BackupDir string
	Prefer                  string
	Format                  output.Format
	Probing                 Probing
}

// AddComponentFlags registers --name and -o, and for the commands that
// deploy (deploy true) the data-plane, backup and probe flags.
func AddComponentFlags(fs *pflag.FlagSet, f *ComponentFlags, deploy bool) {
	fs.StringVar(&f.Options.Name, "name", "", "Name of the component (a DNS label)")
	output.AddFlag(fs, &f.Format)
	if !deploy {
		return
	}
	fs.StringArrayVar(&f.Options.DataPlane, "data-plane", nil, "DaemonSet NAMESPACE/NAME to update node by node (repeatable; DaemonSets annotated hitless.dev/data-plane=true or on the host network on every node are found on their own)")
	fs.StringArrayVar(&f.Options.NodeSelectors, "node-selector", nil, "Roll the data plane in groups: nodes matching each selector in turn, then the rest (repeatable)")
	fs.StringVar(&f.Options.Batch, "batch", "1", "Nodes whose data plane is replaced at once: a count or a percentage")
	fs.StringVar(&f.BackupDir, "backup-dir", "", "Also write the objects backed up before the change to a 0600 file in this directory")
	fs.DurationVar(&f.Options.Wait, "wait", 5*time.Minute, "How long each stage may wait for its objects to be ready")
	AddVersionFlags(fs, f)
	AddProbeFlags(fs, &f.Probing)
}

// AddChartFlags registers the flags of a Helm chart source.
func AddChartFlags(fs *pflag.FlagSet, f *ComponentFlags, upgrade bool) {
	fs.StringArrayVar(&f.ValueFiles, "values", nil, "A Helm chart's values file (repeatable; later ones win)")
	fs.StringArrayVar(&f.Set, "set", nil, "A Helm chart value, path=value as in helm --set (repeatable)")
	fs.BoolVar(&f.Options.SkipHooks, "skip-hooks", false, "Leave a chart's install and upgrade hooks out instead of refusing the chart (hitless does not run hooks)")
	if upgrade {
		fs.BoolVar(&f.Options.ResetValues, "reset-values", false, "Start from the chart's defaults instead of the deployed release's values")
		fs.Bool("reuse-values", true, "Lay --values and --set over the deployed release's values (the default)")
	}
}

// AddVersionFlags registers the version rule's flags.
func AddVersionFlags(fs *pflag.FlagSet, f *ComponentFlags) {
	fs.BoolVar(&f.Options.MixedVersions, "allow-mixed-versions", false, "Accept images at any versions (by default one repository is at one tag, and the release's own images on its version line are at the release)")
	fs.StringVar(&f.Options.Profile, "profile", "generic", "Check profile of the component's procedure; cn2 asks for every image at one release")
}

// AddPreferFlag registers --prefer.
func AddPreferFlag(fs *pflag.FlagSet, f *ComponentFlags) {
	fs.StringVar(&f.Prefer, "prefer", "", "Who wins a field both you and the vendor changed: vendor or user (default: stop and report)")
}

// RunComponent runs one component operation: progress on streams.ErrOut,
// data-plane rolls measured when --probe is given, then the result as a
// report (table) or JSON/YAML on streams.Out. The operation's error wins
// over a printing error, with its exit code.
func RunComponent(cmd *cobra.Command, streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter, f *ComponentFlags,
	run func(ctx context.Context, c lifecycle.Cluster, opts lifecycle.Options) (*lifecycle.Result, error)) error {
	ctx := cmd.Context()
	if f.Probing.OnBudget == "" {
		f.Probing.OnBudget = "pause" // the commands without the probe flags
	}
	if err := f.Probing.Validate(); err != nil {
		return err
	}
	cfg, cs, err := Clients(getter)
	if err != nil {
		return err
	}
	opts := f.Options
	if chart.IsChart(f.Source) {
		if opts.Chart, err = chart.Load(f.Source); err != nil {
			return ClassifyComponent(err)
		}
		if opts.Values, err = chart.Values(f.ValueFiles, f.Set); err != nil {
			return ClassifyComponent(err)
		}
		if opts.Namespace, _, err = getter.ToRawKubeConfigLoader().Namespace(); err != nil {
			return fmt.Errorf("reading the namespace: %w", err)
		}
	} else if len(f.ValueFiles) > 0 || len(f.Set) > 0 || opts.ResetValues {
		return exitcode.BadInput(fmt.Errorf("%s is not a Helm chart: --values, --set and --reset-values are for charts", f.Source))
	} else if opts.Source, err = loadSource(f.Source); err != nil {
		return ClassifyComponent(err)
	}
	if opts.From, err = loadSource(f.From); err != nil {
		return ClassifyComponent(err)
	}
	if f.BackupDir != "" {
		dir := f.BackupDir
		opts.OnBackup = func(_ context.Context, name string, revision int, objs []*unstructured.Unstructured) (string, error) {
			return writeBackupFile(dir, name, revision, objs)
		}
	}
	opts.Prefer = component.Prefer(f.Prefer)
	opts.Command = CommandLine(cmd)
	session := f.Probing.Session(cs, opts.DryRun)
	if err := session.Start(ctx); err != nil {
		return ClassifyComponent(err)
	}
	opts.Guard, opts.Guards = session.Guard(), session.Guards()
	if f.Format == output.Table {
		progress := NewProgress(streams.ErrOut)
		defer progress.Close()
		opts.RollProgress = progress.Event
		opts.Progress = func(s string) { _, _ = fmt.Fprintf(streams.ErrOut, "%s %s\n", time.Now().Format("15:04:05.000"), s) }
	}
	res, runErr := run(ctx, lifecycle.Cluster{Client: cs, Config: cfg}, opts)
	var reports []*measure.Report
	if res != nil {
		rep, err := session.Finish(ctx, res.Operation, res)
		if err == nil {
			err = f.Probing.WriteReport(rep)
		}
		if err != nil && runErr == nil {
			runErr = err
		}
		if rep != nil {
			reports = append(reports, rep)
		}
	} else if _, err := session.Finish(ctx, ""); err != nil && runErr == nil {
		runErr = err
	}
	if res == nil {
		return ClassifyComponent(runErr)
	}
	out := struct {
		*lifecycle.Result
		Probe []*measure.Report `json:"probe,omitempty"`
	}{res, reports}
	perr := output.Print(streams.Out, f.Format, out, func(w io.Writer) error {
		PrintComponent(w, res)
		for _, rep := range reports {
			_, _ = fmt.Fprintln(w)
			measure.PrintTable(w, rep)
		}
		return nil
	})
	if runErr != nil {
		return ClassifyComponent(runErr)
	}
	return perr
}

// ClassifyComponent maps the component operations' errors to exit codes:
// bad manifests, flags and names exit 2.
func ClassifyComponent(err error) error {
	var (
		input *lifecycle.InputError
		merr  *manifest.Error
		hooks *chart.HookError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &input), errors.As(err, &merr), errors.As(err, &hooks), errors.Is(err, component.ErrInvalid):
		return exitcode.BadInput(err)
	}
	return Classify(err)
}

// PrintComponent writes a component operation's plan and what it did.
func PrintComponent(w io.Writer, r *lifecycle.Result) {
	p := r.Plan
	head := fmt.Sprintf("%s %s", strings.ToUpper(r.Action), r.Component)
	if r.Revision > 0 {
		head += fmt.Sprintf(" -> revision %d", r.Revision)
	}
	if r.Previous > 0 {
		head += fmt.Sprintf(" (from %d)", r.Previous)
	}
	if r.DryRun {
		head += " [dry run: nothing changed]"
	}
	if r.Resumed {
		head += " [resumed " + r.Operation + "]"
	}
	_, _ = fmt.Fprintln(w, head)
	if p != nil {
		for _, s := range p.Stages {
			_, _ = fmt.Fprintf(w, "  %-11s %3d  %s\n", s.Name, len(s.Objects), abbreviate(s.Objects, 4))
		}
		for _, g := range p.Delete {
			_, _ = fmt.Fprintf(w, "  delete %-28s %3d  %s\n", g.Name, len(g.Objects), abbreviate(g.Objects, 4))
		}
		if len(p.Groups) > 0 {
			_, _ = fmt.Fprintf(w, "  node groups, in order: %s, then the other nodes\n", strings.Join(p.Groups, "; "))
		}
		if len(p.Outside) > 0 {
			_, _ = fmt.Fprintf(w, "OBJECTS OUTSIDE THE INVENTORY in its namespaces (%d):\n", len(p.Outside))
			for _, o := range p.Outside {
				_, _ = fmt.Fprintf(w, "  %s\n", o)
			}
		}
		for _, d := range p.Changes {
			if d.Action == "unchanged" {
				continue
			}
			_, _ = fmt.Fprintf(w, "%s %s\n", strings.ToUpper(d.Action), d.Object)
			if d.Diff != "" {
				_, _ = fmt.Fprint(w, indent(d.Diff))
			}
		}
	}
	if c := r.Chart; c != nil {
		_, _ = fmt.Fprintf(w, "HELM CHART %s %s, release namespace %s, %d value(s) given (kept in the revision, not shown)\n", c.Name, c.Version, c.Namespace, c.Values)
	}
	if r.Images != nil && len(r.Images.Images) > 0 {
		var at, other []string
		for _, v := range r.Images.Images {
			if v.AtRelease {
				at = append(at, v.Repository)
			} else {
				other = append(other, fmt.Sprintf("%s (%s)", v, strings.Join(v.Objects, ", ")))
			}
		}
		if len(at) > 0 {
			_, _ = fmt.Fprintf(w, "IMAGES at release %s (%d): %s\n", r.Images.Release, len(at), strings.Join(at, ", "))
		}
		section(w, "IMAGES at other versions", other, func(s string) string { return s })
	}
	section(w, "CUSTOMIZATIONS CARRIED", r.Carried, func(c component.Change) string { return c.String() })
	section(w, "CONFLICTS", r.Conflicts, func(c component.Conflict) string { return c.String() })
	section(w, "NOTES", r.Notes, func(s string) string { return s })
	section(w, "WARNINGS", r.Warnings, func(s string) string { return s })
	section(w, "DATA-PLANE ROLLS", r.Rolls, func(s lifecycle.RollSummary) string {
		return fmt.Sprintf("%s, %s: %d node(s) one batch at a time, %s %s", s.DaemonSet, s.Group, len(s.Nodes), s.Operation, strings.ToLower(s.Status))
	})
	section(w, "UNAVAILABLE APIS", r.Unavailable, func(s string) string { return s })
	if len(r.Deleted) > 0 {
		_, _ = fmt.Fprintf(w, "DELETED: %d object(s)\n", len(r.Deleted))
	}
	section(w, "REMAINING", r.Remaining, func(s string) string { return s })
	if r.Backup != "" {
		_, _ = fmt.Fprintf(w, "BACKUP: %s\n", r.Backup)
	}
	for _, s := range r.Steps {
		took := ""
		if s.Finished != nil {
			took = s.Finished.Sub(s.Started).Round(time.Millisecond).String()
		}
		status := "ok"
		if s.Error != "" {
			status = "failed: " + s.Error
		} else if s.Finished == nil {
			status = "interrupted"
		}
		_, _ = fmt.Fprintf(w, "  step %-36s %-10s %s\n", s.Name, took, status)
	}
}

func section[T any](w io.Writer, title string, items []T, line func(T) string) {
	if len(items) == 0 {
		return
	}
	_, _ = fmt.Fprintf(w, "%s (%d):\n", title, len(items))
	for _, it := range items {
		_, _ = fmt.Fprintf(w, "  %s\n", line(it))
	}
}

func abbreviate(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:n], ", ") + fmt.Sprintf(", ... (+%d)", len(s)-n)
}

func indent(s string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString("    " + l)
		}
	}
	return b.String()
}

// loadSource reads the manifests at path (a file, a directory or a
// kustomization); none for an empty path.
func loadSource(path string) (*component.Source, error) {
	if path == "" {
		return nil, nil
	}
	return component.Load(path)
}

// writeBackupFile writes objs as YAML readable by the owner only.
func writeBackupFile(dir, name string, n int, objs []*unstructured.Unstructured) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating backup directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-revision-%d-backup.yaml", name, n))
	b, err := marshalYAML(objs)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("writing backup %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil { // an older file keeps its mode on WriteFile
		return "", err
	}
	return path, nil
}

func marshalYAML(objs []*unstructured.Unstructured) ([]byte, error) {
	var b strings.Builder
	for i, o := range objs {
		if i > 0 {
			b.WriteString("---\n")
		}
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, err
		}
		b.Write(y)
	}
	return []byte(b.String()), nil
}

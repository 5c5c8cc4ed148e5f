package migrate

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/opcmd"
	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/controller"
	engine "github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
	"github.com/hitless-dev/hitless/internal/engine/operation"
)

// inCluster is `hitless migrate run --in-cluster`: the plan, its
// parameters and its releases become a Migration that the controller
// runs; the command follows its status, asks the terminal (or --yes) at
// each pause step and approves it in spec.approve, and ends on the
// migration's verdict. Run again, the same command follows the same
// Migration.
type inCluster struct {
	enabled          bool
	name             string
	rollbackOnBreach bool
	// every is the pause between reads of the status.
	every time.Duration
}

func (ic *inCluster) addFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.BoolVar(&ic.enabled, "in-cluster", false, "Have the in-cluster controller run the plan: create a Migration of the plan, --set and --release (their files as ConfigMap bundles in hitless-system) and follow its status; run again, follow the same one")
	fs.StringVar(&ic.name, "migration", "", "The Migration's name with --in-cluster (default: the plan's name and a digest of the plan, parameters and releases, so that the same command finds the same Migration)")
	fs.BoolVar(&ic.rollbackOnBreach, "rollback-on-breach", false, "With --in-cluster and --probe: roll the migration back when the budget is exceeded (default: pause)")
}

func (ic *inCluster) run(cmd *cobra.Command, streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter, f *runFlags, p *plan.Plan, set map[string]string, args []string) error {
	if f.backupDir != "" {
		return exitcode.BadInput(errors.New("--backup-dir: with --in-cluster the backups stay in the cluster (the migration's journal)"))
	}
	probe, err := opcmd.InClusterProbe(f.probing, ic.rollbackOnBreach, "Migration")
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if _, err := p.Params(ctx, set); err != nil {
		return classify(err)
	}
	spec := v1alpha1.MigrationSpec{Probe: probe, RollbackOnBreach: ic.rollbackOnBreach, AgentTimeout: &metav1.Duration{Duration: f.agents}}
	if len(set) > 0 {
		spec.Parameters = set
	}
	if f.src.file != "" {
		js, err := yaml.YAMLToJSON(f.src.data)
		if err != nil {
			return exitcode.BadInput(&plan.Error{File: f.src.file, Msg: err.Error()})
		}
		spec.Inline = &runtime.RawExtension{Raw: js}
	} else {
		spec.Plan = args[0]
	}
	bundles, err := releaseBundles(f.releases, &spec)
	if err != nil {
		return err
	}
	name := ic.name
	if name == "" {
		name = p.Metadata.Name + "-" + operation.Hash(struct {
			Plan, Inline any
			Params       map[string]string
			Releases     map[string]v1alpha1.ComponentSource
		}{spec.Plan, spec.Inline, spec.Parameters, spec.Releases})[:10]
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return exitcode.BadInput(fmt.Errorf("--migration %q: not a resource name: %s", name, strings.Join(errs, "; ")))
	}
	if f.yes {
		spec.Approve = pauseSteps(p)
	}
	if f.dryRun {
		m := &v1alpha1.Migration{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion().String(), Kind: "Migration"}, ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
		for _, b := range bundles {
			if err := output.Print(streams.Out, output.YAML, b, nil); err != nil {
				return err
			}
			_, _ = fmt.Fprintln(streams.Out, "---")
		}
		return output.Print(streams.Out, output.YAML, m, nil)
	}
	kube, err := opcmd.Client(getter)
	if err != nil {
		return err
	}
	c, err := opcmd.APIClient(getter)
	if err != nil {
		return err
	}
	live, created, err := controller.PutMigration(ctx, c, kube, bundles, name, spec)
	if apierrors.IsInvalid(err) {
		return exitcode.BadInput(fmt.Errorf("%w (a Migration's plan, parameters and releases cannot change: give another --migration for another migration)", err))
	}
	if err != nil {
		return err
	}
	verb := "exists; following it"
	if created {
		verb = "created"
	}
	_, _ = fmt.Fprintf(streams.ErrOut, "Migration %s %s (the controller runs it; `kubectl get migration %s -o yaml`)\n", live.Name, verb, live.Name)
	if live, err = ic.follow(cmd, streams, c, live, f.yes); err != nil {
		return err
	}
	if err := output.Print(streams.Out, f.format, live, func(w io.Writer) error {
		return printMigration(w, live)
	}); err != nil {
		return err
	}
	if live.Status.Phase == v1alpha1.PhaseSucceeded {
		return nil
	}
	return fmt.Errorf("migration %s %s: %s", live.Name, live.Status.Phase, controller.MigrationLine(live))
}

// follow follows the Migration to its verdict, approving each pause step
// it waits on when the terminal (or --yes) says so.
func (ic *inCluster) follow(cmd *cobra.Command, streams genericiooptions.IOStreams, c client.Client, live *v1alpha1.Migration, yes bool) (*v1alpha1.Migration, error) {
	ctx := cmd.Context()
	every := ic.every
	if every == 0 {
		every = time.Second
	}
	approver := opcmd.NewTerminal(streams.In, streams.ErrOut, yes)
	for {
		var err error
		live, err = controller.FollowMigration(ctx, c, live.Name, live.Generation, every, func(m *v1alpha1.Migration) {
			_, _ = fmt.Fprintf(streams.ErrOut, "%s  %s\n", time.Now().Format("15:04:05"), controller.MigrationLine(m))
		})
		if err != nil {
			return nil, err
		}
		step, msg, waiting := controller.AwaitingApproval(live)
		if !waiting {
			return live, nil
		}
		approve := append(append([]string(nil), live.Spec.Approve...), step)
		if err := approver.Approve(ctx, operation.Question{Kind: engine.AskStep, Step: step, Text: msg}); err != nil {
			hint := fmt.Sprintf(`kubectl patch migration %s --type merge -p '{"spec":{"approve":["%s"]}}'`, live.Name, strings.Join(approve, `","`))
			return nil, fmt.Errorf("migration %s waits before step %s (approve it: `%s`): %w", live.Name, step, hint, err)
		}
		patch := client.MergeFrom(live.DeepCopy())
		live.Spec.Approve = approve
		if err := c.Patch(ctx, live, patch); err != nil {
			return nil, fmt.Errorf("approving step %s of Migration %s: %w", step, live.Name, err)
		}
	}
}

// releaseBundles makes the ConfigMap bundles of --release NAME=PATH and
// names them in spec.releases; bad input exits 2 naming the flag.
func releaseBundles(vals []string, spec *v1alpha1.MigrationSpec) ([]*corev1.ConfigMap, error) {
	paths := map[string]string{}
	for _, v := range vals {
		name, path, ok := strings.Cut(v, "=")
		if !ok || name == "" || path == "" {
			return nil, exitcode.BadInput(fmt.Errorf("--release %q: want NAME=PATH", v))
		}
		if _, dup := paths[name]; dup {
			return nil, exitcode.BadInput(fmt.Errorf("--release: %s is given twice", name))
		}
		paths[name] = path
	}
	names := make([]string, 0, len(paths))
	for n := range paths {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []*corev1.ConfigMap
	for _, n := range names {
		files, err := opcmd.BundleFiles("--release "+n, paths[n])
		if err != nil {
			return nil, err
		}
		cm, err := controller.BundleFor(n, files)
		if err != nil {
			return nil, exitcode.BadInput(fmt.Errorf("--release %s: %w", n, err))
		}
		if spec.Releases == nil {
			spec.Releases = map[string]v1alpha1.ComponentSource{}
		}
		spec.Releases[n] = v1alpha1.ComponentSource{ConfigMap: &v1alpha1.BundleRef{Name: cm.Name}}
		out = append(out, cm)
	}
	return out, nil
}

// pauseSteps are the names of the plan's pause steps: what --yes
// approves.
func pauseSteps(p *plan.Plan) []string {
	var out []string
	for _, s := range p.Steps {
		if s.Pause != nil {
			out = append(out, s.Name)
		}
	}
	return out
}

func printMigration(w io.Writer, m *v1alpha1.Migration) error {
	if _, err := fmt.Fprintf(w, "Migration %s, plan %s, operation %s (`hitless status %s`)\n%s\n", m.Name, m.Status.Plan, m.Status.Operation, m.Status.Operation, controller.MigrationLine(m)); err != nil {
		return err
	}
	for _, s := range m.Status.Steps {
		line := fmt.Sprintf("  %-20s %-8s", s.Name, s.Phase)
		if s.Message != "" {
			line += " " + s.Message
		}
		if _, err := fmt.Fprintln(w, strings.TrimRight(line, " ")); err != nil {
			return err
		}
	}
	if d := m.Status.Disruption; d != nil {
		if _, err := fmt.Fprintln(w, controller.DisruptionLine(d)); err != nil {
			return err
		}
	}
	return nil
}

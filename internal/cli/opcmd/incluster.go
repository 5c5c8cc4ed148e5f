package opcmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/controller"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/measure"
)

// InClusterFlags are the component commands' --in-cluster and what goes
// with it.
type InClusterFlags struct {
	Enabled          bool
	RollbackOnBreach bool
	// Every is the pause between reads of the Component's status.
	Every time.Duration
}

// AddInClusterFlags registers --in-cluster and --rollback-on-breach.
func AddInClusterFlags(cmd *cobra.Command, f *InClusterFlags) {
	fs := cmd.Flags()
	fs.BoolVar(&f.Enabled, "in-cluster", false, "Have the in-cluster controller do it: put -f's files in a ConfigMap bundle in hitless-system, create or update the Component --name with these flags, and follow its status")
	fs.BoolVar(&f.RollbackOnBreach, "rollback-on-breach", false, "With --in-cluster and --probe: roll the upgrade back when the budget is exceeded (default: pause before the next node)")
}

// RunComponentInCluster is install or upgrade --in-cluster: the release's
// files become a ConfigMap bundle and the Component names it; the
// controller installs or upgrades, and the command follows the
// Component's status to its verdict.
func RunComponentInCluster(cmd *cobra.Command, streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter, f *ComponentFlags, ic InClusterFlags) error {
	spec, err := componentSpec(f, ic)
	if err != nil {
		return err
	}
	files, err := BundleFiles("-f", f.Source)
	if err != nil {
		return err
	}
	bundle, err := controller.BundleFor(f.Options.Name, files)
	if err != nil {
		return ClassifyComponent(err)
	}
	comp := &v1alpha1.Component{Spec: spec}
	comp.APIVersion, comp.Kind, comp.Name = v1alpha1.GroupVersion().String(), "Component", f.Options.Name
	comp.Spec.Source.ConfigMap = &v1alpha1.BundleRef{Name: bundle.Name}
	if f.Options.DryRun {
		if err := output.Print(streams.Out, output.YAML, bundle, nil); err != nil {
			return err
		}
		_, _ = fmt.Fprintln(streams.Out, "---")
		return output.Print(streams.Out, output.YAML, comp, nil)
	}
	kube, err := Client(getter)
	if err != nil {
		return err
	}
	c, err := APIClient(getter)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	live, created, err := controller.PutComponent(ctx, c, kube, bundle, f.Options.Name, spec)
	if apierrors.IsInvalid(err) {
		return exitcode.BadInput(err)
	}
	if err != nil {
		return err
	}
	verb := "updated"
	if created {
		verb = "created"
	}
	_, _ = fmt.Fprintf(streams.ErrOut, "Component %s %s, source ConfigMap %s/%s (the controller acts on it; `kubectl get component %s -o yaml`)\n", live.Name, verb, bundle.Namespace, bundle.Name, live.Name)
	every := ic.Every
	if every == 0 {
		every = time.Second
	}
	live, err = controller.FollowComponent(ctx, c, live.Name, live.Generation, every, func(comp *v1alpha1.Component) {
		_, _ = fmt.Fprintf(streams.ErrOut, "%s  %s\n", time.Now().Format("15:04:05"), controller.ComponentLine(comp))
	})
	if err != nil {
		return err
	}
	if err := output.Print(streams.Out, f.Format, live, func(w io.Writer) error {
		return printComponent(w, live)
	}); err != nil {
		return err
	}
	if live.Status.Phase == v1alpha1.PhaseReady {
		return nil
	}
	return fmt.Errorf("component %s %s: %s", live.Name, live.Status.Phase, controller.ComponentLine(live))
}

// APIClient is a controller-runtime client of the kubeconfig that knows
// hitless.dev's resources, for the --in-cluster commands.
func APIClient(getter genericclioptions.RESTClientGetter) (client.Client, error) {
	cfg, err := Config(getter)
	if err != nil {
		return nil, err
	}
	scheme, err := controller.Scheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	return c, nil
}

// componentSpec is the Component's spec of the flags; what a resource
// cannot carry is refused, naming the flag.
func componentSpec(f *ComponentFlags, ic InClusterFlags) (v1alpha1.ComponentSpec, error) {
	o := f.Options
	switch {
	case f.From != "":
		return v1alpha1.ComponentSpec{}, exitcode.BadInput(errors.New("--from: with --in-cluster the customizations are read from the cluster"))
	case f.BackupDir != "":
		return v1alpha1.ComponentSpec{}, exitcode.BadInput(errors.New("--backup-dir: with --in-cluster the backups stay in the cluster (`hitless history NAME`)"))
	case len(f.ValueFiles) > 0 || len(f.Set) > 0 || o.ResetValues:
		return v1alpha1.ComponentSpec{}, exitcode.BadInput(errors.New("--values, --set and --reset-values: not with --in-cluster (a Component's values are in its spec, readable by whoever reads Components: write them there, without secrets)"))
	case f.Source == "":
		return v1alpha1.ComponentSpec{}, exitcode.BadInput(errors.New("-f is required"))
	}
	if errs := validation.IsDNS1123Label(o.Name); len(errs) > 0 || len(o.Name) > 40 {
		return v1alpha1.ComponentSpec{}, exitcode.BadInput(fmt.Errorf("--name %q: want a DNS label of at most 40 characters (the Component's name)", o.Name))
	}
	probe, err := InClusterProbe(f.Probing, ic.RollbackOnBreach, "Component")
	if err != nil {
		return v1alpha1.ComponentSpec{}, err
	}
	n, pct, err := roll.ParseBatch(o.Batch)
	if err != nil {
		return v1alpha1.ComponentSpec{}, ClassifyComponent(&operation.FieldError{Field: "batch", Msg: err.Error()})
	}
	s := v1alpha1.ComponentSpec{
		DataPlane:          o.DataPlane,
		NodeSelectors:      o.NodeSelectors,
		Batch:              intstr.FromInt32(int32(n)),
		Prefer:             f.Prefer,
		AllowMixedVersions: o.MixedVersions,
		Profile:            o.Profile,
		RollbackOnBreach:   ic.RollbackOnBreach,
		Probe:              probe,
	}
	if pct {
		s.Batch = intstr.FromString(strconv.Itoa(n) + "%")
	}
	if o.Wait > 0 {
		s.Wait = &metav1.Duration{Duration: o.Wait}
	}
	return s, nil
}

// InClusterProbe is the resource's probe budget of the probe flags (nil
// without --probe); what a resource cannot carry is refused, naming the
// flag, and kind names the resource in the messages.
func InClusterProbe(p Probing, rollbackOnBreach bool, kind string) (*v1alpha1.ProbeBudget, error) {
	switch {
	case p.Report != "":
		return nil, exitcode.BadInput(fmt.Errorf("--report: the controller keeps the disruption in the %s's status (status.disruption), not in a file where the CLI runs", kind))
	case p.Enabled && p.OnBudget != "pause":
		return nil, exitcode.BadInput(fmt.Errorf("--on-budget: a %s pauses on a breach, or rolls back with --rollback-on-breach", kind))
	case rollbackOnBreach && !p.Enabled:
		return nil, exitcode.BadInput(errors.New("--rollback-on-breach needs --probe and a budget"))
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if !p.Enabled {
		return nil, nil
	}
	return controller.ProbeBudgetFor(measure.GuardSpec{Rate: p.Options.Rate, Sample: p.Options.Sample, Budget: p.Budget, Settle: p.Settle}), nil
}

// BundleFiles reads a bundle's files from path, which flag gave: a file,
// or a flat directory's files (a ConfigMap's keys cannot hold
// directories).
func BundleFiles(flag, path string) (map[string][]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, exitcode.BadInput(fmt.Errorf("%s %s: %w", flag, path, err))
	}
	if !st.IsDir() {
		b, err := os.ReadFile(path) //nolint:gosec // the user names the file
		if err != nil {
			return nil, exitcode.BadInput(fmt.Errorf("%s %s: %w", flag, path, err))
		}
		return map[string][]byte{filepath.Base(path): b}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, exitcode.BadInput(fmt.Errorf("%s %s: %w", flag, path, err))
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() {
			return nil, exitcode.BadInput(fmt.Errorf("%s %s: holds the directory %s; with --in-cluster it is a file, a flat directory or a packaged chart (.tgz), as a ConfigMap's keys cannot hold directories", flag, path, e.Name()))
		}
		b, err := os.ReadFile(filepath.Join(path, e.Name())) //nolint:gosec // the user names the directory
		if err != nil {
			return nil, exitcode.BadInput(fmt.Errorf("%s %s: %w", flag, path, err))
		}
		files[e.Name()] = b
	}
	return files, nil
}

func printComponent(w io.Writer, comp *v1alpha1.Component) error {
	if _, err := fmt.Fprintf(w, "Component %s, operation %s (`hitless status %s`)\n%s\n", comp.Name, comp.Status.Operation, comp.Status.Operation, controller.ComponentLine(comp)); err != nil {
		return err
	}
	for _, c := range comp.Status.Carried {
		if _, err := fmt.Fprintf(w, "  carried: %s\n", c); err != nil {
			return err
		}
	}
	if d := comp.Status.Disruption; d != nil {
		if _, err := fmt.Fprintln(w, controller.DisruptionLine(d)); err != nil {
			return err
		}
	}
	return nil
}

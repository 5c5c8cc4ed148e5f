package chart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/cli/values"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/client-go/discovery"

	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/component/manifest"
)

// Kind is the component.Source kind of a rendered chart.
const Kind = "helm chart"

// Chart is a loaded Helm chart: a directory with Chart.yaml or a packaged
// .tgz.
type Chart struct {
	Path  string
	chart *chartv2.Chart
}

// IsChart tells whether path names a chart rather than manifests.
func IsChart(path string) bool {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		_, err := os.Stat(filepath.Join(path, "Chart.yaml"))
		return err == nil
	}
	return strings.HasSuffix(path, ".tgz") || strings.HasSuffix(path, ".tar.gz")
}

// Load reads a chart; its errors name the file.
func Load(path string) (*Chart, error) {
	c, err := loader.Load(path)
	if err != nil {
		return nil, &manifest.Error{File: path, Err: fmt.Errorf("loading the Helm chart: %w", err)}
	}
	if err := c.Validate(); err != nil {
		return nil, &manifest.Error{File: path, Err: fmt.Errorf("invalid Helm chart: %w", err)}
	}
	return &Chart{Path: path, chart: c}, nil
}

// LoadArchive reads a packaged chart (.tgz) held in memory, named name in
// errors and in the release.
func LoadArchive(name string, r io.Reader) (*Chart, error) {
	c, err := loader.LoadArchive(r)
	if err != nil {
		return nil, &manifest.Error{File: name, Err: fmt.Errorf("loading the Helm chart: %w", err)}
	}
	if err := c.Validate(); err != nil {
		return nil, &manifest.Error{File: name, Err: fmt.Errorf("invalid Helm chart: %w", err)}
	}
	return &Chart{Path: name, chart: c}, nil
}

// LoadFiles reads an unpacked chart held in memory (paths relative to the
// chart's directory: Chart.yaml, templates/...), named name in errors and
// in the release.
func LoadFiles(name string, files map[string][]byte) (*Chart, error) {
	var bufs []*archive.BufferedFile
	for p, b := range files {
		bufs = append(bufs, &archive.BufferedFile{Name: p, Data: b})
	}
	slices.SortFunc(bufs, func(a, b *archive.BufferedFile) int { return strings.Compare(a.Name, b.Name) })
	c, err := loader.LoadFiles(bufs)
	if err != nil {
		return nil, &manifest.Error{File: name, Err: fmt.Errorf("loading the Helm chart: %w", err)}
	}
	if err := c.Validate(); err != nil {
		return nil, &manifest.Error{File: name, Err: fmt.Errorf("invalid Helm chart: %w", err)}
	}
	return &Chart{Path: name, chart: c}, nil
}

// Name is the chart's name.
func (c *Chart) Name() string { return c.chart.Metadata.Name }

// Version is the chart's version.
func (c *Chart) Version() string { return c.chart.Metadata.Version }

// Values reads value files and --set expressions, Helm's way (later
// ones win); errors name the file or the expression.
func Values(files, sets []string) (map[string]any, error) {
	opts := values.Options{ValueFiles: files, Values: sets}
	v, err := opts.MergeValues(nil)
	if err != nil {
		return nil, &manifest.Error{File: strings.Join(append(slices.Clone(files), sets...), ", "), Err: fmt.Errorf("reading Helm values: %w", err)}
	}
	return v, nil
}

// Capabilities are what a chart's templates see of the cluster.
type Capabilities struct {
	KubeVersion string   `json:"kubeVersion"`
	APIVersions []string `json:"apiVersions"`
}

// Discover reads the cluster's capabilities.
func Discover(dc discovery.DiscoveryInterface) (Capabilities, error) {
	v, err := dc.ServerVersion()
	if err != nil {
		return Capabilities{}, fmt.Errorf("reading the server version: %w", err)
	}
	vs, err := action.GetVersionSet(dc)
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return Capabilities{}, fmt.Errorf("reading the API versions: %w", err)
	}
	return Capabilities{KubeVersion: v.GitVersion, APIVersions: vs}, nil
}

// Hook is a chart hook: a resource Helm would run around an install or
// upgrade (a Job, usually).
type Hook struct {
	Kind     string   `json:"kind"`
	Name     string   `json:"name"`
	Template string   `json:"template"`
	Events   []string `json:"events"`
}

func (h Hook) String() string {
	return fmt.Sprintf("%s/%s (%s, on %s)", h.Kind, h.Name, h.Template, strings.Join(h.Events, ", "))
}

// HookError refuses a chart with install or upgrade hooks: hitless
// applies a chart's resources as one set, it does not run hooks.
type HookError struct {
	Chart string
	Hooks []Hook
}

func (e *HookError) Error() string {
	var hs []string
	for _, h := range e.Hooks {
		hs = append(hs, h.String())
	}
	return fmt.Sprintf("%s: the chart has %d hook(s) hitless does not run: %s (leave them out with `skipHooks`, after checking that the release does not need them)",
		e.Chart, len(e.Hooks), strings.Join(hs, "; "))
}

// Options are a rendering's inputs.
type Options struct {
	Release   string
	Namespace string
	Values    map[string]any
	Caps      Capabilities
	// SkipHooks leaves install and upgrade hooks out instead of refusing
	// the chart; test hooks are always left out.
	SkipHooks bool
}

// Rendered is a chart rendered for one release.
type Rendered struct {
	Source *component.Source
	// Skipped are the hooks left out.
	Skipped []Hook
}

// Render renders the chart as `helm template --include-crds` would with
// the cluster's capabilities: values checked against values.schema.json,
// dependencies resolved, CRDs from crds/ included, objects without a
// namespace put in the release's. Bad values, a template that fails or a
// rendered document that does not parse are a *manifest.Error naming the
// chart, the value path or the template.
func Render(ctx context.Context, c *Chart, opts Options, scope component.Scope) (*Rendered, error) {
	kv, err := common.ParseKubeVersion(opts.Caps.KubeVersion)
	if err != nil {
		return nil, fmt.Errorf("the cluster's version %q: %w", opts.Caps.KubeVersion, err)
	}
	cfg := action.NewConfiguration()
	cfg.SetLogger(slog.New(slog.NewTextHandler(io.Discard, nil)).Handler())
	in := action.NewInstall(cfg)
	in.DryRunStrategy = action.DryRunClient
	in.ReleaseName, in.Namespace = opts.Release, opts.Namespace
	in.IncludeCRDs = true
	in.Replace = true
	in.KubeVersion, in.APIVersions = kv, opts.Caps.APIVersions
	vals := opts.Values
	if vals == nil {
		vals = map[string]any{}
	}
	rel, err := in.RunWithContext(ctx, c.chart, vals)
	if err != nil {
		return nil, &manifest.Error{File: c.Path, Err: fmt.Errorf("rendering: %w", err)}
	}
	r, ok := rel.(*releasev1.Release)
	if !ok {
		return nil, fmt.Errorf("rendering %s: unexpected release type %T", c.Path, rel)
	}
	out := &Rendered{Source: &component.Source{Path: c.Path, Kind: Kind}}
	var refused []Hook
	for _, h := range r.Hooks {
		hook := Hook{Kind: h.Kind, Name: h.Name, Template: h.Path}
		test := false
		for _, e := range h.Events {
			hook.Events = append(hook.Events, string(e))
			test = test || e == releasev1.HookTest
		}
		if test || opts.SkipHooks {
			out.Skipped = append(out.Skipped, hook)
			continue
		}
		refused = append(refused, hook)
	}
	if len(refused) > 0 {
		return nil, &HookError{Chart: c.Path, Hooks: refused}
	}
	for _, doc := range split(r.Manifest) {
		objs, err := manifest.Parse(filepath.Join(c.Path, doc.template), strings.NewReader(doc.body))
		if err != nil {
			return nil, err
		}
		out.Source.Objects = append(out.Source.Objects, objs...)
	}
	if len(out.Source.Objects) == 0 {
		return nil, &manifest.Error{File: c.Path, Err: errors.New("the chart renders no object with these values")}
	}
	for _, o := range out.Source.Objects {
		if o.GetNamespace() != "" {
			continue
		}
		if namespaced, ok := scope.Namespaced(o.GroupVersionKind().GroupKind()); ok && namespaced {
			o.SetNamespace(opts.Namespace)
		}
	}
	return out, nil
}

type document struct{ template, body string }

// split cuts a rendered manifest at Helm's "# Source: template" lines.
func split(m string) []document {
	var out []document
	for _, part := range strings.Split(m, "\n---\n") {
		part = strings.TrimPrefix(strings.TrimSpace(part), "---")
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		tmpl := "(rendered)"
		if first, rest, ok := strings.Cut(part, "\n"); ok && strings.HasPrefix(first, "# Source: ") {
			if name := strings.TrimSpace(strings.TrimPrefix(first, "# Source: ")); name != "" {
				tmpl = name
			}
			part = rest
		}
		if n := len(out); n > 0 && out[n-1].template == tmpl {
			out[n-1].body += "\n---\n" + part
			continue
		}
		out = append(out, document{template: tmpl, body: part})
	}
	return out
}

// Merge lays over's values on base's, as Helm's --reuse-values does:
// maps merge key by key, anything else in over wins; neither is changed.
func Merge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if om, ok := v.(map[string]any); ok {
			if bm, ok := out[k].(map[string]any); ok {
				out[k] = Merge(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

package lifecycle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/component/apply"
	"github.com/hitless-dev/hitless/internal/component/chart"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// The actions, also the journal kinds of their operations.
const (
	ActionInstall   = "install"
	ActionUpgrade   = "upgrade"
	ActionRollback  = "rollback"
	ActionUninstall = "uninstall"
)

// AnnotationDataPlane declares a DaemonSet as a data plane: hitless
// replaces its pods node by node after draining each node.
const AnnotationDataPlane = "hitless.dev/data-plane"

// Cluster is what the operations talk to.
type Cluster = operation.Cluster

// Options configure an operation. Not every field applies to every
// action; the commands expose the ones that do.
type Options struct {
	Name string
	// Source is the component's manifests, loaded (component.Load); the
	// operation validates them against the cluster.
	Source *component.Source
	// Chart, instead of Source, is a Helm chart: rendered with the
	// cluster's capabilities and the values, it is the release's
	// manifests.
	Chart *chart.Chart
	// Values are the chart's values given for this operation. An upgrade
	// lays them over the deployed revision's, unless ResetValues.
	Values      map[string]any
	ResetValues bool
	// SkipHooks leaves the chart's install and upgrade hooks out instead
	// of refusing it.
	SkipHooks bool
	// Namespace is the chart's release namespace (default "default").
	Namespace string
	// From is the user's customized copy of the current release, loaded;
	// without it the customizations are read from the cluster.
	From *component.Source
	// Revision is the revision a rollback restores (0: the previous one).
	Revision int
	Prefer   component.Prefer
	// MixedVersions allows images at any versions.
	MixedVersions bool
	// Profile is the check profile of the component's procedure; one that
	// asks for one release (cn2) refuses images at any other tag.
	Profile string
	// DataPlane names DaemonSets (namespace/name) to roll node by node, on
	// top of those annotated hitless.dev/data-plane=true or detected.
	DataPlane []string
	// NodeSelectors split the data-plane roll into groups, rolled in order;
	// nodes no selector matches come last.
	NodeSelectors []string
	// Batch is the roll's batch: a count or a percentage.
	Batch string
	// OnBackup, when set, is given the objects backed up before they
	// change, in the backup step (before anything changes), and returns
	// where it kept them (the CLI's --backup-dir file).
	OnBackup func(ctx context.Context, component string, revision int, objs []*unstructured.Unstructured) (string, error)
	// Wait bounds each wait for readiness (default 5m).
	Wait time.Duration
	// FinalizerTimeout bounds the wait for deleted objects to go (default 2m).
	FinalizerTimeout time.Duration
	// ForceNamespaces deletes namespaces that hold objects outside the
	// inventory.
	ForceNamespaces bool
	DryRun          bool
	Command         string
	// Guard, when set, watches the whole operation (a probe session and
	// its budget): it is journaled and gates every node of the data-plane
	// rolls. Guards starts the journaled one again for a resume without.
	Guard  operation.Guard
	Guards operation.Guards
	// Lock, when set, is the cluster lock the caller holds for the
	// operation this one is part of (a migration); it is used instead of
	// taking and releasing one.
	Lock *lock.Lock
	// Started, when set, is told the operation's ID once it is journaled
	// (a front end shows it before the operation ends).
	Started func(id string)
	// RollProgress receives the rolls' node events. May be nil.
	RollProgress func(roll.Event)
	// Progress receives one line per step. May be nil.
	Progress func(string)
}

func (o *Options) defaults() {
	if o.Wait == 0 {
		o.Wait = 5 * time.Minute
	}
	if o.FinalizerTimeout == 0 {
		o.FinalizerTimeout = 2 * time.Minute
	}
	if o.Batch == "" {
		o.Batch = "1"
	}
}

func (o *Options) progressf(format string, args ...any) {
	if o.Progress != nil {
		o.Progress(fmt.Sprintf(format, args...))
	}
}

// InputError is bad input: Field names the option; the commands exit 2 on it.
type InputError = operation.FieldError

// StateError refuses an operation the component's state does not allow
// (install of an installed component, upgrade of a missing one); nothing
// was changed.
type StateError struct{ Msg string }

func (e *StateError) Error() string { return e.Msg }

// validateDurations refuses negative waits: zero means the default.
func validateDurations(o Options) error {
	switch {
	case o.Wait < 0:
		return &InputError{Field: "wait", Msg: fmt.Sprintf("%s: want a positive duration", o.Wait)}
	case o.FinalizerTimeout < 0:
		return &InputError{Field: "finalizerTimeout", Msg: fmt.Sprintf("%s: want a positive duration", o.FinalizerTimeout)}
	}
	return nil
}

func validateName(name string) error {
	if name == "" {
		return &InputError{Field: "name", Msg: "required"}
	}
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 || len(name) > 40 {
		return &InputError{Field: "name", Msg: fmt.Sprintf("%q: want a DNS label of at most 40 characters", name)}
	}
	return nil
}

// Result is what an operation did, or with DryRun would do.
type Result struct {
	Component string `json:"component"`
	Action    string `json:"action"`
	Revision  int    `json:"revision"`
	// Previous is the revision that was deployed before.
	Previous  int                  `json:"previous,omitempty"`
	Operation string               `json:"operation,omitempty"`
	DryRun    bool                 `json:"dryRun"`
	Resumed   bool                 `json:"resumed"`
	Plan      *Plan                `json:"plan"`
	Carried   []component.Change   `json:"carried,omitempty"`
	Conflicts []component.Conflict `json:"conflicts,omitempty"`
	Notes     []string             `json:"notes,omitempty"`
	Warnings  []string             `json:"warnings,omitempty"`
	Applied   []apply.Entry        `json:"applied,omitempty"`
	Deleted   []string             `json:"deleted,omitempty"`
	// Remaining lists objects still there after an uninstall or prune,
	// with why (finalizers).
	Remaining []string `json:"remaining,omitempty"`
	// Unavailable lists APIServices nothing serves yet.
	Unavailable []string `json:"unavailable,omitempty"`
	// Chart is the Helm chart the release was rendered from.
	Chart *ChartSummary `json:"chart,omitempty"`
	// Images are the source's images by version (install, upgrade, diff).
	Images *component.Versions `json:"images,omitempty"`
	Rolls  []RollSummary       `json:"rolls,omitempty"`
	// RollJournals are the journals of the data-plane rolls this run ran,
	// for the guard's report.
	RollJournals []*roll.Journal `json:"-"`
	Backup       string          `json:"backup,omitempty"`
	Steps        []journal.Step  `json:"steps,omitempty"`
}

// ChartSummary names a release's chart; its values stay in the revision
// (they may hold secrets), only their count shows.
type ChartSummary struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Namespace string `json:"namespace"`
	Values    int    `json:"values"`
}

// RollSummary is one data-plane roll.
type RollSummary struct {
	DaemonSet string   `json:"daemonSet"`
	Group     string   `json:"group"`
	Operation string   `json:"operation"`
	Nodes     []string `json:"nodes"`
	Status    string   `json:"status"`
}

// spec is what identifies an operation for resume: the same command
// against the same sources.
type spec struct {
	Action        string           `json:"action"`
	Name          string           `json:"name"`
	Source        string           `json:"source,omitempty"`
	SourceDigest  string           `json:"sourceDigest,omitempty"`
	FromDigest    string           `json:"fromDigest,omitempty"`
	Revision      int              `json:"revision,omitempty"`
	Prefer        component.Prefer `json:"prefer,omitempty"`
	DataPlane     []string         `json:"dataPlane,omitempty"`
	NodeSelectors []string         `json:"nodeSelectors,omitempty"`
	Batch         string           `json:"batch,omitempty"`
	Force         bool             `json:"forceNamespaces,omitempty"`
}

func (s spec) hash() string { return operation.Hash(s) }

func digest(objs []*unstructured.Unstructured) string {
	h := sha256.New()
	for _, o := range objs {
		b, _ := json.Marshal(o.Object)
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Journal is a component operation's journal.
type Journal = journal.Entry[state]

// state is a component operation's own record in its journal: the
// revision it deploys and the data-plane rolls it started, so a resumed
// run continues the same rolls.
type state struct {
	Revision int          `json:"revision"`
	Previous int          `json:"previous,omitempty"`
	Rolls    []rollRecord `json:"rolls,omitempty"`
}

type rollRecord struct {
	DaemonSet string    `json:"daemonSet"`
	Group     string    `json:"group"`
	Spec      roll.Spec `json:"spec"`
	Operation string    `json:"operation,omitempty"`
	Status    string    `json:"status,omitempty"`
}

// load validates a loaded source against the cluster: exit 2 material.
func load(ctx context.Context, cs kubernetes.Interface, src *component.Source, checks component.Checks) ([]*unstructured.Unstructured, error) {
	scope, err := component.NewClusterScope(ctx, cs)
	if err != nil {
		return nil, err
	}
	if err := component.Validate(src, scope, checks); err != nil {
		return nil, err
	}
	objs := make([]*unstructured.Unstructured, 0, len(src.Objects))
	for _, o := range src.Objects {
		objs = append(objs, o.DeepCopy())
	}
	component.Normalize(objs)
	return objs, nil
}

// Spans lists the node phases of the data-plane rolls this run ran, for
// a guard's report.
func (r *Result) Spans(now time.Time) []journal.Span {
	var out []journal.Span
	for _, op := range r.RollJournals {
		out = append(out, op.Record.Spans(now)...)
	}
	return out
}

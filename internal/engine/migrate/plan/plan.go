package plan

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// The document's type.
const (
	APIVersion = "hitless.dev/v1alpha1"
	Kind       = "MigrationPlan"
)

// Plan is a migration: parameters and ordered steps, each with a forward
// action and a rollback (explicit, or the inverse the engine derives).
type Plan struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	// Profile is the check profile whose preflight runs before the first
	// step and whose postflight runs after the last.
	Profile string `json:"profile,omitempty"`
	// NetworkType is the OpenShift network type the profile's checks
	// expect at the end (default: the profile's own).
	NetworkType string `json:"networkType,omitempty"`
	// Network are the network parameters the profile's checks verify
	// (the fields of a preflight's -f file: mtu, genevePort,
	// internalSubnet, clusterNetwork, ...), usually from parameters.
	Network    map[string]any `json:"network,omitempty"`
	Parameters []Parameter    `json:"parameters,omitempty"`
	// Gates hold before every step that does not skip them: a gate that
	// fails pauses the plan before the step, naming the object.
	Gates []Gate `json:"gates,omitempty"`
	Steps []Step `json:"steps"`
}

// Metadata names and describes a plan.
type Metadata struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Source is the procedure the plan follows (a seed, a document).
	Source string `json:"source,omitempty"`
}

// Parameter types.
const (
	TypeString = "string"
	TypeInt    = "int"
	TypeBool   = "bool"
	// TypeList is a list of strings: comma-separated in --set.
	TypeList = "list"
)

// Parameter is a value the user gives with --set name=value.
type Parameter struct {
	Name        string `json:"name"`
	Type        string `json:"type,omitempty"`
	Description string `json:"description,omitempty"`
	// Default is used when the user gives none; without one and not
	// Required, the parameter is unset: a patch field whose whole value is
	// an unset parameter is left out of the patch.
	Default  any  `json:"default,omitempty"`
	Required bool `json:"required,omitempty"`
	// Validation is a CEL expression over params that must hold.
	Validation string `json:"validation,omitempty"`
	Message    string `json:"message,omitempty"`
}

// ObjectRef names one object (Name set) or every object of a kind,
// optionally in a namespace and matching a label selector.
type ObjectRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name,omitempty"`
	Selector   string `json:"selector,omitempty"`
}

// GVK is the ref's group, version and kind.
func (r ObjectRef) GVK() schema.GroupVersionKind {
	gv, _ := schema.ParseGroupVersion(r.APIVersion)
	return gv.WithKind(r.Kind)
}

func (r ObjectRef) String() string {
	s := r.Kind
	if gv := r.GVK(); gv.Group != "" {
		s += "." + gv.Group
	}
	switch {
	case r.Name != "" && r.Namespace != "":
		return s + " " + r.Namespace + "/" + r.Name
	case r.Name != "":
		return s + " " + r.Name
	case r.Selector != "":
		return "every " + s + " matching " + r.Selector
	case r.Namespace != "":
		return "every " + s + " in " + r.Namespace
	}
	return "every " + s
}

// Gate is a condition that must hold before a step starts.
type Gate struct {
	Name string    `json:"name"`
	For  ObjectRef `json:"for"`
	// Condition is CEL over object (and params) that every object must
	// satisfy; Message, CEL giving a string, says why one does not.
	Condition string `json:"condition"`
	Message   string `json:"message,omitempty"`
	// Within is how long a failing gate is watched before the plan
	// pauses (default 30s): a condition that recovers on its own does not
	// stop the plan.
	Within string `json:"within,omitempty"`
}

// Step is one journaled step: exactly one action, and how to undo it.
type Step struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// When is CEL over params: the step runs only when it is true.
	When string `json:"when,omitempty"`
	// SkipGates runs the step without the plan's gates, for steps during
	// which the documented procedure expects operators to be unhealthy.
	SkipGates bool `json:"skipGates,omitempty"`
	Action    `json:",inline"`
	// Rollback undoes the step; nil derives the inverse (a patch restores
	// the fields it touched from the backup taken before it, a delete
	// re-creates what it deleted, an install uninstalls); None says the
	// step needs no undo.
	Rollback *Rollback `json:"rollback,omitempty"`
}

// Rollback is a step's explicit undo: an action, then more in order
// (a patch, the wait for what it starts, a clean-up).
type Rollback struct {
	// None: nothing to undo (a wait, a check) or nothing that can be.
	None bool `json:"none,omitempty"`
	// Before run first; then the action, or without one the inverse the
	// engine derives (a patch's fields restored from its backup); then
	// Then. A procedure around a derived restore keeps the restore exact.
	Before []Action `json:"before,omitempty"`
	Action `json:",inline"`
	Then   []Action `json:"then,omitempty"`
}

// Derived tells whether the rollback runs the derived inverse.
func (r *Rollback) Derived() bool { return r == nil || (!r.None && r.Type() == "") }

// Action is what a step does: exactly one field is set.
type Action struct {
	Backup    *Backup    `json:"backup,omitempty"`
	Patch     *Patch     `json:"patch,omitempty"`
	Wait      *Wait      `json:"wait,omitempty"`
	Check     *Check     `json:"check,omitempty"`
	Roll      *Roll      `json:"roll,omitempty"`
	Component *Component `json:"component,omitempty"`
	Pause     *Pause     `json:"pause,omitempty"`
	Delete    *Delete    `json:"delete,omitempty"`
	Label     *Label     `json:"label,omitempty"`
	Sync      *Sync      `json:"sync,omitempty"`
}

// Type is the action's step type, "" when none is set.
func (a Action) Type() string {
	for _, t := range a.types() {
		if t.set {
			return t.name
		}
	}
	return ""
}

type actionField struct {
	name string
	set  bool
}

func (a Action) types() []actionField {
	return []actionField{
		{"backup", a.Backup != nil}, {"patch", a.Patch != nil}, {"wait", a.Wait != nil},
		{"check", a.Check != nil}, {"roll", a.Roll != nil}, {"component", a.Component != nil},
		{"pause", a.Pause != nil}, {"delete", a.Delete != nil}, {"label", a.Label != nil},
		{"sync", a.Sync != nil},
	}
}

// StepTypes lists the step types.
func StepTypes() []string {
	var out []string
	for _, t := range (Action{}).types() {
		out = append(out, t.name)
	}
	return out
}

// Backup saves objects in the cluster before anything changes.
type Backup struct {
	Objects []ObjectRef `json:"objects"`
}

// Patch types.
const (
	PatchMerge = "merge"
	PatchJSON  = "json"
	PatchApply = "apply"
)

// Patch changes one object.
type Patch struct {
	Object ObjectRef `json:"object"`
	// Type is merge (RFC 7386), json (RFC 6902) or apply (server-side).
	Type string `json:"type,omitempty"`
	// Patch is the patch document: an object (merge, apply) or a list of
	// operations (json). Strings "${name}" are parameters.
	Patch        any    `json:"patch"`
	FieldManager string `json:"fieldManager,omitempty"`
}

// Timeout policies of a wait.
const (
	OnTimeoutFail  = "fail"
	OnTimeoutPause = "pause"
)

// Wait waits until a CEL condition holds for an object, or for every
// object of a kind.
type Wait struct {
	For       ObjectRef `json:"for"`
	Condition string    `json:"condition"`
	// Message is CEL giving a string: why an object is not there yet.
	Message   string `json:"message,omitempty"`
	Timeout   string `json:"timeout,omitempty"`
	OnTimeout string `json:"onTimeout,omitempty"`
	// AllowNone passes when no object matches; by default a wait over no
	// object keeps waiting.
	AllowNone bool `json:"allowNone,omitempty"`
	// HoldFor is how long the condition must hold without a break: a wait
	// that follows a change an operator reacts to does not pass on the
	// state from before the operator noticed.
	HoldFor string `json:"holdFor,omitempty"`
}

// Check runs a check profile; a hard failure stops the plan.
type Check struct {
	Profile string `json:"profile"`
	// Kind is preflight or postflight.
	Kind string `json:"kind"`
	// NetworkType is the OpenShift network type expected (default: the
	// profile's).
	NetworkType string `json:"networkType,omitempty"`
}

// Roll rolls nodes group by group with per-node actions.
type Roll struct {
	// Groups are rolled in order; a node in two groups rolls with the
	// first.
	Groups       []RollGroup       `json:"groups"`
	Actions      []roll.ActionSpec `json:"actions,omitempty"`
	DrainTimeout string            `json:"drainTimeout,omitempty"`
	// ActionTimeout bounds each node's actions and its return to Ready.
	ActionTimeout string `json:"actionTimeout,omitempty"`
	MaxFailures   int    `json:"maxFailures,omitempty"`
}

// RollGroup is one group of nodes and its batch.
type RollGroup struct {
	Name     string `json:"name,omitempty"`
	Selector string `json:"selector"`
	Batch    string `json:"batch,omitempty"`
}

// Component actions.
const (
	ComponentInstall   = "install"
	ComponentUpgrade   = "upgrade"
	ComponentUninstall = "uninstall"
)

// Component installs, upgrades or uninstalls a component through the
// lifecycle engine; Source names a release the caller supplies.
type Component struct {
	Name   string `json:"name"`
	Action string `json:"action"`
	Source string `json:"source,omitempty"`
	// NodeSelector is added to the release's DaemonSets: their pods run
	// only on the nodes so labelled (a data plane installed beside
	// another, taking nodes one by one).
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
}

// Pause asks a person before going on (seed 003's "stop routing to
// node X").
type Pause struct {
	Message string `json:"message"`
}

// Delete removes objects or namespaces, refusing a namespace that holds
// what the plan does not own (claims, unmanaged pods) unless Force.
type Delete struct {
	Objects []ObjectRef `json:"objects"`
	Force   bool        `json:"force,omitempty"`
	// Timeout bounds the wait for the objects to go (finalizers).
	Timeout string `json:"timeout,omitempty"`
}

// Label sets labels on every node the selector matches (every node
// without one); its derived rollback puts back what each node had.
type Label struct {
	Nodes  string            `json:"nodes,omitempty"`
	Labels map[string]string `json:"labels"`
}

// Sync modes.
const (
	// SyncOnce copies once (seed 004's pre-sync).
	SyncOnce = "once"
	// SyncStart copies once, then again every interval while the steps
	// after it run, until the stop of the same name (run-sync).
	SyncStart = "start"
	// SyncStop ends a run-sync with one last pass (post-sync).
	SyncStop = "stop"
)

// Sync copies, or translates, configuration from one release to another
// installed beside it: the objects a mapping's From selects become
// objects of To's kind, one per source, of the same name unless To names
// one. What it writes is labelled with the operation; its derived
// rollback deletes what it created and puts back what it changed.
type Sync struct {
	// Mode is once (default), start or stop.
	Mode string `json:"mode,omitempty"`
	// Name pairs a start with its stop (default "sync").
	Name string `json:"name,omitempty"`
	// Interval is a run-sync's period (default 2s).
	Interval string `json:"interval,omitempty"`
	// Objects are the mappings (once and start; a stop runs its start's).
	Objects []SyncMapping `json:"objects,omitempty"`
}

// SyncName is the sync's name, "sync" unless given.
func (s *Sync) SyncName() string {
	if s.Name == "" {
		return "sync"
	}
	return s.Name
}

// SyncStart is the step's sync that starts run-sync name, or nil.
func (p *Plan) SyncStart(name string) *Sync {
	for _, s := range p.Steps {
		if s.Sync != nil && s.Sync.Mode == SyncStart && s.Sync.SyncName() == name {
			return s.Sync
		}
	}
	return nil
}

// SyncMapping maps the objects From selects to objects of To.
type SyncMapping struct {
	From ObjectRef `json:"from"`
	// To gives the target's apiVersion and kind, its namespace (default
	// the source's) and, for a single source, its name.
	To ObjectRef `json:"to"`
	// Transform is CEL over object (the source) and params giving the
	// target's fields other than metadata (spec, data): the translation
	// between two releases' schemas. Without one every field but
	// metadata and status is copied.
	Transform string `json:"transform,omitempty"`
}

// Error is bad plan input: the file, the step (or "" for the plan) and
// the field.
type Error struct {
	File  string
	Step  string
	Field string
	Msg   string
}

func (e *Error) Error() string {
	s := e.File
	if s == "" {
		s = "plan"
	}
	if e.Step != "" {
		s += fmt.Sprintf(": step %q", e.Step)
	}
	if e.Field != "" {
		s += ": field " + e.Field
	}
	return s + ": " + e.Msg
}

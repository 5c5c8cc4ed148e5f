package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Migration is `hitless migrate run` as a resource: a built-in plan or an
// inline plan document, with its parameters, run step by step by the
// controller (every step journaled before it acts, gates checked before
// each one, the roll steps' nodes drained respecting PodDisruptionBudgets),
// its pause steps approved by naming them in spec.approve, and undone
// newest first when spec.rollback is set. What defines the migration (the
// plan, its parameters and releases) is immutable once created; approve,
// paused, probe, rollbackOnBreach and rollback may change.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=mig,categories=hitless
// +kubebuilder:printcolumn:name="Plan",type=string,JSONPath=`.status.plan`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Step",type=string,JSONPath=`.status.step`
// +kubebuilder:printcolumn:name="Operation",type=string,JSONPath=`.status.operation`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Migration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MigrationSpec   `json:"spec"`
	Status MigrationStatus `json:"status,omitempty"`
}

// MigrationSpec is the plan to run and what may be decided while it runs.
//
// +kubebuilder:validation:XValidation:rule="has(self.plan) != has(self.inline)",message="give plan (a built-in plan's name) or inline (a plan document), one of them"
// +kubebuilder:validation:XValidation:rule="has(self.plan) == has(oldSelf.plan) && (!has(self.plan) || self.plan == oldSelf.plan) && has(self.inline) == has(oldSelf.inline) && (!has(self.inline) || self.inline == oldSelf.inline) && has(self.parameters) == has(oldSelf.parameters) && (!has(self.parameters) || self.parameters == oldSelf.parameters) && has(self.releases) == has(oldSelf.releases) && (!has(self.releases) || self.releases == oldSelf.releases)",message="plan, inline, parameters and releases are immutable: create another Migration for another plan or other parameters"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.rollback) || !oldSelf.rollback || (has(self.rollback) && self.rollback)",message="rollback cannot be cleared once set: the rollback goes on until every started step is undone"
type MigrationSpec struct {
	// Plan names a built-in plan (`hitless migrate plans`).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Plan string `json:"plan,omitempty"`

	// Inline is a plan document (apiVersion hitless.dev/v1alpha1, kind
	// MigrationPlan), as `hitless migrate run -f` reads it.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	Inline *runtime.RawExtension `json:"inline,omitempty"`

	// Parameters are the plan's parameters as text, as --set gives them
	// (a list is comma-separated).
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Parameters map[string]string `json:"parameters,omitempty"`

	// Releases are the sources of the releases the plan's component steps
	// deploy, by the name a step's source gives: a ConfigMap, a Secret or
	// an OCI artifact of manifests, as a Component's source.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	Releases map[string]ComponentSource `json:"releases,omitempty"`

	// Approve names the plan's pause steps that may go on (what `hitless
	// migrate run` asks at the terminal); a pause step not named here
	// waits (Paused, AwaitingApproval) until it is.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	Approve []string `json:"approve,omitempty"`

	// Paused stops the migration before its next step or node (a step in
	// flight finishes); false resumes it.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// Probe, when set, measures the disruption with the node agents'
	// probes for the whole migration; a node of a roll step starts only
	// while the budget holds, else the migration pauses (a larger budget
	// resumes it).
	// +optional
	Probe *ProbeBudget `json:"probe,omitempty"`

	// RollbackOnBreach undoes the migration (as rollback) when the probe
	// budget is exceeded; without it the migration pauses.
	// +optional
	RollbackOnBreach bool `json:"rollbackOnBreach,omitempty"`

	// Rollback undoes the started steps newest first, as `hitless migrate
	// rollback` does: a migration in flight stops first. It cannot be
	// cleared once set.
	// +optional
	Rollback bool `json:"rollback,omitempty"`

	// AgentTimeout is how long the plan's preflight and postflight wait
	// for the node agents' fresh results (default 20s; 0s runs them
	// without the agents).
	// +optional
	AgentTimeout *metav1.Duration `json:"agentTimeout,omitempty"`
}

// Phases of a Migration beside those of a NodeRoll and a Component.
const (
	PhaseMigrating = "Migrating"
)

// MigrationStatus is what the controller observed and did.
type MigrationStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase sums up the conditions: Migrating, Paused, Succeeded, Failed,
	// RollingBack, RolledBack.
	// +optional
	Phase string `json:"phase,omitempty"`
	// Plan is the plan's name (metadata.name of its document).
	// +optional
	Plan string `json:"plan,omitempty"`
	// Operation is the migration's journaled operation (`hitless status
	// ID`, `hitless migrate rollback ID`).
	// +optional
	Operation string `json:"operation,omitempty"`
	// Step is the step in flight, or the one the migration stopped at.
	// +optional
	Step string `json:"step,omitempty"`
	// Steps are the plan's steps with what became of each.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	Steps []MigrationStep `json:"steps,omitempty"`
	// Disruption is what the probes measured (spec.probe).
	// +optional
	Disruption *Disruption `json:"disruption,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// History lists the operations this resource ran (the migration, its
	// rollback), newest last (at most ten).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	History []OperationRecord `json:"history,omitempty"`
}

// Phases of a migration step.
const (
	StepPending = "Pending"
	StepRunning = "Running"
	StepDone    = "Done"
	StepFailed  = "Failed"
	StepPaused  = "Paused"
	StepSkipped = "Skipped"
	StepUndone  = "Undone"
)

// MigrationStep is one step of the plan.
type MigrationStep struct {
	Name string `json:"name"`
	// Phase is Pending, Running, Done, Failed, Paused (the migration
	// waits in it: an approval, a roll its budget paused), Skipped (its
	// `when` is false) or Undone (by a rollback).
	Phase string `json:"phase"`
	// +optional
	Started *metav1.Time `json:"started,omitempty"`
	// +optional
	Finished *metav1.Time `json:"finished,omitempty"`
	// Message is the step's last output line or its error.
	// +optional
	Message string `json:"message,omitempty"`
}

// MigrationList is a list of Migrations.
//
// +kubebuilder:object:root=true
type MigrationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Migration `json:"items"`
}

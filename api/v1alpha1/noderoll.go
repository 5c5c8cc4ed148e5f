package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// NodeRoll is `hitless roll` as a resource: the controller cordons, drains
// (respecting PodDisruptionBudgets), acts on and uncordons the selected
// nodes batch by batch, journaling every transition, and reports in the
// status. What defines the roll is immutable once created; paused,
// canaryApproved, maintenanceWindow and probe may change at any time.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=nroll,categories=hitless
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Done",type=integer,JSONPath=`.status.summary.done`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.summary.total`
// +kubebuilder:printcolumn:name="Operation",type=string,JSONPath=`.status.operation`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NodeRoll struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   NodeRollSpec   `json:"spec"`
	Status NodeRollStatus `json:"status,omitempty"`
}

// NodeRollSpec is what a roll does.
//
// +kubebuilder:validation:XValidation:rule="has(self.nodeSelector) != has(self.nodes)",message="give nodeSelector or nodes (one of them; nodeSelector: {} selects every node)"
// +kubebuilder:validation:XValidation:rule="has(self.nodeSelector) == has(oldSelf.nodeSelector) && (!has(self.nodeSelector) || self.nodeSelector == oldSelf.nodeSelector) && has(self.nodes) == has(oldSelf.nodes) && (!has(self.nodes) || self.nodes == oldSelf.nodes) && self.batch == oldSelf.batch && self.order == oldSelf.order && has(self.canary) == has(oldSelf.canary) && (!has(self.canary) || self.canary == oldSelf.canary) && has(self.actions) == has(oldSelf.actions) && (!has(self.actions) || self.actions == oldSelf.actions) && has(self.drain) == has(oldSelf.drain) && (!has(self.drain) || self.drain == oldSelf.drain) && self.maxFailures == oldSelf.maxFailures && has(self.actionTimeout) == has(oldSelf.actionTimeout) && (!has(self.actionTimeout) || self.actionTimeout == oldSelf.actionTimeout) && has(self.hooks) == has(oldSelf.hooks) && (!has(self.hooks) || self.hooks == oldSelf.hooks)",message="only paused, canaryApproved, maintenanceWindow and probe may change once a roll exists: create another NodeRoll for another roll"
type NodeRollSpec struct {
	// NodeSelector selects the nodes to roll by their labels; {} selects
	// every node.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`

	// Nodes names the nodes to roll.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=5000
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Nodes []string `json:"nodes,omitempty"`

	// Batch is how many nodes are rolled at once: a count (2) or a
	// percentage of the selected nodes ("10%", rounded down, at least one).
	// +kubebuilder:default=1
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 1 : self.matches('^([1-9][0-9]?|100)%$')",message="want a count of at least 1 or a percentage from 1% to 100%"
	Batch intstr.IntOrString `json:"batch,omitempty"`

	// Order is the order of the nodes: by name, by zone (one zone after
	// the other), or by name with the control-plane nodes last.
	// +kubebuilder:default=name
	// +kubebuilder:validation:Enum=name;zone;control-plane-last
	Order string `json:"order,omitempty"`

	// Canary is how many nodes are rolled first, alone; the roll then
	// waits for canaryApproved.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Canary int32 `json:"canary,omitempty"`

	// Actions run on each node, in order, between its drain and the wait
	// for it to be Ready: actions registered with the controller.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Actions []NodeAction `json:"actions,omitempty"`

	// Hooks run on each node: preNode after its cordon and before its
	// drain (stop routing to it), postNode once it and its DaemonSet pods
	// are Ready again, before its uncordon (route to it again). A hook
	// that fails fails the node, which is uncordoned.
	// +optional
	Hooks *NodeHooks `json:"hooks,omitempty"`

	// Drain is how each node is drained.
	// +optional
	Drain *DrainPolicy `json:"drain,omitempty"`

	// MaxFailures is how many nodes may fail before the roll stops.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	MaxFailures int32 `json:"maxFailures,omitempty"`

	// ActionTimeout bounds each node's actions and the wait for it and its
	// DaemonSet pods to be Ready (default 10m).
	// +optional
	ActionTimeout *metav1.Duration `json:"actionTimeout,omitempty"`

	// Paused stops the roll before its next node (nodes in flight finish);
	// false resumes it.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// CanaryApproved lets the roll go on after its canary nodes.
	// +optional
	CanaryApproved bool `json:"canaryApproved,omitempty"`

	// MaintenanceWindow, when set, is when nodes may start: outside it the
	// roll waits before its next node.
	// +optional
	MaintenanceWindow *MaintenanceWindow `json:"maintenanceWindow,omitempty"`

	// Probe, when set, measures the disruption with the node agents'
	// probes for the whole roll; a node starts only while the budget
	// holds, else the roll pauses (a larger budget resumes it).
	// +optional
	Probe *ProbeBudget `json:"probe,omitempty"`
}

// NodeAction is a per-node action registered with the controller, with its
// parameters.
type NodeAction struct {
	// Name is the registered action's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// Params are the action's parameters, as it documents them.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	Params *runtime.RawExtension `json:"params,omitempty"`
}

// NodeHooks are what runs on each node before its drain and before its
// uncordon, in order, each bounded by actionTimeout.
type NodeHooks struct {
	// PreNode run after the node's cordon, before its drain.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	PreNode []NodeHook `json:"preNode,omitempty"`
	// PostNode run once the node is Ready again, before its uncordon.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	PostNode []NodeHook `json:"postNode,omitempty"`
}

// NodeHook is a Job run for the node, or a registered action.
//
// +kubebuilder:validation:XValidation:rule="has(self.job) != has(self.action)",message="give job or action (one of them)"
type NodeHook struct {
	// Job runs a Kubernetes Job for the node and waits for it to complete.
	// +optional
	Job *JobHook `json:"job,omitempty"`
	// Action is an action registered with the controller.
	// +optional
	Action *NodeAction `json:"action,omitempty"`
}

// JobHook is a Job the controller creates once per node, in its hook
// namespace (hitless-hooks unless the controller's --hook-namespace says
// otherwise), and waits for: Complete goes on, Failed fails the node
// (naming the Job, its exit code and message). Every container gets
// HITLESS_NODE, HITLESS_NODE_IP, HITLESS_BATCH, HITLESS_OPERATION and
// HITLESS_HOOK. A Job that fails is replaced when the node is retried; one
// that does not finish within actionTimeout is deleted with its pods.
type JobHook struct {
	// OnNode runs the Job's pod on the node itself (spec.nodeName,
	// tolerating the cordon); otherwise the scheduler places it.
	// +optional
	OnNode bool `json:"onNode,omitempty"`
	// Template is the Job's metadata and spec (a batch/v1
	// JobTemplateSpec). restartPolicy defaults to Never,
	// automountServiceAccountToken to false and ttlSecondsAfterFinished to
	// 3600. The controller has the API server validate it (a dry run)
	// before the roll starts.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	Template runtime.RawExtension `json:"template"`
}

// DrainPolicy is how nodes are drained.
type DrainPolicy struct {
	// Timeout bounds each node's drain (default 10m).
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// OnTimeout is what a drain that times out does: fail the node, skip
	// it, or uncordon it and pause the roll.
	// +kubebuilder:default=fail
	// +kubebuilder:validation:Enum=fail;skip;uncordon
	OnTimeout string `json:"onTimeout,omitempty"`
	// Force deletes pods no controller manages (they are not recreated).
	// +optional
	Force bool `json:"force,omitempty"`
	// DeleteEmptyDirData evicts pods with emptyDir volumes (their data is
	// lost).
	// +optional
	DeleteEmptyDirData bool `json:"deleteEmptyDirData,omitempty"`
	// EvictRetryDelay is the pause after an eviction a
	// PodDisruptionBudget refused (default 2s).
	// +optional
	EvictRetryDelay *metav1.Duration `json:"evictRetryDelay,omitempty"`
}

// MaintenanceWindow is a daily window, on some days of the week, in a time
// zone.
type MaintenanceWindow struct {
	// Days are the days the window opens on; empty is every day.
	// +optional
	// +listType=set
	// +kubebuilder:validation:items:Enum=Mon;Tue;Wed;Thu;Fri;Sat;Sun
	Days []string `json:"days,omitempty"`
	// Start is when the window opens, "HH:MM" on the 24-hour clock.
	// +kubebuilder:validation:Pattern=`^([01][0-9]|2[0-3]):[0-5][0-9]$`
	Start string `json:"start"`
	// Duration is how long the window stays open.
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('168h')",message="want a duration from 1s to 168h"
	Duration metav1.Duration `json:"duration"`
	// TimeZone is an IANA time zone ("Europe/Paris"); empty is UTC.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	TimeZone string `json:"timeZone,omitempty"`
}

// Phases of a NodeRoll, for people (status.phase).
const (
	PhasePending   = "Pending"
	PhaseRunning   = "Running"
	PhasePaused    = "Paused"
	PhaseSucceeded = "Succeeded"
	PhaseFailed    = "Failed"
	PhaseAborted   = "Aborted"
)

// Condition types, in the Kubernetes convention.
const (
	// ConditionReady is True once the roll finished every node.
	ConditionReady = "Ready"
	// ConditionProgressing is True while nodes are being rolled.
	ConditionProgressing = "Progressing"
	// ConditionPaused is True while the roll waits: paused, outside its
	// window, for the canary's approval, or on a drain.
	ConditionPaused = "Paused"
	// ConditionFailed is True when the roll cannot go on without a
	// change: a bad spec, a blocked plan, too many failed nodes.
	ConditionFailed = "Failed"
)

// NodeRollStatus is what the controller observed and did.
type NodeRollStatus struct {
	// ObservedGeneration is the generation the status is about.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase sums up the conditions.
	// +optional
	Phase string `json:"phase,omitempty"`
	// Operation is the ID of the journaled operation (`hitless status ID`).
	// +optional
	Operation string `json:"operation,omitempty"`
	// Conditions are Ready, Progressing, Paused and Failed; their reasons
	// and messages name the blocking pod, PDB, node or field.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Summary counts the nodes by outcome.
	// +optional
	Summary NodeRollSummary `json:"summary,omitzero"`
	// Nodes are the nodes in flight, failed or skipped (finished nodes are
	// counted in the summary and kept in the journal).
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=5000
	Nodes []NodeProgress `json:"nodes,omitempty"`
	// Disruption is what the probes measured (spec.probe).
	// +optional
	Disruption *Disruption `json:"disruption,omitempty"`
	// History lists the operations this resource ran, newest last (at most
	// ten).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	History []OperationRecord `json:"history,omitempty"`
}

// NodeRollSummary counts the nodes.
type NodeRollSummary struct {
	Total   int32 `json:"total"`
	Done    int32 `json:"done"`
	Failed  int32 `json:"failed"`
	Skipped int32 `json:"skipped"`
}

// NodeProgress is one node's place in the roll.
type NodeProgress struct {
	Name  string `json:"name"`
	Batch int32  `json:"batch"`
	// Phase is the roll's phase of the node (cordon, drain, action, wait,
	// uncordon, failed, skipped).
	Phase string `json:"phase"`
	// Message says what the node waits for or why it failed.
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	Started *metav1.Time `json:"started,omitempty"`
}

// OperationRecord is one operation a resource ran.
type OperationRecord struct {
	Operation string `json:"operation"`
	// Result is Succeeded, Failed or Aborted.
	Result   string       `json:"result"`
	Started  metav1.Time  `json:"started"`
	Finished *metav1.Time `json:"finished,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
}

// NodeRollList is a list of NodeRolls.
//
// +kubebuilder:object:root=true
type NodeRollList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeRoll `json:"items"`
}

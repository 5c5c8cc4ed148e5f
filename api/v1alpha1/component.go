package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Component is the desired release of a network plugin: `hitless install`
// and `hitless upgrade` as a resource. When its source or its spec
// changes, the controller installs or upgrades the component (checks,
// backup, staged server-side apply, the data plane node by node, drains
// respecting PodDisruptionBudgets), with the customizations made in the
// cluster carried over three-way; under a probe budget it measures the
// disruption and, with rollbackOnBreach, puts the previous revision back
// when the budget is exceeded. Its name is the component's name.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=comp,categories=hitless
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.revision`
// +kubebuilder:printcolumn:name="Release",type=string,JSONPath=`.status.release`
// +kubebuilder:printcolumn:name="Operation",type=string,JSONPath=`.status.operation`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 40 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name is the component's name: want a DNS label of at most 40 characters"
type Component struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ComponentSpec   `json:"spec"`
	Status ComponentStatus `json:"status,omitempty"`
}

// ComponentSpec is the release a component should run and how it gets
// there.
type ComponentSpec struct {
	// Source holds the release's manifests or Helm chart.
	Source ComponentSource `json:"source"`

	// Values are a Helm chart source's values (the chart's defaults
	// otherwise). Values that are secrets belong in the chart's own Secret
	// references, not here: a resource's spec is readable by whoever reads
	// Components.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	Values *runtime.RawExtension `json:"values,omitempty"`

	// DataPlane names DaemonSets (namespace/name) replaced node by node,
	// on top of those annotated hitless.dev/data-plane=true or detected.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$`
	DataPlane []string `json:"dataPlane,omitempty"`

	// NodeSelectors split the data-plane roll into groups, rolled in
	// order (label selectors); nodes none matches come last.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	NodeSelectors []string `json:"nodeSelectors,omitempty"`

	// Batch is how many nodes have their data plane replaced at once: a
	// count or a percentage.
	// +kubebuilder:default=1
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 1 : self.matches('^([1-9][0-9]?|100)%$')",message="want a count of at least 1 or a percentage from 1% to 100%"
	Batch intstr.IntOrString `json:"batch,omitempty"`

	// Prefer says who wins a field both the cluster's customizations and
	// the new release changed; empty stops the upgrade and reports the
	// conflicts.
	// +optional
	// +kubebuilder:validation:Enum=vendor;user
	Prefer string `json:"prefer,omitempty"`

	// AllowMixedVersions accepts images at any versions.
	// +optional
	AllowMixedVersions bool `json:"allowMixedVersions,omitempty"`

	// Profile is the check profile of the component's procedure.
	// +kubebuilder:default=generic
	// +kubebuilder:validation:MaxLength=63
	Profile string `json:"profile,omitempty"`

	// Probe, when set, measures the disruption with the node agents'
	// probes for the whole operation and gates each data-plane node on the
	// budget.
	// +optional
	Probe *ProbeBudget `json:"probe,omitempty"`

	// RollbackOnBreach puts the previous revision back (every object from
	// its backup, nodes in flight uncordoned) when the probe budget is
	// exceeded; without it the operation pauses before its next node.
	// +optional
	RollbackOnBreach bool `json:"rollbackOnBreach,omitempty"`

	// Paused keeps the controller from starting or continuing an
	// operation (one in flight stops before its next node).
	// +optional
	Paused bool `json:"paused,omitempty"`

	// Wait bounds each stage's wait for its objects to be ready (default
	// 5m).
	// +optional
	Wait *metav1.Duration `json:"wait,omitempty"`
}

// ComponentSource is where the release comes from: exactly one of them.
//
// +kubebuilder:validation:XValidation:rule="[has(self.configMap), has(self.secret), has(self.oci)].filter(x, x).size() == 1",message="give exactly one of configMap, secret and oci"
type ComponentSource struct {
	// ConfigMap names a ConfigMap in hitless-system whose keys are the
	// release's files: YAML manifests (a kustomization.yaml is built), or
	// one packaged Helm chart (.tgz, in binaryData).
	// +optional
	ConfigMap *BundleRef `json:"configMap,omitempty"`
	// Secret is the same bundle in a Secret in hitless-system (a release
	// whose manifests hold credentials).
	// +optional
	Secret *BundleRef `json:"secret,omitempty"`
	// OCI is an artifact in an OCI registry: a Helm chart (helm push), or
	// a tar+gzip layer of the release's files (flux push artifact, oras
	// push): its manifests (a kustomization.yaml is built) or an unpacked
	// chart.
	// +optional
	OCI *OCISource `json:"oci,omitempty"`
}

// OCISource is an artifact in an OCI registry.
type OCISource struct {
	// Ref is the artifact: registry/repository:tag or
	// registry/repository@sha256:digest. The digest it resolved to is in
	// status.source; a tag moved in the registry is seen on the next
	// resync.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Ref string `json:"ref"`
	// PullSecret names a kubernetes.io/dockerconfigjson Secret in
	// hitless-system with the registry's credentials.
	// +optional
	PullSecret *BundleRef `json:"pullSecret,omitempty"`
	// Insecure pulls over plain HTTP (a registry on a trusted network).
	// +optional
	Insecure bool `json:"insecure,omitempty"`
}

// BundleRef names an object in hitless-system.
type BundleRef struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
}

// ProbeBudget is a probe session's rate and the disruption an operation
// may cause.
type ProbeBudget struct {
	// Rate is the probes per second to each peer.
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	Rate int32 `json:"rate,omitempty"`
	// Sample is how many peers each agent probes (0: all).
	// +optional
	// +kubebuilder:validation:Minimum=0
	Sample int32 `json:"sample,omitempty"`
	// MaxOutage is the longest outage any path may see before the next
	// node.
	// +optional
	MaxOutage *metav1.Duration `json:"maxOutage,omitempty"`
	// MaxLoss is the loss over all paths the operation may cause, as a
	// percentage ("0.5%").
	// +optional
	// +kubebuilder:validation:Pattern=`^(100|[0-9]{1,2}(\.[0-9]+)?)%$`
	MaxLoss string `json:"maxLoss,omitempty"`
	// Settle keeps probing after the operation until no path has lost a
	// probe for this long (default 5s, at most 2m).
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('2m')",message="want a duration from 0s to 2m"
	Settle *metav1.Duration `json:"settle,omitempty"`
}

// Condition types of a Component beside Ready, Progressing, Paused and
// Failed.
const (
	// ConditionRolledBack is True when the controller put the previous
	// revision back after a budget breach.
	ConditionRolledBack = "RolledBack"
)

// Phases of a Component beside those of a NodeRoll.
const (
	PhaseInstalling  = "Installing"
	PhaseUpgrading   = "Upgrading"
	PhaseReady       = "Ready"
	PhaseRollingBack = "RollingBack"
	PhaseRolledBack  = "RolledBack"
)

// ComponentStatus is what the controller observed and did.
type ComponentStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Phase string `json:"phase,omitempty"`
	// Operation is the journaled operation in flight or last run
	// (`hitless status ID`).
	// +optional
	Operation string `json:"operation,omitempty"`
	// Revision is the deployed revision (`hitless history NAME`).
	// +optional
	Revision int32 `json:"revision,omitempty"`
	// Release is the deployed release's version, read from its images.
	// +optional
	Release string `json:"release,omitempty"`
	// Source is the source last acted on, resolved: the ConfigMap or
	// Secret, or the artifact's digest.
	// +optional
	Source string `json:"source,omitempty"`
	// Digest identifies the source's content and the spec fields that
	// shape the release, as the last operation ran for them: a change of
	// either starts an operation.
	// +optional
	Digest string `json:"digest,omitempty"`
	// Carried are the customizations the last upgrade carried over.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	Carried []string `json:"carried,omitempty"`
	// Disruption is what the last operation's probes measured.
	// +optional
	Disruption *Disruption `json:"disruption,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// History lists the operations run for this resource, newest last
	// (at most ten).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	History []OperationRecord `json:"history,omitempty"`
}

// Disruption is a probe session's summary.
type Disruption struct {
	// MaxOutage is the longest outage on any path.
	MaxOutage metav1.Duration `json:"maxOutage"`
	// Loss is the loss over all paths, a percentage.
	Loss string `json:"loss"`
	// Windows counts the loss windows.
	Windows int32 `json:"windows"`
	// Breach says why the budget was exceeded, if it was.
	// +optional
	Breach string `json:"breach,omitempty"`
}

// ComponentList is a list of Components.
//
// +kubebuilder:object:root=true
type ComponentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Component `json:"items"`
}

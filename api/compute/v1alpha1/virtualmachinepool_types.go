package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Labels the pool controller puts on the VMs of a pool.
const (
	// PoolLabel names the VirtualMachinePool a VM belongs to.
	PoolLabel = "compute.strata.io/pool"
	// PoolRevisionLabel is the hash of the pool template a VM was made
	// from (like a pod's pod-template-hash).
	PoolRevisionLabel = "compute.strata.io/pool-revision"
)

// VirtualMachinePoolStrategyType is how a pool replaces its VMs when the
// template changes.
// +kubebuilder:validation:Enum=RollingUpdate
type VirtualMachinePoolStrategyType string

// RollingUpdateStrategy replaces VMs a few at a time, within the limits of
// maxUnavailable and maxSurge.
const RollingUpdateStrategy VirtualMachinePoolStrategyType = "RollingUpdate"

// VirtualMachinePoolStrategy is how a pool rolls out a new template.
type VirtualMachinePoolStrategy struct {
	// type of the update. RollingUpdate is the only one.
	// +optional
	// +kubebuilder:default=RollingUpdate
	Type VirtualMachinePoolStrategyType `json:"type,omitempty"`

	// rollingUpdate tunes the RollingUpdate strategy.
	// +optional
	// +kubebuilder:default={maxUnavailable: 1, maxSurge: 0}
	RollingUpdate *RollingUpdateVirtualMachinePool `json:"rollingUpdate,omitempty"`
}

// RollingUpdateVirtualMachinePool bounds a rolling update. Unlike a
// Deployment's pods (25%/25%), VMs default to one at a time without
// surge: maxUnavailable 1, maxSurge 0, because a surge VM holds a whole
// guest's memory and disk and an update never needs more room than the
// pool already has.
// +kubebuilder:validation:XValidation:rule="!(has(self.maxUnavailable) && has(self.maxSurge) && string(self.maxUnavailable) in ['0', '0%'] && string(self.maxSurge) in ['0', '0%'])",message="maxUnavailable and maxSurge cannot both be 0: the update could never progress"
type RollingUpdateVirtualMachinePool struct {
	// maxUnavailable is how many VMs (a number, or a percentage of
	// replicas, rounded down) may be unready during the update. Default 1.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')",message="must be a non-negative number or a percentage such as 25%"
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`

	// maxSurge is how many VMs (a number, or a percentage of replicas,
	// rounded up) may exist above replicas during the update. Default 0.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')",message="must be a non-negative number or a percentage such as 25%"
	MaxSurge *intstr.IntOrString `json:"maxSurge,omitempty"`
}

// VirtualMachineTemplateMeta is the metadata a pool gives its VMs.
type VirtualMachineTemplateMeta struct {
	// labels of each VM (at most 30); the pool's selector must match them.
	// The bound keeps the selector rule within the API server's CEL cost
	// budget.
	// +optional
	// +kubebuilder:validation:MaxProperties=30
	Labels map[string]string `json:"labels,omitempty"`

	// annotations of each VM.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Annotations map[string]string `json:"annotations,omitempty"`
}

// VirtualMachineTemplate describes the VMs a pool makes.
type VirtualMachineTemplate struct {
	// metadata: labels and annotations of each VM.
	// +optional
	Metadata VirtualMachineTemplateMeta `json:"metadata,omitempty"`

	// spec of each VM.
	// +required
	Spec VirtualMachineSpec `json:"spec"`
}

// VirtualMachinePoolSpec is the pool the user asks for.
//
// The selector must match the template's labels, and it cannot change, as
// for a Deployment. The API server checks matchLabels (this rule iterates
// the template's labels, which are bounded, to stay within the CEL cost
// budget); the controller checks matchExpressions.
// +kubebuilder:validation:XValidation:rule="(has(self.selector.matchLabels) && size(self.selector.matchLabels) > 0) || (has(self.selector.matchExpressions) && size(self.selector.matchExpressions) > 0)",message="selector: an empty selector would select every VM; set matchLabels or matchExpressions",fieldPath=".selector"
// +kubebuilder:validation:XValidation:rule="!has(self.selector.matchLabels) || (has(self.template.metadata) && has(self.template.metadata.labels) && self.template.metadata.labels.filter(k, k in self.selector.matchLabels && self.selector.matchLabels[k] == self.template.metadata.labels[k]).size() == size(self.selector.matchLabels))",message="selector does not match template labels",fieldPath=".selector"
// +kubebuilder:validation:XValidation:rule="self.selector == oldSelf.selector",message="selector is immutable",fieldPath=".selector"
type VirtualMachinePoolSpec struct {
	// replicas is the number of VMs. Default 1.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	Replicas *int32 `json:"replicas,omitempty"`

	// selector picks the pool's VMs by label; it must match the
	// template's labels. Only VMs the pool created (its controller
	// reference) are counted.
	// +required
	Selector *metav1.LabelSelector `json:"selector"`

	// template is the VM each replica is made from. Changing it rolls the
	// pool out to a new revision: VMs are replaced (a VM's image cannot
	// change), never patched.
	// +required
	Template VirtualMachineTemplate `json:"template"`

	// strategy is how VMs are replaced when the template changes.
	// +optional
	// +kubebuilder:default={type: RollingUpdate}
	Strategy VirtualMachinePoolStrategy `json:"strategy,omitempty"`

	// revisionHistoryLimit is how many old revisions (ControllerRevisions)
	// are kept for rollback. Default 10.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	RevisionHistoryLimit *int32 `json:"revisionHistoryLimit,omitempty"`
}

// Condition types of a VirtualMachinePool.
const (
	// PoolAvailable: at least replicas - maxUnavailable VMs are Ready.
	PoolAvailable = "Available"
	// PoolProgressing: the pool is rolling out (True, reason
	// RollingUpdate), has finished (True, NewRevisionAvailable) or cannot
	// (False, with the reason).
	PoolProgressing = "Progressing"
)

// VirtualMachinePoolStatus is what the pool controller observes.
type VirtualMachinePoolStatus struct {
	// replicas is the number of the pool's VMs, of any revision.
	// +optional
	Replicas int32 `json:"replicas"`

	// readyReplicas is the number of VMs whose Ready condition is True.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`

	// updatedReplicas is the number of VMs of the update revision.
	// +optional
	UpdatedReplicas int32 `json:"updatedReplicas"`

	// availableReplicas is the number of ready VMs (VMs have no
	// minReadySeconds: a ready VM is available).
	// +optional
	AvailableReplicas int32 `json:"availableReplicas"`

	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// currentRevision names the ControllerRevision all VMs were on when
	// the last rollout completed.
	// +optional
	CurrentRevision string `json:"currentRevision,omitempty"`

	// updateRevision names the ControllerRevision of the current template.
	// +optional
	UpdateRevision string `json:"updateRevision,omitempty"`

	// conditions: Available and Progressing.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// selector is spec.selector as a label query, for the scale
	// subresource (kubectl scale, autoscalers).
	// +optional
	Selector string `json:"selector,omitempty"`
}

// VirtualMachinePool runs a number of identical VMs from a template, and
// rolls them to a new template a few at a time: the Deployment of VMs.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=vmpool;vmpools,categories=strata
// +kubebuilder:printcolumn:name="DESIRED",type=integer,JSONPath=`.spec.replicas`
// +kubebuilder:printcolumn:name="CURRENT",type=integer,JSONPath=`.status.replicas`
// +kubebuilder:printcolumn:name="READY",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="UP-TO-DATE",type=integer,JSONPath=`.status.updatedReplicas`
// +kubebuilder:printcolumn:name="AVAILABLE",type=integer,JSONPath=`.status.availableReplicas`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type VirtualMachinePool struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the pool the user asks for.
	// +required
	Spec VirtualMachinePoolSpec `json:"spec"`

	// status is what the controller observes.
	// +optional
	Status VirtualMachinePoolStatus `json:"status,omitempty"`
}

// VirtualMachinePoolList is a list of VirtualMachinePools.
//
// +kubebuilder:object:root=true
type VirtualMachinePoolList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []VirtualMachinePool `json:"items"`
}

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Pod annotations that put a pod's eth0 on a tenant network instead of the
// pod network. A launcher pod of a VM gets AnnotationPort from its VM.
const (
	// AnnotationNetwork names a Network of the pod's namespace; a Port named
	// after the pod is created for it (and goes with the pod).
	AnnotationNetwork = "networking.strata.io/network"
	// AnnotationPort names an existing Port of the pod's namespace.
	AnnotationPort = "networking.strata.io/port"
)

// Provider types of a Network.
const (
	ProviderVXLAN = "vxlan" // an overlay segment between nodes, one VNI per network
	ProviderFlat  = "flat"  // the nodes' own LAN, through a host interface
)

// Neutron's resource statuses, used by every kind's status.status.
const (
	StatusActive = "ACTIVE"
	StatusDown   = "DOWN"
	StatusBuild  = "BUILD"
	StatusError  = "ERROR"
)

// ConditionReady is the condition every networking kind reports; its
// reason and message name what is wrong when it is False.
const ConditionReady = "Ready"

// NetworkSpec is an L2 segment.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.segmentationID) || (has(self.segmentationID) && self.segmentationID == oldSelf.segmentationID)",message="segmentationID cannot change"
// +kubebuilder:validation:XValidation:rule="self.providerType == oldSelf.providerType",message="providerType cannot change"
// +kubebuilder:validation:XValidation:rule="self.providerType == 'flat' || !has(self.physicalInterface)",message="physicalInterface is for flat networks only"
type NetworkSpec struct {
	// external makes the network usable by routers' external gateways and
	// floating IPs of every namespace (Neutron's router:external).
	// +optional
	External bool `json:"external,omitempty"`

	// providerType is vxlan (an overlay between nodes, the default) or flat
	// (the nodes' LAN through physicalInterface; for external networks).
	// +optional
	// +kubebuilder:default=vxlan
	// +kubebuilder:validation:Enum=vxlan;flat
	ProviderType string `json:"providerType,omitempty"`

	// physicalInterface is a flat network's host interface on every node;
	// unset means the interface that holds the node's IP.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9_.-]+$`
	PhysicalInterface string `json:"physicalInterface,omitempty"`

	// segmentationID is a vxlan network's VNI; unset, one is assigned.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16777215
	SegmentationID *int32 `json:"segmentationID,omitempty"`

	// mtu of the network's interfaces; unset: 1450 for vxlan, 1500 for flat.
	// +optional
	// +kubebuilder:validation:Minimum=576
	// +kubebuilder:validation:Maximum=9000
	MTU int32 `json:"mtu,omitempty"`
}

// NetworkStatus is what the network controller made of a Network.
type NetworkStatus struct {
	// segmentationID is the VNI in use.
	// +optional
	SegmentationID int32 `json:"segmentationID,omitempty"`
	// mtu in use.
	// +optional
	MTU int32 `json:"mtu,omitempty"`
	// subnets of the network, by name.
	// +optional
	Subnets []string `json:"subnets,omitempty"`
	// status is ACTIVE, BUILD or ERROR, as Neutron reports it.
	// +optional
	Status string `json:"status,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Network is an isolated L2 segment that pods and VMs join through Ports
// (Neutron's network). Two networks never see each other's traffic, even
// with the same CIDRs; a Router joins them to others.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=net,categories=strata
// +kubebuilder:printcolumn:name="TYPE",type=string,JSONPath=`.spec.providerType`
// +kubebuilder:printcolumn:name="SEGMENT",type=integer,JSONPath=`.status.segmentationID`
// +kubebuilder:printcolumn:name="EXTERNAL",type=boolean,JSONPath=`.spec.external`
// +kubebuilder:printcolumn:name="SUBNETS",type=string,JSONPath=`.status.subnets`
// +kubebuilder:printcolumn:name="STATUS",type=string,JSONPath=`.status.status`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type Network struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec NetworkSpec `json:"spec"`
	// +optional
	Status NetworkStatus `json:"status,omitempty"`
}

// NetworkList is a list of Networks.
//
// +kubebuilder:object:root=true
type NetworkList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Network `json:"items"`
}

// NetworkRef names a Network, in another namespace when Namespace is set
// (an external network).
type NetworkRef struct {
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FlavorSpec is the shape of a virtual machine: its virtual CPUs, memory and
// disks. It mirrors the fields of an OpenStack Nova flavor.
// As in Nova, a flavor's sizes are fixed once created (servers record the
// flavor they were built from); only description and extraSpecs change.
// +kubebuilder:validation:XValidation:rule="self.vcpus == oldSelf.vcpus && self.ramMiB == oldSelf.ramMiB && self.diskGiB == oldSelf.diskGiB && (has(self.ephemeralGiB) ? self.ephemeralGiB : 0) == (has(oldSelf.ephemeralGiB) ? oldSelf.ephemeralGiB : 0) && (has(self.swapMiB) ? self.swapMiB : 0) == (has(oldSelf.swapMiB) ? oldSelf.swapMiB : 0) && self.isPublic == oldSelf.isPublic",message="vcpus, ramMiB, diskGiB, ephemeralGiB, swapMiB and isPublic cannot change after creation; create a new flavor instead"
type FlavorSpec struct {
	// vcpus is the number of virtual CPUs.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	VCPUs int32 `json:"vcpus"`

	// ramMiB is the memory size in MiB.
	// +required
	// +kubebuilder:validation:Minimum=16
	RAMMiB int64 `json:"ramMiB"`

	// diskGiB is the size of the root disk in GiB. 0 means the root disk
	// takes the size of the image it is created from.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	DiskGiB int64 `json:"diskGiB,omitempty"`

	// ephemeralGiB is the size in GiB of a second, ephemeral disk. 0 or unset
	// means none.
	// +optional
	// +kubebuilder:validation:Minimum=0
	EphemeralGiB int64 `json:"ephemeralGiB,omitempty"`

	// swapMiB is the size in MiB of a swap disk. 0 or unset means none.
	// +optional
	// +kubebuilder:validation:Minimum=0
	SwapMiB int64 `json:"swapMiB,omitempty"`

	// A pointer, so that a Go client that leaves it unset gets the default
	// instead of sending false.

	// isPublic makes the flavor usable by every project. Defaults to true.
	// +optional
	// +kubebuilder:default=true
	IsPublic *bool `json:"isPublic,omitempty"`

	// description is free text shown to users.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	Description string `json:"description,omitempty"`

	// extraSpecs are key/value hints for scheduling and the hypervisor, as
	// Nova's flavor extra specs. Keys are 1 to 255 characters long, values
	// at most 255.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) >= 1 && size(k) <= 255)",message="extraSpecs keys must be 1 to 255 characters long"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) <= 255)",message="extraSpecs values must be at most 255 characters long"
	ExtraSpecs map[string]string `json:"extraSpecs,omitempty"`
}

// A flavor has no status: it is pure user intent that no controller
// observes or acts on by itself.

// Flavor is a named virtual machine shape. Flavors are global, as in
// OpenStack Nova, so the kind is cluster-scoped.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=flv,categories=strata
// +kubebuilder:printcolumn:name="VCPUS",type=integer,JSONPath=`.spec.vcpus`
// +kubebuilder:printcolumn:name="RAM (MiB)",type=integer,JSONPath=`.spec.ramMiB`
// +kubebuilder:printcolumn:name="DISK (GiB)",type=integer,JSONPath=`.spec.diskGiB`
// +kubebuilder:printcolumn:name="PUBLIC",type=boolean,JSONPath=`.spec.isPublic`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type Flavor struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the flavor's shape.
	// +required
	Spec FlavorSpec `json:"spec"`
}

// FlavorList is a list of Flavors.
//
// +kubebuilder:object:root=true
type FlavorList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Flavor `json:"items"`
}

package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VolumeSnapshotSpec names the volume to snapshot.
type VolumeSnapshotSpec struct {
	// volume is a Volume of the snapshot's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="volume is immutable"
	Volume string `json:"volume"`
}

// VolumeSnapshotPhase is where a snapshot is in its life.
type VolumeSnapshotPhase string

// The phases of a VolumeSnapshot.
const (
	SnapshotCreating  VolumeSnapshotPhase = "Creating"
	SnapshotAvailable VolumeSnapshotPhase = "Available"
	SnapshotError     VolumeSnapshotPhase = "Error"
	SnapshotDeleting  VolumeSnapshotPhase = "Deleting"
)

// VolumeSnapshotStatus is written by the node agent holding the volume.
type VolumeSnapshotStatus struct {
	// phase is Creating, Available, Error or Deleting.
	// +optional
	Phase VolumeSnapshotPhase `json:"phase,omitempty"`
	// node holds the snapshot (the volume's node).
	// +optional
	Node string `json:"node,omitempty"`
	// path is the snapshot's file on the node.
	// +optional
	Path string `json:"path,omitempty"`
	// size is the volume's size when the snapshot was taken.
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`
	// volumeMode is the mode of the volume it was taken of.
	// +optional
	VolumeMode VolumeMode `json:"volumeMode,omitempty"`
	// readyToUse says a volume can be made from it.
	// +optional
	ReadyToUse bool `json:"readyToUse,omitempty"`
	// message says what went wrong in phase Error.
	// +optional
	Message string `json:"message,omitempty"`
}

// VolumeSnapshot is a point-in-time copy of a Volume, kept on the
// volume's node, as a Cinder snapshot. New Volumes can start from it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=volsnap,categories=strata
// +kubebuilder:printcolumn:name="VOLUME",type=string,JSONPath=`.spec.volume`
// +kubebuilder:printcolumn:name="PHASE",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="SIZE",type=string,JSONPath=`.status.size`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type VolumeSnapshot struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              VolumeSnapshotSpec `json:"spec"`
	// +optional
	Status VolumeSnapshotStatus `json:"status,omitempty"`
}

// VolumeSnapshotList is a list of VolumeSnapshots.
//
// +kubebuilder:object:root=true
type VolumeSnapshotList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VolumeSnapshot `json:"items"`
}

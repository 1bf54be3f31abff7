package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VolumeMode is how a volume is consumed: as a block device or as a
// mounted filesystem.
// +kubebuilder:validation:Enum=Block;Filesystem
type VolumeMode string

// The volume modes, as Kubernetes' PersistentVolumeMode.
const (
	VolumeBlock      VolumeMode = "Block"
	VolumeFilesystem VolumeMode = "Filesystem"
)

// VolumeFormat is the on-disk format of a volume's file.
// +kubebuilder:validation:Enum=raw;qcow2
type VolumeFormat string

// The formats of the file backend. Only raw volumes can be published to
// pods (through a loop device); qcow2 ones are for VMs.
const (
	FormatRaw   VolumeFormat = "raw"
	FormatQCOW2 VolumeFormat = "qcow2"
)

// VolumeSource is what a new volume's content is copied from; at most one
// field is set. Without a source, a volume starts empty.
// +kubebuilder:validation:XValidation:rule="[has(self.snapshot), has(self.image), has(self.volume)].filter(x, x).size() <= 1",message="at most one of snapshot, image and volume"
type VolumeSource struct {
	// snapshot is a VolumeSnapshot of the volume's namespace.
	// +optional
	Snapshot string `json:"snapshot,omitempty"`
	// image is an Image of the volume's namespace.
	// +optional
	Image string `json:"image,omitempty"`
	// volume is another Volume of the namespace (a clone).
	// +optional
	Volume string `json:"volume,omitempty"`
}

// VolumeSpec is what a user (or the PersistentVolumeClaim provisioner)
// asks for.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.node) || size(oldSelf.node) == 0 || (has(self.node) && self.node == oldSelf.node)",message="node cannot change once set"
// +kubebuilder:validation:XValidation:rule="(has(self.source) == has(oldSelf.source)) && (!has(self.source) || self.source == oldSelf.source)",message="source is immutable"
type VolumeSpec struct {
	// size is the volume's virtual size. It may grow, never shrink.
	Size resource.Quantity `json:"size"`
	// volumeMode says whether a filesystem is made on the volume
	// (Filesystem: ext4, made by the node) or not (Block, the default).
	// +optional
	// +kubebuilder:default=Block
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="volumeMode is immutable"
	VolumeMode VolumeMode `json:"volumeMode,omitempty"`
	// format is the file format on the node: raw (default) or qcow2.
	// +optional
	// +kubebuilder:default=raw
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="format is immutable"
	Format VolumeFormat `json:"format,omitempty"`
	// node is the node that holds the volume. Left empty, Strata picks
	// one (the node of the source snapshot or volume, if any). Fixed once set.
	// +optional
	Node string `json:"node,omitempty"`
	// source is where the volume's content comes from.
	// +optional
	Source *VolumeSource `json:"source,omitempty"`
}

// VolumePhase is where a volume is in its life, as Cinder's volume status.
type VolumePhase string

// The phases of a Volume.
const (
	VolumeCreating  VolumePhase = "Creating"
	VolumeAvailable VolumePhase = "Available"
	VolumeInUse     VolumePhase = "In-use"
	VolumeError     VolumePhase = "Error"
	VolumeDeleting  VolumePhase = "Deleting"
)

// VolumeAttachment is one user of a volume.
type VolumeAttachment struct {
	// kind is what uses the volume: Pod or VirtualMachine.
	Kind string `json:"kind"`
	// name is the user's name, in the volume's namespace.
	Name string `json:"name"`
	// node is where the user runs.
	// +optional
	Node string `json:"node,omitempty"`
	// device is the device the guest sees (VMs), e.g. /dev/vdb.
	// +optional
	Device string `json:"device,omitempty"`
}

// VolumeStatus is written by the node agent that holds the volume
// (phase, path, sizes) and by the server's volume controllers
// (attachments).
type VolumeStatus struct {
	// phase is Creating, Available, In-use, Error or Deleting.
	// +optional
	Phase VolumePhase `json:"phase,omitempty"`
	// node is the node whose agent realised the volume.
	// +optional
	Node string `json:"node,omitempty"`
	// path is the volume's file on the node.
	// +optional
	Path string `json:"path,omitempty"`
	// devicePath is a stable path on the node to the volume's block
	// device (a link to the loop device of a raw volume); what a local
	// PersistentVolume points at.
	// +optional
	DevicePath string `json:"devicePath,omitempty"`
	// format is the file's format.
	// +optional
	Format VolumeFormat `json:"format,omitempty"`
	// size is the size the volume has on the node now; it trails
	// spec.size while an expansion is under way.
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`
	// allocatedBytes is what the (thin) file takes on disk.
	// +optional
	AllocatedBytes int64 `json:"allocatedBytes,omitempty"`
	// filesystemResizePending says the file grew but its filesystem did
	// not yet: that happens when no pod has it mounted.
	// +optional
	FilesystemResizePending bool `json:"filesystemResizePending,omitempty"`
	// attachments are the pods and VMs using the volume.
	// +optional
	// +listType=atomic
	Attachments []VolumeAttachment `json:"attachments,omitempty"`
	// message says what went wrong (phase Error) or what is awaited.
	// +optional
	Message string `json:"message,omitempty"`
	// observedGeneration is the generation of the spec the node last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// Volume is a block volume held by one node: a thin file under the node
// agent's data dir, as a Cinder volume. A PersistentVolumeClaim of the
// `strata` StorageClass is backed by a Volume named as its
// PersistentVolume (pvc-<uid>) in the claim's namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vol,categories=strata
// +kubebuilder:printcolumn:name="PHASE",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="SIZE",type=string,JSONPath=`.spec.size`
// +kubebuilder:printcolumn:name="MODE",type=string,JSONPath=`.spec.volumeMode`
// +kubebuilder:printcolumn:name="NODE",type=string,JSONPath=`.status.node`
// +kubebuilder:printcolumn:name="MESSAGE",type=string,JSONPath=`.status.message`,priority=1
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type Volume struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              VolumeSpec `json:"spec"`
	// +optional
	Status VolumeStatus `json:"status,omitempty"`
}

// VolumeList is a list of Volumes.
//
// +kubebuilder:object:root=true
type VolumeList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Volume `json:"items"`
}

// Labels, annotations and finalizers of the volume kinds.
const (
	// NodeLabel carries spec.node on Volumes and VolumeSnapshots, so each
	// node agent watches only its own.
	NodeLabel = "storage.strata.io/node"
	// BackendFinalizer holds a Volume or VolumeSnapshot until its node
	// removed its file.
	BackendFinalizer = "storage.strata.io/backend"
	// ClaimAnnotation names the PersistentVolumeClaim (namespace/name)
	// that a Volume backs.
	ClaimAnnotation = "storage.strata.io/claim"
	// VolumeAnnotation names, on a PersistentVolume, the Volume
	// (namespace/name) behind it.
	VolumeAnnotation = "storage.strata.io/volume"
	// Provisioner is the StorageClass provisioner of Strata's volumes.
	Provisioner = "storage.strata.io/volume"
	// DefaultStorageClass is the StorageClass Strata creates, the default.
	DefaultStorageClass = "strata"
)

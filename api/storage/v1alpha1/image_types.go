package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ImageSpec is where an image's bytes come from.
type ImageSpec struct {
	// description is free text shown to users.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	Description string `json:"description,omitempty"`

	// minDiskGiB is the smallest root disk a VM may boot this image on.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MinDiskGiB int64 `json:"minDiskGiB,omitempty"`

	// source says where Strata fetches the image's bytes from. Without a
	// url, the bytes are uploaded (`strata image upload`).
	// +optional
	Source *ImageSource `json:"source,omitempty"`
}

// ImageSource is where an image's bytes come from and what they must hash to.
type ImageSource struct {
	// url is an http(s) URL the server imports the image from.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://`
	URL string `json:"url,omitempty"`

	// checksum is the SHA-256 the image's bytes must have, as
	// sha256:<64 hex digits>; an import or upload with other bytes fails.
	// +optional
	// +kubebuilder:validation:Pattern=`^sha256:[0-9a-f]{64}$`
	Checksum string `json:"checksum,omitempty"`
}

// ImagePhase is where an image is in its life, as Glance's image status.
type ImagePhase string

// The phases of an Image.
const (
	ImageQueued ImagePhase = "Queued" // no bytes yet
	ImageSaving ImagePhase = "Saving" // an upload is under way
	// ImageImporting: the server is fetching spec.source.url.
	ImageImporting ImagePhase = "Importing"
	ImageActive    ImagePhase = "Active" // usable
	ImageError     ImagePhase = "Error"
)

// ImageStatus describes the stored bytes. Strata sets it when an upload
// completes; the format is detected from the bytes, never taken from a
// file name.
type ImageStatus struct {
	// phase is Queued, Saving, Importing, Active or Error.
	// +optional
	Phase ImagePhase `json:"phase,omitempty"`

	// format is the disk format detected from the content: raw, qcow2, vmdk, vhdx, vdi or iso.
	// +optional
	Format string `json:"format,omitempty"`

	// sizeBytes is the size of the stored file.
	// +optional
	SizeBytes int64 `json:"sizeBytes,omitempty"`

	// virtualSizeBytes is the size of the disk the image describes (for
	// qcow2, from its header; for raw, the file size).
	// +optional
	VirtualSizeBytes int64 `json:"virtualSizeBytes,omitempty"`

	// checksum is the file's SHA-256, hex ("os_hash_value" in Glance).
	// +optional
	Checksum string `json:"checksum,omitempty"`

	// reference is the OCI artifact holding the bytes in Strata's
	// registry, by digest; nodes pull and cache it like any image.
	// +optional
	Reference string `json:"reference,omitempty"`

	// message says what went wrong in phase Error.
	// +optional
	Message string `json:"message,omitempty"`

	// progress is how much of an import is done, as a percentage ("37%"),
	// or the bytes fetched when the source does not say its size.
	// +optional
	Progress string `json:"progress,omitempty"`

	// importedBytes is how many bytes an import has fetched so far.
	// +optional
	ImportedBytes int64 `json:"importedBytes,omitempty"`

	// observedGeneration is the generation of the spec that the last
	// finished import (Active or Error) was of.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// Image is a virtual machine disk image (qcow2 or raw), the base of VM root
// disks, as a Glance image. Upload one with `strata image upload NAME FILE`,
// or have the server import it from spec.source.url
// (`strata image upload NAME --url URL`).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vmimage;vmimages,categories=strata
// +kubebuilder:printcolumn:name="PHASE",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="FORMAT",type=string,JSONPath=`.status.format`
// +kubebuilder:printcolumn:name="SIZE",type=integer,JSONPath=`.status.sizeBytes`
// +kubebuilder:printcolumn:name="PROGRESS",type=string,JSONPath=`.status.progress`,priority=1
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type Image struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec ImageSpec `json:"spec,omitempty"`

	// +optional
	Status ImageStatus `json:"status,omitempty"`
}

// ImageList is a list of Images.
//
// +kubebuilder:object:root=true
type ImageList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Image `json:"items"`
}

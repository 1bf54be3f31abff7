// Package v1alpha1 holds the v1alpha1 API of the storage.strata.io group:
// Image, a virtual machine disk image; Volume, a block volume held by a
// node; VolumeSnapshot, a copy of a Volume.
//
// +kubebuilder:object:generate=true
// +groupName=storage.strata.io
package v1alpha1

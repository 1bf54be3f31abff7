// Package v1alpha1 holds the v1alpha1 API of the compute.strata.io group:
// the Flavor kind, Strata's equivalent of an OpenStack Nova flavor.
//
// +kubebuilder:object:generate=true
// +groupName=compute.strata.io
package v1alpha1

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ProjectSpec is a Keystone project.
// +kubebuilder:validation:XValidation:rule="self.domain == oldSelf.domain",message="domain cannot change"
type ProjectSpec struct {
	// description is free text.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`

	// enabled false refuses tokens scoped to the project.
	// +optional
	// +kubebuilder:default=true
	Enabled *bool `json:"enabled,omitempty"`

	// domain is the project's domain; only "default" exists.
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:Enum=default
	Domain string `json:"domain,omitempty"`
}

// ProjectStatus is what the controller made of the project.
type ProjectStatus struct {
	// namespace is the project's namespace (the project's name), once
	// created.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// Project is a Keystone project and the Kubernetes namespace of the same
// name: they are created and deleted together.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=strata
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63 && !self.metadata.name.contains('.')",message="a project's name is its namespace's: a DNS label, at most 63 characters and no dots"
// +kubebuilder:printcolumn:name="ENABLED",type=boolean,JSONPath=`.spec.enabled`
// +kubebuilder:printcolumn:name="NAMESPACE",type=string,JSONPath=`.status.namespace`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type Project struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec ProjectSpec `json:"spec,omitempty"`

	// +optional
	Status ProjectStatus `json:"status,omitempty"`
}

// IsEnabled reports spec.enabled, true when unset.
func (p *Project) IsEnabled() bool { return p.Spec.Enabled == nil || *p.Spec.Enabled }

// ProjectList is a list of Projects.
//
// +kubebuilder:object:root=true
type ProjectList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Project `json:"items"`
}

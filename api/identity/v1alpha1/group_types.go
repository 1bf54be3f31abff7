package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GroupSpec is a Keystone group: a set of users that role assignments can
// name at once.
// +kubebuilder:validation:XValidation:rule="self.domain == oldSelf.domain",message="domain cannot change"
type GroupSpec struct {
	// description is free text.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`
	// domain is the group's domain; only "default" exists.
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:Enum=default
	Domain string `json:"domain,omitempty"`
	// users names the group's members (Users). A member's Keystone token
	// carries the Kubernetes group KubernetesGroupPrefix+name, which the
	// RoleBindings of the group's RoleAssignments name.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10000
	// +kubebuilder:validation:items:MaxLength=253
	Users []string `json:"users,omitempty"`
}

// Group is a Keystone group.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=strata
// +kubebuilder:printcolumn:name="DESCRIPTION",type=string,JSONPath=`.spec.description`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type Group struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +optional
	Spec GroupSpec `json:"spec,omitempty"`
}

// HasMember reports whether user is in the group.
func (g *Group) HasMember(user string) bool {
	for _, u := range g.Spec.Users {
		if u == user {
			return true
		}
	}
	return false
}

// GroupList is a list of Groups.
//
// +kubebuilder:object:root=true
type GroupList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Group `json:"items"`
}

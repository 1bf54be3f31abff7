package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RoleSpec is a Keystone role. admin, member and reader exist by default.
type RoleSpec struct {
	// description is free text.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`
}

// Role is a Keystone role; assigned on a project, it binds ClusterRole
// ClusterRoleFor(name) in the project's namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=strata
// +kubebuilder:printcolumn:name="DESCRIPTION",type=string,JSONPath=`.spec.description`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type Role struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec RoleSpec `json:"spec,omitempty"`
}

// RoleList is a list of Roles.
//
// +kubebuilder:object:root=true
type RoleList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Role `json:"items"`
}

// RoleAssignmentSpec gives a user or a group a role on a project.
// +kubebuilder:validation:XValidation:rule="has(self.user) != has(self.group)",message="exactly one of user and group"
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a role assignment cannot change; delete it and create another"
type RoleAssignmentSpec struct {
	// user names a User.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	User string `json:"user,omitempty"`

	// group names a group (Kubernetes group keystone-group:NAME).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group,omitempty"`

	// role names a Role.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Role string `json:"role"`

	// project names a Project.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Project string `json:"project"`
}

// RoleAssignment is a Keystone role assignment on a project; the controller
// keeps a RoleBinding of it in the project's namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=strata
// +kubebuilder:printcolumn:name="USER",type=string,JSONPath=`.spec.user`
// +kubebuilder:printcolumn:name="GROUP",type=string,JSONPath=`.spec.group`
// +kubebuilder:printcolumn:name="ROLE",type=string,JSONPath=`.spec.role`
// +kubebuilder:printcolumn:name="PROJECT",type=string,JSONPath=`.spec.project`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type RoleAssignment struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec RoleAssignmentSpec `json:"spec"`
}

// RoleAssignmentList is a list of RoleAssignments.
//
// +kubebuilder:object:root=true
type RoleAssignmentList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []RoleAssignment `json:"items"`
}

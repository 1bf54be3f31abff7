package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// UserSpec is a Keystone user. Its password is not here: its bcrypt hash is
// in Secret PasswordSecretPrefix+name of namespace strata-identity.
// +kubebuilder:validation:XValidation:rule="self.domain == oldSelf.domain",message="domain cannot change"
type UserSpec struct {
	// domain is the user's domain; only "default" exists.
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:Enum=default
	Domain string `json:"domain,omitempty"`

	// enabled false refuses the user's tokens.
	// +optional
	// +kubebuilder:default=true
	Enabled *bool `json:"enabled,omitempty"`

	// email is the user's address.
	// +optional
	// +kubebuilder:validation:MaxLength=254
	Email string `json:"email,omitempty"`

	// description is free text.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`

	// defaultProject names the Project a token is scoped to when the
	// request names none.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	DefaultProject string `json:"defaultProject,omitempty"`
}

// User is a Keystone user.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=strata
// +kubebuilder:printcolumn:name="ENABLED",type=boolean,JSONPath=`.spec.enabled`
// +kubebuilder:printcolumn:name="EMAIL",type=string,JSONPath=`.spec.email`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type User struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec UserSpec `json:"spec,omitempty"`
}

// IsEnabled reports spec.enabled, true when unset.
func (u *User) IsEnabled() bool { return u.Spec.Enabled == nil || *u.Spec.Enabled }

// UserList is a list of Users.
//
// +kubebuilder:object:root=true
type UserList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []User `json:"items"`
}

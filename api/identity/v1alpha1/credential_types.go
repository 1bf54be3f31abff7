package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ApplicationCredentialSpec lets a program act as a user on one project
// with some of the user's roles there, by id (the object's name) and a
// secret. The secret is not here: its bcrypt hash is in Secret
// ApplicationCredentialSecretPrefix+name of namespace strata-identity.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="an application credential cannot change; delete it and create another"
type ApplicationCredentialSpec struct {
	// user names the User the credential acts as.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	User string `json:"user"`
	// name is the credential's Keystone name, unique among the user's.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	Name string `json:"name"`
	// description is free text.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`
	// project names the Project its tokens are scoped to.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Project string `json:"project"`
	// roles are the roles its tokens carry; the user must hold every one
	// of them on the project, or the credential stops working.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	Roles []string `json:"roles"`
	// expiresAt ends the credential; unset: it does not expire.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// unrestricted lets its tokens create and delete application
	// credentials and EC2 credentials.
	// +optional
	Unrestricted bool `json:"unrestricted,omitempty"`
}

// ApplicationCredential is a Keystone application credential; its name is
// its Keystone id.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=strata,shortName=appcred
// +kubebuilder:printcolumn:name="USER",type=string,JSONPath=`.spec.user`
// +kubebuilder:printcolumn:name="NAME",type=string,JSONPath=`.spec.name`
// +kubebuilder:printcolumn:name="PROJECT",type=string,JSONPath=`.spec.project`
// +kubebuilder:printcolumn:name="EXPIRES",type=date,JSONPath=`.spec.expiresAt`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type ApplicationCredential struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec ApplicationCredentialSpec `json:"spec"`
}

// ApplicationCredentialList is a list of ApplicationCredentials.
//
// +kubebuilder:object:root=true
type ApplicationCredentialList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ApplicationCredential `json:"items"`
}

// EC2CredentialSpec is an EC2-style credential (`openstack ec2 credentials
// create`), what S3 clients sign requests with: the object's name is the
// access key. The secret key is not here (it must be recoverable to verify
// signatures, so it is not hashed): it is in Secret EC2SecretPrefix+name of
// namespace strata-identity, under key EC2SecretKey.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="an EC2 credential cannot change; delete it and create another"
type EC2CredentialSpec struct {
	// user names the User the credential acts as.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	User string `json:"user"`
	// project names the Project it acts on, with the user's roles there.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Project string `json:"project"`
}

// EC2Credential is a Keystone EC2 credential; its name is its access key.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=strata
// +kubebuilder:printcolumn:name="USER",type=string,JSONPath=`.spec.user`
// +kubebuilder:printcolumn:name="PROJECT",type=string,JSONPath=`.spec.project`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type EC2Credential struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec EC2CredentialSpec `json:"spec"`
}

// EC2CredentialList is a list of EC2Credentials.
//
// +kubebuilder:object:root=true
type EC2CredentialList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EC2Credential `json:"items"`
}

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KeyPairSpec holds an SSH public key that VMs of the namespace can be given.
// +kubebuilder:validation:XValidation:rule="self.publicKey == oldSelf.publicKey",message="publicKey cannot change; create another key pair"
type KeyPairSpec struct {
	// publicKey is an OpenSSH public key ("ssh-ed25519 AAAA... comment").
	// +required
	// +kubebuilder:validation:MinLength=16
	// +kubebuilder:validation:MaxLength=16384
	// +kubebuilder:validation:Pattern=`^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/=]+( .*)?$`
	PublicKey string `json:"publicKey"`
}

// KeyPairStatus is what Strata derived from the key.
type KeyPairStatus struct {
	// fingerprint is the key's MD5 fingerprint as OpenStack prints it
	// (aa:bb:...).
	// +optional
	Fingerprint string `json:"fingerprint,omitempty"`

	// type is "ssh".
	// +optional
	Type string `json:"type,omitempty"`
}

// KeyPair is an SSH public key, as a Nova key pair. `strata keypair create
// NAME` generates one and prints the private key once; Strata keeps only
// the public half.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=kp,categories=strata
// +kubebuilder:printcolumn:name="FINGERPRINT",type=string,JSONPath=`.status.fingerprint`
// +kubebuilder:printcolumn:name="TYPE",type=string,JSONPath=`.status.type`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type KeyPair struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec KeyPairSpec `json:"spec"`

	// +optional
	Status KeyPairStatus `json:"status,omitempty"`
}

// KeyPairList is a list of KeyPairs.
//
// +kubebuilder:object:root=true
type KeyPairList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []KeyPair `json:"items"`
}

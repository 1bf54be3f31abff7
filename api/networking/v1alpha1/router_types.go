package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ExternalGateway joins a Router to an external Network.
type ExternalGateway struct {
	// network is an external Network (spec.external), usually of another
	// namespace.
	// +required
	Network NetworkRef `json:"network"`
	// enableSNAT translates the router's subnets' outbound traffic to its
	// external address. Defaults to true.
	// +optional
	// +kubebuilder:default=true
	EnableSNAT *bool `json:"enableSNAT,omitempty"`
	// externalIP asks for this address on the external network; unset:
	// the next free one.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address"
	ExternalIP string `json:"externalIP,omitempty"`
}

// RouterInterface attaches a Router to a Subnet of its namespace, on the
// subnet's gateway address.
type RouterInterface struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Subnet string `json:"subnet"`
}

// RouterSpec is a Router's gateway and interfaces.
type RouterSpec struct {
	// externalGateway gives the router's subnets a way out (SNAT) and
	// floating IPs a way in.
	// +optional
	ExternalGateway *ExternalGateway `json:"externalGateway,omitempty"`
	// interfaces on subnets of this namespace; their CIDRs must not overlap.
	// +optional
	// +listType=map
	// +listMapKey=subnet
	// +kubebuilder:validation:MaxItems=64
	Interfaces []RouterInterface `json:"interfaces,omitempty"`
}

// RouterInterfaceStatus is one wired interface.
type RouterInterfaceStatus struct {
	Subnet    string `json:"subnet"`
	IPAddress string `json:"ipAddress"`
	// +optional
	MACAddress string `json:"macAddress,omitempty"`
}

// RouterStatus is where the router runs and its addresses.
type RouterStatus struct {
	// externalIP is the router's address on its external network.
	// +optional
	ExternalIP string `json:"externalIP,omitempty"`
	// nodeName is the node whose network namespace routes for it.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Interfaces []RouterInterfaceStatus `json:"interfaces,omitempty"`
	// +optional
	Status string `json:"status,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Router routes between its subnets and, through its external gateway,
// to the outside with SNAT; floating IPs reach instances through it
// (Neutron's router).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rt,categories=strata
// +kubebuilder:printcolumn:name="EXTERNAL NETWORK",type=string,JSONPath=`.spec.externalGateway.network.name`
// +kubebuilder:printcolumn:name="EXTERNAL IP",type=string,JSONPath=`.status.externalIP`
// +kubebuilder:printcolumn:name="NODE",type=string,JSONPath=`.status.nodeName`
// +kubebuilder:printcolumn:name="STATUS",type=string,JSONPath=`.status.status`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type Router struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec RouterSpec `json:"spec"`
	// +optional
	Status RouterStatus `json:"status,omitempty"`
}

// RouterList is a list of Routers.
//
// +kubebuilder:object:root=true
type RouterList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Router `json:"items"`
}

// FloatingIPSpec is a public address and the Port it forwards to.
// +kubebuilder:validation:XValidation:rule="self.network == oldSelf.network",message="network cannot change"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.floatingIPAddress) || (has(self.floatingIPAddress) && self.floatingIPAddress == oldSelf.floatingIPAddress)",message="floatingIPAddress cannot change"
type FloatingIPSpec struct {
	// network is the external Network the address comes from.
	// +required
	Network NetworkRef `json:"network"`
	// floatingIPAddress asks for this address; unset: the next free one.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address"
	FloatingIPAddress string `json:"floatingIPAddress,omitempty"`
	// port of this namespace the address forwards to; unset: unassociated.
	// Changing it moves the address.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Port string `json:"port,omitempty"`
	// fixedIPAddress of the port to forward to; unset: its first.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IP address"
	FixedIPAddress string `json:"fixedIPAddress,omitempty"`
}

// FloatingIPStatus is the allocated address and where it forwards.
type FloatingIPStatus struct {
	// +optional
	FloatingIPAddress string `json:"floatingIPAddress,omitempty"`
	// +optional
	FixedIPAddress string `json:"fixedIPAddress,omitempty"`
	// router that forwards the address (the one joining the port's subnet
	// to the external network).
	// +optional
	Router string `json:"router,omitempty"`
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// status: DOWN unassociated, ACTIVE forwarding, ERROR (see conditions).
	// +optional
	Status string `json:"status,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// FloatingIP is an address of an external network that forwards to a
// Port's fixed IP through the Router of the port's subnet (Neutron's
// floating IP). It works for pods and VMs alike.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fip,categories=strata
// +kubebuilder:printcolumn:name="FLOATING IP",type=string,JSONPath=`.status.floatingIPAddress`
// +kubebuilder:printcolumn:name="FIXED IP",type=string,JSONPath=`.status.fixedIPAddress`
// +kubebuilder:printcolumn:name="PORT",type=string,JSONPath=`.spec.port`
// +kubebuilder:printcolumn:name="ROUTER",type=string,JSONPath=`.status.router`
// +kubebuilder:printcolumn:name="STATUS",type=string,JSONPath=`.status.status`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type FloatingIP struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec FloatingIPSpec `json:"spec"`
	// +optional
	Status FloatingIPStatus `json:"status,omitempty"`
}

// FloatingIPList is a list of FloatingIPs.
//
// +kubebuilder:object:root=true
type FloatingIPList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []FloatingIP `json:"items"`
}

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FixedIP is an address of a Port on one of its network's subnets.
type FixedIP struct {
	// subnet of the address; unset: the network's first subnet (or the one
	// containing ipAddress).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Subnet string `json:"subnet,omitempty"`
	// ipAddress asks for this address; unset: the next free one.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address"
	IPAddress string `json:"ipAddress,omitempty"`
}

// Device kinds a Port is bound to.
const (
	DeviceVirtualMachine  = "VirtualMachine"
	DevicePod             = "Pod"
	DeviceRouterInterface = "RouterInterface"
)

// PortDevice is what uses a Port.
type PortDevice struct {
	// kind is VirtualMachine, Pod or RouterInterface.
	// +required
	// +kubebuilder:validation:Enum=VirtualMachine;Pod;RouterInterface
	Kind string `json:"kind"`
	// name of the object of that kind in the Port's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// PortSpec is one interface's place on a Network.
// +kubebuilder:validation:XValidation:rule="self.network == oldSelf.network",message="network cannot change"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.macAddress) || (has(self.macAddress) && self.macAddress == oldSelf.macAddress)",message="macAddress cannot change"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.fixedIPs) || (has(self.fixedIPs) && self.fixedIPs == oldSelf.fixedIPs)",message="fixedIPs cannot change; create a new port"
type PortSpec struct {
	// network is the Network of this namespace the port is on.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Network string `json:"network"`

	// fixedIPs the port asks for; unset: one address from the network's
	// first subnet.
	// +optional
	// +kubebuilder:validation:MaxItems=1
	FixedIPs []FixedIP `json:"fixedIPs,omitempty"`

	// macAddress asks for this MAC; unset: one is generated.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`
	MACAddress string `json:"macAddress,omitempty"`

	// securityGroups of this namespace that filter the port's traffic;
	// unset: the namespace's "default" group. Ignored when
	// portSecurityEnabled is false.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	SecurityGroups []string `json:"securityGroups,omitempty"`

	// portSecurityEnabled filters the port's traffic through its security
	// groups. Defaults to true.
	// +optional
	// +kubebuilder:default=true
	PortSecurityEnabled *bool `json:"portSecurityEnabled,omitempty"`

	// device is what uses the port; set by Strata for the ports it makes.
	// +optional
	Device *PortDevice `json:"device,omitempty"`
}

// PortStatus is the port's allocated addresses and where it is bound.
type PortStatus struct {
	// fixedIPs allocated to the port; they stay with it until it is deleted.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	FixedIPs []FixedIP `json:"fixedIPs,omitempty"`
	// macAddress in use.
	// +optional
	MACAddress string `json:"macAddress,omitempty"`
	// nodeName is the node the port's interface is on (binding:host_id).
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// status: DOWN until an interface uses the port, then ACTIVE; ERROR
	// when it cannot be allocated (see conditions).
	// +optional
	Status string `json:"status,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Port is one interface's address, MAC and security groups on a Network
// (Neutron's port). Its IP and MAC stay with it: a VM keeps them across
// restarts and migrations.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=strata
// +kubebuilder:printcolumn:name="NETWORK",type=string,JSONPath=`.spec.network`
// +kubebuilder:printcolumn:name="IP",type=string,JSONPath=`.status.fixedIPs[0].ipAddress`
// +kubebuilder:printcolumn:name="MAC",type=string,JSONPath=`.status.macAddress`
// +kubebuilder:printcolumn:name="DEVICE",type=string,JSONPath=`.spec.device.name`
// +kubebuilder:printcolumn:name="NODE",type=string,JSONPath=`.status.nodeName`
// +kubebuilder:printcolumn:name="STATUS",type=string,JSONPath=`.status.status`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type Port struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec PortSpec `json:"spec"`
	// +optional
	Status PortStatus `json:"status,omitempty"`
}

// PortList is a list of Ports.
//
// +kubebuilder:object:root=true
type PortList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Port `json:"items"`
}

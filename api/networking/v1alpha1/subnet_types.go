package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AllocationPool is an inclusive range of addresses that Ports get theirs from.
// +kubebuilder:validation:XValidation:rule="ip(self.start).family() == 4 && ip(self.end).family() == 4",message="allocation pools are IPv4 ranges"
type AllocationPool struct {
	// +required
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IP address"
	// +kubebuilder:validation:MaxLength=45
	Start string `json:"start"`
	// +required
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IP address"
	// +kubebuilder:validation:MaxLength=45
	End string `json:"end"`
}

// HostRoute is a route that a subnet's DHCP hands its instances.
type HostRoute struct {
	// +required
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="must be a CIDR such as 10.1.0.0/16"
	// +kubebuilder:validation:MaxLength=49
	Destination string `json:"destination"`
	// +required
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IP address"
	// +kubebuilder:validation:MaxLength=45
	NextHop string `json:"nexthop"`
}

// SubnetSpec is an address range on a Network.
// +kubebuilder:validation:XValidation:rule="self.network == oldSelf.network && self.cidr == oldSelf.cidr",message="network and cidr cannot change; create a new subnet"
// +kubebuilder:validation:XValidation:rule="!has(self.gatewayIP) || cidr(self.cidr).containsIP(self.gatewayIP)",message="gatewayIP must be inside cidr"
// +kubebuilder:validation:XValidation:rule="!has(self.allocationPools) || self.allocationPools.all(p, cidr(self.cidr).containsIP(p.start) && cidr(self.cidr).containsIP(p.end))",message="allocationPools must be inside cidr"
// +kubebuilder:validation:XValidation:rule="!(has(self.gatewayIP) && has(self.noGateway) && self.noGateway)",message="gatewayIP and noGateway exclude each other"
type SubnetSpec struct {
	// network is the Network of this namespace the subnet belongs to.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Network string `json:"network"`

	// cidr is the subnet's IPv4 range, such as 10.0.0.0/24.
	// +required
	// +kubebuilder:validation:MaxLength=18
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4",message="must be an IPv4 CIDR such as 10.0.0.0/24"
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).prefixLength() <= 29",message="must be /29 or larger"
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).masked() == cidr(self)",message="must be a network address, such as 10.0.0.0/24 rather than 10.0.0.1/24"
	CIDR string `json:"cidr"`

	// gatewayIP is the router's address on the subnet; unset: the first
	// address of cidr.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IP address"
	GatewayIP string `json:"gatewayIP,omitempty"`

	// noGateway leaves the subnet without a gateway (an isolated segment).
	// +optional
	NoGateway bool `json:"noGateway,omitempty"`

	// allocationPools bound the addresses Ports get; unset: all of cidr
	// but its network, broadcast and gateway addresses.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	AllocationPools []AllocationPool `json:"allocationPools,omitempty"`

	// dnsNameservers that DHCP hands instances; unset: the cluster DNS.
	// +optional
	// +kubebuilder:validation:MaxItems=5
	// +kubebuilder:validation:items:XValidation:rule="isIP(self)",message="must be an IP address"
	// +kubebuilder:validation:items:MaxLength=45
	DNSNameservers []string `json:"dnsNameservers,omitempty"`

	// hostRoutes that DHCP hands instances.
	// +optional
	// +kubebuilder:validation:MaxItems=20
	HostRoutes []HostRoute `json:"hostRoutes,omitempty"`

	// enableDHCP serves addresses to VMs by DHCP. Defaults to true.
	// +optional
	// +kubebuilder:default=true
	EnableDHCP *bool `json:"enableDHCP,omitempty"`
}

// SubnetStatus is what the network controller made of a Subnet.
type SubnetStatus struct {
	// gatewayIP in use; empty with noGateway.
	// +optional
	GatewayIP string `json:"gatewayIP,omitempty"`
	// allocationPools in use.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	AllocationPools []AllocationPool `json:"allocationPools,omitempty"`
	// allocations is the subnet's address bitmap (one bit per address of
	// cidr, base64), written with optimistic concurrency: an address is
	// taken once its bit is set in a write the API server accepted.
	// +optional
	Allocations []byte `json:"allocations,omitempty"`
	// used and available count addresses of the allocation pools.
	// +optional
	Used int32 `json:"used,omitempty"`
	// +optional
	Available int32 `json:"available,omitempty"`
	// +optional
	Status string `json:"status,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Subnet is an IPv4 range on a Network with its gateway, pools, DNS
// servers and routes (Neutron's subnet).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sn,categories=strata
// +kubebuilder:printcolumn:name="NETWORK",type=string,JSONPath=`.spec.network`
// +kubebuilder:printcolumn:name="CIDR",type=string,JSONPath=`.spec.cidr`
// +kubebuilder:printcolumn:name="GATEWAY",type=string,JSONPath=`.status.gatewayIP`
// +kubebuilder:printcolumn:name="USED",type=integer,JSONPath=`.status.used`
// +kubebuilder:printcolumn:name="AVAILABLE",type=integer,JSONPath=`.status.available`
// +kubebuilder:printcolumn:name="STATUS",type=string,JSONPath=`.status.status`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type Subnet struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec SubnetSpec `json:"spec"`
	// +optional
	Status SubnetStatus `json:"status,omitempty"`
}

// SubnetList is a list of Subnets.
//
// +kubebuilder:object:root=true
type SubnetList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Subnet `json:"items"`
}

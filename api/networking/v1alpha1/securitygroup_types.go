package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultSecurityGroup is the group every namespace gets, and every Port
// without securityGroups is in: all egress, and ingress from its members.
const DefaultSecurityGroup = "default"

// SecurityGroupRule lets one kind of connection through, statefully:
// replies pass without a rule.
// +kubebuilder:validation:XValidation:rule="!(has(self.remoteIPPrefix) && has(self.remoteGroup))",message="remoteIPPrefix and remoteGroup exclude each other"
// +kubebuilder:validation:XValidation:rule="!has(self.portRangeMax) || has(self.portRangeMin)",message="portRangeMax needs portRangeMin"
// +kubebuilder:validation:XValidation:rule="self.protocol in ['tcp', 'udp', 'sctp'] || self.protocol == 'icmp' || (!has(self.portRangeMin) && !has(self.portRangeMax))",message="port ranges need protocol tcp, udp, sctp or icmp"
// +kubebuilder:validation:XValidation:rule="!(self.protocol in ['tcp', 'udp', 'sctp']) || !has(self.portRangeMin) || (self.portRangeMin >= 1 && (!has(self.portRangeMax) || self.portRangeMax >= self.portRangeMin))",message="port range must have 1 <= portRangeMin <= portRangeMax <= 65535"
// +kubebuilder:validation:XValidation:rule="self.protocol != 'icmp' || ((!has(self.portRangeMin) || self.portRangeMin <= 255) && (!has(self.portRangeMax) || self.portRangeMax <= 255))",message="for icmp, portRangeMin is the ICMP type and portRangeMax the code, each 0 to 255"
type SecurityGroupRule struct {
	// id is the rule's Neutron ID (a UUID), set by the OpenStack API for the
	// rules it adds; a rule without one gets an ID derived from its group
	// and content.
	// +optional
	// +kubebuilder:validation:MaxLength=36
	ID string `json:"id,omitempty"`
	// direction is ingress (to the port) or egress (from it).
	// +required
	// +kubebuilder:validation:Enum=ingress;egress
	Direction string `json:"direction"`
	// ethertype: only IPv4 is filtered today.
	// +optional
	// +kubebuilder:default=IPv4
	// +kubebuilder:validation:Enum=IPv4
	Ethertype string `json:"ethertype,omitempty"`
	// protocol: tcp, udp, sctp, icmp or any.
	// +optional
	// +kubebuilder:default=any
	// +kubebuilder:validation:Enum=tcp;udp;sctp;icmp;any
	Protocol string `json:"protocol,omitempty"`
	// portRangeMin and portRangeMax bound the destination port (tcp, udp,
	// sctp), or are the ICMP type and code (icmp).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	PortRangeMin *int32 `json:"portRangeMin,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	PortRangeMax *int32 `json:"portRangeMax,omitempty"`
	// remoteIPPrefix limits the rule to peers in this CIDR.
	// +optional
	// +kubebuilder:validation:MaxLength=18
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4",message="must be an IPv4 CIDR such as 0.0.0.0/0"
	RemoteIPPrefix string `json:"remoteIPPrefix,omitempty"`
	// remoteGroup limits the rule to ports of this group of the namespace.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	RemoteGroup string `json:"remoteGroup,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=255
	Description string `json:"description,omitempty"`
}

// SecurityGroupSpec is a set of allow rules.
type SecurityGroupSpec struct {
	// +optional
	// +kubebuilder:validation:MaxLength=255
	Description string `json:"description,omitempty"`
	// rules: a port in the group accepts what any rule of any of its
	// groups allows, per direction; nothing else (no rules of a direction:
	// nothing in that direction).
	// +optional
	// +kubebuilder:validation:MaxItems=1000
	Rules []SecurityGroupRule `json:"rules,omitempty"`
}

// SecurityGroup is a stateful allow-list of connections for the Ports in
// it (Neutron's security group), enforced on the node of each port for
// pods and VMs alike, by the same compiler as NetworkPolicy.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=sg;secgroup,categories=strata
// +kubebuilder:printcolumn:name="DESCRIPTION",type=string,JSONPath=`.spec.description`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type SecurityGroup struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec SecurityGroupSpec `json:"spec"`
}

// SecurityGroupList is a list of SecurityGroups.
//
// +kubebuilder:object:root=true
type SecurityGroupList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SecurityGroup `json:"items"`
}

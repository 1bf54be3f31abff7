package neutron

import "encoding/json"

// The Neutron v2.0 resources as the API shows them. Fields Strata does not
// model are answered with Neutron's defaults so that clients parse them.

// Network is Neutron's network.
type Network struct {
	ID                  string   `json:"id"`
	Name                string   `json:"name"`
	Description         string   `json:"description"`
	ProjectID           string   `json:"project_id"`
	TenantID            string   `json:"tenant_id"`
	AdminStateUp        bool     `json:"admin_state_up"`
	Status              string   `json:"status"`
	Subnets             []string `json:"subnets"`
	Shared              bool     `json:"shared"`
	External            bool     `json:"router:external"`
	NetworkType         string   `json:"provider:network_type"`
	PhysicalNetwork     *string  `json:"provider:physical_network"`
	SegmentationID      *int32   `json:"provider:segmentation_id"`
	MTU                 int32    `json:"mtu"`
	PortSecurityEnabled bool     `json:"port_security_enabled"`
	Tags                []string `json:"tags"`
	CreatedAt           string   `json:"created_at,omitempty"`
	UpdatedAt           string   `json:"updated_at,omitempty"`
}

// AllocationPool is a subnet's inclusive address range.
type AllocationPool struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// HostRoute is a route handed to a subnet's instances.
type HostRoute struct {
	Destination string `json:"destination"`
	NextHop     string `json:"nexthop"`
}

// Subnet is Neutron's subnet.
type Subnet struct {
	ID              string           `json:"id"`
	Name            string           `json:"name"`
	Description     string           `json:"description"`
	ProjectID       string           `json:"project_id"`
	TenantID        string           `json:"tenant_id"`
	NetworkID       string           `json:"network_id"`
	IPVersion       int              `json:"ip_version"`
	CIDR            string           `json:"cidr"`
	GatewayIP       *string          `json:"gateway_ip"`
	AllocationPools []AllocationPool `json:"allocation_pools"`
	DNSNameservers  []string         `json:"dns_nameservers"`
	HostRoutes      []HostRoute      `json:"host_routes"`
	EnableDHCP      bool             `json:"enable_dhcp"`
	SubnetpoolID    *string          `json:"subnetpool_id"`
	IPv6AddressMode *string          `json:"ipv6_address_mode"`
	IPv6RAMode      *string          `json:"ipv6_ra_mode"`
	ServiceTypes    []string         `json:"service_types"`
	Tags            []string         `json:"tags"`
	CreatedAt       string           `json:"created_at,omitempty"`
	UpdatedAt       string           `json:"updated_at,omitempty"`
}

// FixedIP is an address of a port (or a router's gateway) on a subnet.
type FixedIP struct {
	SubnetID  string `json:"subnet_id,omitempty"`
	IPAddress string `json:"ip_address,omitempty"`
}

// Port is Neutron's port.
type Port struct {
	ID                  string    `json:"id"`
	Name                string    `json:"name"`
	Description         string    `json:"description"`
	ProjectID           string    `json:"project_id"`
	TenantID            string    `json:"tenant_id"`
	NetworkID           string    `json:"network_id"`
	AdminStateUp        bool      `json:"admin_state_up"`
	Status              string    `json:"status"`
	MACAddress          string    `json:"mac_address"`
	FixedIPs            []FixedIP `json:"fixed_ips"`
	DeviceID            string    `json:"device_id"`
	DeviceOwner         string    `json:"device_owner"`
	SecurityGroups      []string  `json:"security_groups"`
	PortSecurityEnabled bool      `json:"port_security_enabled"`
	HostID              string    `json:"binding:host_id"`
	VNICType            string    `json:"binding:vnic_type"`
	AllowedAddressPairs []any     `json:"allowed_address_pairs"`
	Tags                []string  `json:"tags"`
	CreatedAt           string    `json:"created_at,omitempty"`
	UpdatedAt           string    `json:"updated_at,omitempty"`
}

// GatewayInfo is a router's external gateway.
type GatewayInfo struct {
	NetworkID        string    `json:"network_id"`
	EnableSNAT       *bool     `json:"enable_snat,omitempty"`
	ExternalFixedIPs []FixedIP `json:"external_fixed_ips,omitempty"`
}

// Router is Neutron's router.
type Router struct {
	ID                  string       `json:"id"`
	Name                string       `json:"name"`
	Description         string       `json:"description"`
	ProjectID           string       `json:"project_id"`
	TenantID            string       `json:"tenant_id"`
	AdminStateUp        bool         `json:"admin_state_up"`
	Status              string       `json:"status"`
	ExternalGatewayInfo *GatewayInfo `json:"external_gateway_info"`
	Routes              []any        `json:"routes"`
	Distributed         bool         `json:"distributed"`
	HA                  bool         `json:"ha"`
	Tags                []string     `json:"tags"`
	CreatedAt           string       `json:"created_at,omitempty"`
	UpdatedAt           string       `json:"updated_at,omitempty"`
}

// FloatingIP is Neutron's floating IP.
type FloatingIP struct {
	ID                string   `json:"id"`
	Description       string   `json:"description"`
	ProjectID         string   `json:"project_id"`
	TenantID          string   `json:"tenant_id"`
	FloatingIPAddress string   `json:"floating_ip_address"`
	FloatingNetworkID string   `json:"floating_network_id"`
	RouterID          *string  `json:"router_id"`
	PortID            *string  `json:"port_id"`
	FixedIPAddress    *string  `json:"fixed_ip_address"`
	Status            string   `json:"status"`
	Tags              []string `json:"tags"`
	CreatedAt         string   `json:"created_at,omitempty"`
	UpdatedAt         string   `json:"updated_at,omitempty"`
}

// SecurityGroupRule is Neutron's security group rule.
type SecurityGroupRule struct {
	ID              string  `json:"id"`
	SecurityGroupID string  `json:"security_group_id"`
	Direction       string  `json:"direction"`
	Ethertype       string  `json:"ethertype"`
	Protocol        *string `json:"protocol"`
	PortRangeMin    *int32  `json:"port_range_min"`
	PortRangeMax    *int32  `json:"port_range_max"`
	RemoteIPPrefix  *string `json:"remote_ip_prefix"`
	RemoteGroupID   *string `json:"remote_group_id"`
	Description     string  `json:"description"`
	ProjectID       string  `json:"project_id"`
	TenantID        string  `json:"tenant_id"`
	CreatedAt       string  `json:"created_at,omitempty"`
	UpdatedAt       string  `json:"updated_at,omitempty"`
}

// SecurityGroup is Neutron's security group.
type SecurityGroup struct {
	ID          string              `json:"id"`
	Name        string              `json:"name"`
	Description string              `json:"description"`
	ProjectID   string              `json:"project_id"`
	TenantID    string              `json:"tenant_id"`
	Stateful    bool                `json:"stateful"`
	Shared      bool                `json:"shared"`
	Rules       []SecurityGroupRule `json:"security_group_rules"`
	Tags        []string            `json:"tags"`
	CreatedAt   string              `json:"created_at,omitempty"`
	UpdatedAt   string              `json:"updated_at,omitempty"`
}

// Requests: a pointer (or raw message) is nil when the attribute is absent,
// so that an update changes only what it names. Unknown attributes are
// ignored.

// NetworkRequest is the body of a network create or update.
type NetworkRequest struct {
	Name                *string `json:"name"`
	Description         *string `json:"description"`
	AdminStateUp        *bool   `json:"admin_state_up"`
	Shared              *bool   `json:"shared"`
	External            *bool   `json:"router:external"`
	NetworkType         *string `json:"provider:network_type"`
	PhysicalNetwork     *string `json:"provider:physical_network"`
	SegmentationID      *int32  `json:"provider:segmentation_id"`
	MTU                 *int32  `json:"mtu"`
	PortSecurityEnabled *bool   `json:"port_security_enabled"`
}

// SubnetRequest is the body of a subnet create or update.
type SubnetRequest struct {
	Name            *string           `json:"name"`
	Description     *string           `json:"description"`
	NetworkID       *string           `json:"network_id"`
	IPVersion       *int              `json:"ip_version"`
	CIDR            *string           `json:"cidr"`
	GatewayIP       json.RawMessage   `json:"gateway_ip"` // null: no gateway
	AllocationPools *[]AllocationPool `json:"allocation_pools"`
	DNSNameservers  *[]string         `json:"dns_nameservers"`
	HostRoutes      *[]HostRoute      `json:"host_routes"`
	EnableDHCP      *bool             `json:"enable_dhcp"`
	SubnetpoolID    *string           `json:"subnetpool_id"`
}

// PortRequest is the body of a port create or update.
type PortRequest struct {
	Name                *string    `json:"name"`
	Description         *string    `json:"description"`
	NetworkID           *string    `json:"network_id"`
	AdminStateUp        *bool      `json:"admin_state_up"`
	MACAddress          *string    `json:"mac_address"`
	FixedIPs            *[]FixedIP `json:"fixed_ips"`
	SecurityGroups      *[]string  `json:"security_groups"`
	PortSecurityEnabled *bool      `json:"port_security_enabled"`
}

// GatewayRequest is a router's external_gateway_info in a request.
type GatewayRequest struct {
	NetworkID        string    `json:"network_id"`
	EnableSNAT       *bool     `json:"enable_snat"`
	ExternalFixedIPs []FixedIP `json:"external_fixed_ips"`
}

// RouterRequest is the body of a router create or update.
type RouterRequest struct {
	Name                *string         `json:"name"`
	Description         *string         `json:"description"`
	AdminStateUp        *bool           `json:"admin_state_up"`
	ExternalGatewayInfo json.RawMessage `json:"external_gateway_info"` // null or {}: none
	Routes              *[]any          `json:"routes"`
}

// InterfaceRequest is the body of add_router_interface and
// remove_router_interface.
type InterfaceRequest struct {
	SubnetID string `json:"subnet_id"`
	PortID   string `json:"port_id"`
}

// InterfaceInfo is their answer.
type InterfaceInfo struct {
	ID        string   `json:"id"`
	SubnetID  string   `json:"subnet_id"`
	SubnetIDs []string `json:"subnet_ids"`
	PortID    string   `json:"port_id"`
	NetworkID string   `json:"network_id"`
	ProjectID string   `json:"project_id"`
	TenantID  string   `json:"tenant_id"`
}

// FloatingIPRequest is the body of a floating IP create or update.
type FloatingIPRequest struct {
	Description       *string         `json:"description"`
	FloatingNetworkID *string         `json:"floating_network_id"`
	FloatingIPAddress *string         `json:"floating_ip_address"`
	PortID            json.RawMessage `json:"port_id"` // null: disassociate
	FixedIPAddress    *string         `json:"fixed_ip_address"`
}

// SecurityGroupRequest is the body of a security group create or update.
type SecurityGroupRequest struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	Stateful    *bool   `json:"stateful"`
}

// SecurityGroupRuleRequest is the body of a security group rule create.
type SecurityGroupRuleRequest struct {
	SecurityGroupID *string         `json:"security_group_id"`
	Direction       *string         `json:"direction"`
	Ethertype       *string         `json:"ethertype"`
	Protocol        json.RawMessage `json:"protocol"` // a name, a number, or null
	PortRangeMin    *int32          `json:"port_range_min"`
	PortRangeMax    *int32          `json:"port_range_max"`
	RemoteIPPrefix  *string         `json:"remote_ip_prefix"`
	RemoteGroupID   *string         `json:"remote_group_id"`
	Description     *string         `json:"description"`
}

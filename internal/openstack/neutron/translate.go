package neutron

import (
	"crypto/sha1"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
)

// Annotations of objects made through this API.
const (
	// AnnotationName is the object's Neutron name, when it differs from
	// (or may differ from) metadata.name.
	AnnotationName = "networking.strata.io/name"
	// AnnotationDescription is the Neutron description of kinds without a
	// description field.
	AnnotationDescription = "networking.strata.io/description"
)

// Kinds an Index holds.
const (
	kindNetwork       = "Network"
	kindSubnet        = "Subnet"
	kindPort          = "Port"
	kindRouter        = "Router"
	kindFloatingIP    = "FloatingIP"
	kindSecurityGroup = "SecurityGroup"
	kindVM            = "VirtualMachine"
)

// ref is an object by kind, namespace and name.
type ref struct{ Kind, Namespace, Name string }

// subnetInfo is what translations need of a subnet other than its ID.
type subnetInfo struct {
	ref
	Network string
	CIDR    netip.Prefix
}

// Index resolves Kubernetes names to Neutron IDs (UIDs) and back, among
// the objects one request may see.
type Index struct {
	ids     map[ref]string
	refs    map[string]ref
	subnets []subnetInfo
}

// NewIndex returns an empty Index.
func NewIndex() *Index {
	return &Index{ids: map[ref]string{}, refs: map[string]ref{}}
}

// Add records that kind ns/name has Neutron ID id.
func (ix *Index) Add(kind, ns, name, id string) {
	r := ref{kind, ns, name}
	ix.ids[r] = id
	ix.refs[id] = r
}

// addSubnet records a subnet with its network and CIDR.
func (ix *Index) addSubnet(sn *netv1.Subnet) {
	ix.Add(kindSubnet, sn.Namespace, sn.Name, string(sn.UID))
	p, _ := netip.ParsePrefix(sn.Spec.CIDR)
	ix.subnets = append(ix.subnets, subnetInfo{ref{kindSubnet, sn.Namespace, sn.Name}, sn.Spec.Network, p})
}

// ID returns the ID of kind ns/name, or "" when it is unknown.
func (ix *Index) ID(kind, ns, name string) string {
	return ix.ids[ref{kind, ns, name}]
}

// idOrNil is ID as a JSON null when unknown or name is empty.
func (ix *Index) idOrNil(kind, ns, name string) *string {
	if name == "" {
		return nil
	}
	if id := ix.ID(kind, ns, name); id != "" {
		return &id
	}
	return nil
}

// Lookup returns the object of kind with id.
func (ix *Index) Lookup(kind, id string) (ref, bool) {
	r, ok := ix.refs[id]
	return r, ok && r.Kind == kind
}

// subnetOf returns the subnet of network ns/network that holds addr.
func (ix *Index) subnetOf(ns, network, addr string) (subnetInfo, bool) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return subnetInfo{}, false
	}
	for _, s := range ix.subnets {
		if s.Namespace == ns && s.Network == network && s.CIDR.Contains(a) {
			return s, true
		}
	}
	return subnetInfo{}, false
}

// subnetsOf returns the IDs of network ns/network's subnets.
func (ix *Index) subnetsOf(ns, network string) []string {
	ids := []string{}
	for _, s := range ix.subnets {
		if s.Namespace == ns && s.Network == network {
			ids = append(ids, ix.ID(kindSubnet, ns, s.Name))
		}
	}
	return ids
}

// Error is a Neutron error: its HTTP code, type and message.
type Error struct {
	Code    int
	Type    string
	Message string
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

func badRequest(format string, args ...any) *Error {
	return &Error{http.StatusBadRequest, "HTTPBadRequest", fmt.Sprintf(format, args...)}
}

func notFound(typ, format string, args ...any) *Error {
	return &Error{http.StatusNotFound, typ, fmt.Sprintf(format, args...)}
}

// neutronName is obj's Neutron name: the annotation, else its name.
func neutronName(m metav1.Object) string {
	if n, ok := m.GetAnnotations()[AnnotationName]; ok {
		return n
	}
	return m.GetName()
}

// description is obj's description annotation.
func description(m metav1.Object) string { return m.GetAnnotations()[AnnotationDescription] }

func setAnnotation(m metav1.Object, key, value string) {
	a := m.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[key] = value
	m.SetAnnotations(a)
}

// KubeName is the Kubernetes name for an object created with Neutron
// name: the name itself when it is a DNS label that taken does not report
// as used, else prefix-suffix.
func KubeName(name, prefix, suffix string, taken func(string) bool) string {
	if name != "" && len(validation.IsDNS1123Label(name)) == 0 && !taken(name) {
		return name
	}
	return prefix + "-" + suffix
}

func timestamp(m metav1.Object) string {
	t := m.GetCreationTimestamp()
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func statusOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// NetworkToNeutron translates a Network; projectID is its namespace's.
func NetworkToNeutron(n *netv1.Network, ix *Index, projectID string) Network {
	out := Network{
		ID: string(n.UID), Name: neutronName(n), Description: description(n),
		ProjectID: projectID, TenantID: projectID,
		AdminStateUp: true, Status: statusOr(n.Status.Status, netv1.StatusBuild),
		Subnets:  ix.subnetsOf(n.Namespace, n.Name),
		External: n.Spec.External, NetworkType: statusOr(n.Spec.ProviderType, netv1.ProviderVXLAN),
		MTU: n.Status.MTU, PortSecurityEnabled: true, Tags: []string{},
		CreatedAt: timestamp(n), UpdatedAt: timestamp(n),
	}
	if out.MTU == 0 {
		out.MTU = n.Spec.MTU
	}
	if out.NetworkType == netv1.ProviderFlat {
		phys := statusOr(n.Spec.PhysicalInterface, "default")
		out.PhysicalNetwork = &phys
	}
	switch {
	case n.Status.SegmentationID != 0:
		out.SegmentationID = &n.Status.SegmentationID
	case n.Spec.SegmentationID != nil:
		out.SegmentationID = n.Spec.SegmentationID
	}
	return out
}

// ApplyNetwork sets what req names on n (a new one when create).
func ApplyNetwork(n *netv1.Network, req NetworkRequest, create bool) error {
	if req.AdminStateUp != nil && !*req.AdminStateUp {
		return badRequest("admin_state_up false is not supported")
	}
	if req.Shared != nil && *req.Shared {
		return badRequest("shared networks are not supported; an external network (router:external) is usable by every project")
	}
	if req.PortSecurityEnabled != nil && !*req.PortSecurityEnabled {
		return badRequest("port_security_enabled false is set per port")
	}
	if req.Name != nil {
		setAnnotation(n, AnnotationName, *req.Name)
	}
	if req.Description != nil {
		setAnnotation(n, AnnotationDescription, *req.Description)
	}
	if req.External != nil {
		n.Spec.External = *req.External
	}
	if req.NetworkType != nil {
		n.Spec.ProviderType = *req.NetworkType
	}
	if req.PhysicalNetwork != nil && *req.PhysicalNetwork != "default" {
		n.Spec.PhysicalInterface = *req.PhysicalNetwork
	}
	if req.SegmentationID != nil {
		n.Spec.SegmentationID = req.SegmentationID
	}
	if req.MTU != nil {
		n.Spec.MTU = *req.MTU
	}
	return nil
}

// SubnetToNeutron translates a Subnet.
func SubnetToNeutron(sn *netv1.Subnet, ix *Index, projectID string) Subnet {
	out := Subnet{
		ID: string(sn.UID), Name: neutronName(sn), Description: description(sn),
		ProjectID: projectID, TenantID: projectID,
		NetworkID: ix.ID(kindNetwork, sn.Namespace, sn.Spec.Network),
		IPVersion: 4, CIDR: sn.Spec.CIDR,
		AllocationPools: []AllocationPool{}, DNSNameservers: []string{}, HostRoutes: []HostRoute{},
		EnableDHCP:   sn.Spec.EnableDHCP == nil || *sn.Spec.EnableDHCP,
		ServiceTypes: []string{}, Tags: []string{}, CreatedAt: timestamp(sn), UpdatedAt: timestamp(sn),
	}
	gw := ""
	if !sn.Spec.NoGateway {
		gw = sn.Status.GatewayIP
		if gw == "" {
			gw = sn.Spec.GatewayIP
		}
		if gw == "" {
			if p, err := netip.ParsePrefix(sn.Spec.CIDR); err == nil {
				gw = p.Masked().Addr().Next().String()
			}
		}
		out.GatewayIP = &gw
	}
	pools := sn.Status.AllocationPools
	if len(pools) == 0 {
		pools = sn.Spec.AllocationPools
	}
	for _, p := range pools {
		out.AllocationPools = append(out.AllocationPools, AllocationPool{p.Start, p.End})
	}
	if len(pools) == 0 {
		out.AllocationPools = defaultPools(sn.Spec.CIDR, gw)
	}
	out.DNSNameservers = append(out.DNSNameservers, sn.Spec.DNSNameservers...)
	for _, r := range sn.Spec.HostRoutes {
		out.HostRoutes = append(out.HostRoutes, HostRoute{r.Destination, r.NextHop})
	}
	return out
}

// defaultPools is all of cidr's host addresses but gateway.
func defaultPools(cidr, gateway string) []AllocationPool {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
		return []AllocationPool{}
	}
	first := p.Masked().Addr().Next()
	last := lastAddr(p).Prev()
	gw, _ := netip.ParseAddr(gateway)
	switch {
	case gw == first:
		return []AllocationPool{{first.Next().String(), last.String()}}
	case gw == last:
		return []AllocationPool{{first.String(), last.Prev().String()}}
	case gw.IsValid() && p.Contains(gw):
		return []AllocationPool{{first.String(), gw.Prev().String()}, {gw.Next().String(), last.String()}}
	}
	return []AllocationPool{{first.String(), last.String()}}
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ApplySubnet sets what req names on sn; ns is the caller's namespace.
func ApplySubnet(sn *netv1.Subnet, req SubnetRequest, ns string, ix *Index, create bool) error {
	if create {
		if req.NetworkID == nil {
			return badRequest("network_id is required")
		}
		r, ok := ix.Lookup(kindNetwork, *req.NetworkID)
		if !ok || r.Namespace != ns {
			return notFound("NetworkNotFound", "Network %s could not be found.", *req.NetworkID)
		}
		sn.Spec.Network = r.Name
		if req.CIDR == nil {
			return badRequest("cidr is required (subnet pools are not supported)")
		}
		sn.Spec.CIDR = *req.CIDR
		if req.IPVersion != nil && *req.IPVersion != 4 {
			return badRequest("Invalid input for ip_version: only IPv4 subnets are supported")
		}
		if req.SubnetpoolID != nil {
			return badRequest("subnet pools are not supported")
		}
	} else if req.NetworkID != nil || req.CIDR != nil || req.IPVersion != nil {
		return badRequest("Cannot update read-only attribute network_id, cidr or ip_version")
	}
	if req.Name != nil {
		setAnnotation(sn, AnnotationName, *req.Name)
	}
	if req.Description != nil {
		setAnnotation(sn, AnnotationDescription, *req.Description)
	}
	if req.GatewayIP != nil {
		var gw *string
		if err := json.Unmarshal(req.GatewayIP, &gw); err != nil {
			return badRequest("Invalid input for gateway_ip: %v", err)
		}
		sn.Spec.NoGateway = gw == nil
		sn.Spec.GatewayIP = ""
		if gw != nil {
			sn.Spec.GatewayIP = *gw
		}
	}
	if req.AllocationPools != nil {
		sn.Spec.AllocationPools = nil
		for _, p := range *req.AllocationPools {
			sn.Spec.AllocationPools = append(sn.Spec.AllocationPools, netv1.AllocationPool{Start: p.Start, End: p.End})
		}
	}
	if req.DNSNameservers != nil {
		sn.Spec.DNSNameservers = append([]string(nil), *req.DNSNameservers...)
	}
	if req.HostRoutes != nil {
		sn.Spec.HostRoutes = nil
		for _, r := range *req.HostRoutes {
			sn.Spec.HostRoutes = append(sn.Spec.HostRoutes, netv1.HostRoute{Destination: r.Destination, NextHop: r.NextHop})
		}
	}
	if req.EnableDHCP != nil {
		v := *req.EnableDHCP
		sn.Spec.EnableDHCP = &v
	}
	return nil
}

// Neutron's device owners.
const (
	OwnerCompute         = "compute:nova"
	OwnerPod             = "compute:kubernetes"
	OwnerRouterInterface = "network:router_interface"
)

// PortToNeutron translates a Port.
func PortToNeutron(p *netv1.Port, ix *Index, projectID string) Port {
	out := Port{
		ID: string(p.UID), Name: neutronName(p), Description: description(p),
		ProjectID: projectID, TenantID: projectID,
		NetworkID:    ix.ID(kindNetwork, p.Namespace, p.Spec.Network),
		AdminStateUp: true, Status: statusOr(p.Status.Status, netv1.StatusDown),
		MACAddress: statusOr(p.Status.MACAddress, p.Spec.MACAddress),
		FixedIPs:   []FixedIP{}, SecurityGroups: []string{},
		PortSecurityEnabled: p.Spec.PortSecurityEnabled == nil || *p.Spec.PortSecurityEnabled,
		HostID:              p.Status.NodeName, VNICType: "normal", AllowedAddressPairs: []any{},
		Tags: []string{}, CreatedAt: timestamp(p), UpdatedAt: timestamp(p),
	}
	fixed := p.Status.FixedIPs
	if len(fixed) == 0 {
		fixed = p.Spec.FixedIPs
	}
	for _, f := range fixed {
		sub := f.Subnet
		if sub == "" {
			if s, ok := ix.subnetOf(p.Namespace, p.Spec.Network, f.IPAddress); ok {
				sub = s.Name
			}
		}
		out.FixedIPs = append(out.FixedIPs, FixedIP{SubnetID: ix.ID(kindSubnet, p.Namespace, sub), IPAddress: f.IPAddress})
	}
	if out.PortSecurityEnabled {
		groups := p.Spec.SecurityGroups
		if len(groups) == 0 {
			groups = []string{netv1.DefaultSecurityGroup}
		}
		for _, g := range groups {
			if id := ix.ID(kindSecurityGroup, p.Namespace, g); id != "" {
				out.SecurityGroups = append(out.SecurityGroups, id)
			}
		}
	}
	if d := p.Spec.Device; d != nil {
		switch d.Kind {
		case netv1.DeviceVirtualMachine:
			out.DeviceOwner, out.DeviceID = OwnerCompute, ix.ID(kindVM, p.Namespace, d.Name)
		case netv1.DeviceRouterInterface:
			out.DeviceOwner, out.DeviceID = OwnerRouterInterface, ix.ID(kindRouter, p.Namespace, d.Name)
		case netv1.DevicePod:
			out.DeviceOwner = OwnerPod
		}
		if out.DeviceID == "" {
			out.DeviceID = d.Name
		}
	}
	return out
}

// ApplyPort sets what req names on p; ns is the caller's namespace.
func ApplyPort(p *netv1.Port, req PortRequest, ns string, ix *Index, create bool) error {
	if req.AdminStateUp != nil && !*req.AdminStateUp {
		return badRequest("admin_state_up false is not supported")
	}
	if create {
		if req.NetworkID == nil {
			return badRequest("network_id is required")
		}
		r, ok := ix.Lookup(kindNetwork, *req.NetworkID)
		if !ok || r.Namespace != ns {
			return notFound("NetworkNotFound", "Network %s could not be found.", *req.NetworkID)
		}
		p.Spec.Network = r.Name
	} else if req.NetworkID != nil {
		return badRequest("Cannot update read-only attribute network_id")
	}
	if req.Name != nil {
		setAnnotation(p, AnnotationName, *req.Name)
	}
	if req.Description != nil {
		setAnnotation(p, AnnotationDescription, *req.Description)
	}
	if req.MACAddress != nil {
		p.Spec.MACAddress = *req.MACAddress
	}
	if req.FixedIPs != nil {
		p.Spec.FixedIPs = nil
		for _, f := range *req.FixedIPs {
			fixed := netv1.FixedIP{IPAddress: f.IPAddress}
			if f.SubnetID != "" {
				r, ok := ix.Lookup(kindSubnet, f.SubnetID)
				if !ok || r.Namespace != ns {
					return notFound("SubnetNotFound", "Subnet %s could not be found.", f.SubnetID)
				}
				fixed.Subnet = r.Name
			}
			p.Spec.FixedIPs = append(p.Spec.FixedIPs, fixed)
		}
	}
	if req.SecurityGroups != nil {
		p.Spec.SecurityGroups = nil
		for _, id := range *req.SecurityGroups {
			r, ok := ix.Lookup(kindSecurityGroup, id)
			if !ok || r.Namespace != ns {
				return notFound("SecurityGroupNotFound", "Security group %s does not exist", id)
			}
			p.Spec.SecurityGroups = append(p.Spec.SecurityGroups, r.Name)
		}
	}
	if req.PortSecurityEnabled != nil {
		v := *req.PortSecurityEnabled
		p.Spec.PortSecurityEnabled = &v
	}
	return nil
}

// RouterToNeutron translates a Router.
func RouterToNeutron(r *netv1.Router, ix *Index, projectID string) Router {
	out := Router{
		ID: string(r.UID), Name: neutronName(r), Description: description(r),
		ProjectID: projectID, TenantID: projectID, AdminStateUp: true,
		Status: statusOr(r.Status.Status, netv1.StatusBuild), Routes: []any{}, Tags: []string{},
		CreatedAt: timestamp(r), UpdatedAt: timestamp(r),
	}
	if g := r.Spec.ExternalGateway; g != nil {
		netNS := statusOr(g.Network.Namespace, r.Namespace)
		snat := g.EnableSNAT == nil || *g.EnableSNAT
		info := &GatewayInfo{NetworkID: ix.ID(kindNetwork, netNS, g.Network.Name), EnableSNAT: &snat, ExternalFixedIPs: []FixedIP{}}
		if ip := statusOr(r.Status.ExternalIP, g.ExternalIP); ip != "" {
			f := FixedIP{IPAddress: ip}
			if s, ok := ix.subnetOf(netNS, g.Network.Name, ip); ok {
				f.SubnetID = ix.ID(kindSubnet, s.Namespace, s.Name)
			}
			info.ExternalFixedIPs = append(info.ExternalFixedIPs, f)
		}
		out.ExternalGatewayInfo = info
	}
	return out
}

// ApplyRouter sets what req names on r; ns is the caller's namespace.
func ApplyRouter(r *netv1.Router, req RouterRequest, ns string, ix *Index) error {
	if req.AdminStateUp != nil && !*req.AdminStateUp {
		return badRequest("admin_state_up false is not supported")
	}
	if req.Routes != nil && len(*req.Routes) > 0 {
		return badRequest("extra routes are not supported")
	}
	if req.Name != nil {
		setAnnotation(r, AnnotationName, *req.Name)
	}
	if req.Description != nil {
		setAnnotation(r, AnnotationDescription, *req.Description)
	}
	if req.ExternalGatewayInfo == nil {
		return nil
	}
	var g *GatewayRequest
	if err := json.Unmarshal(req.ExternalGatewayInfo, &g); err != nil {
		return badRequest("Invalid input for external_gateway_info: %v", err)
	}
	if g == nil || g.NetworkID == "" {
		r.Spec.ExternalGateway = nil
		return nil
	}
	net, ok := ix.Lookup(kindNetwork, g.NetworkID)
	if !ok {
		return notFound("ExternalNetworkNotFound", "External network %s could not be found.", g.NetworkID)
	}
	gw := &netv1.ExternalGateway{Network: netv1.NetworkRef{Name: net.Name}, EnableSNAT: g.EnableSNAT}
	if net.Namespace != ns {
		gw.Network.Namespace = net.Namespace
	}
	if len(g.ExternalFixedIPs) > 1 {
		return badRequest("a router has one external fixed IP")
	}
	for _, f := range g.ExternalFixedIPs {
		gw.ExternalIP = f.IPAddress
	}
	r.Spec.ExternalGateway = gw
	return nil
}

// FloatingIPToNeutron translates a FloatingIP.
func FloatingIPToNeutron(f *netv1.FloatingIP, ix *Index, projectID string) FloatingIP {
	out := FloatingIP{
		ID: string(f.UID), Description: description(f), ProjectID: projectID, TenantID: projectID,
		FloatingIPAddress: statusOr(f.Status.FloatingIPAddress, f.Spec.FloatingIPAddress),
		FloatingNetworkID: ix.ID(kindNetwork, statusOr(f.Spec.Network.Namespace, f.Namespace), f.Spec.Network.Name),
		RouterID:          ix.idOrNil(kindRouter, f.Namespace, f.Status.Router),
		PortID:            ix.idOrNil(kindPort, f.Namespace, f.Spec.Port),
		Status:            statusOr(f.Status.Status, netv1.StatusDown),
		Tags:              []string{}, CreatedAt: timestamp(f), UpdatedAt: timestamp(f),
	}
	if f.Spec.Port != "" {
		if ip := statusOr(f.Status.FixedIPAddress, f.Spec.FixedIPAddress); ip != "" {
			out.FixedIPAddress = &ip
		}
	}
	return out
}

// ApplyFloatingIP sets what req names on f; ns is the caller's namespace.
func ApplyFloatingIP(f *netv1.FloatingIP, req FloatingIPRequest, ns string, ix *Index, create bool) error {
	if create {
		if req.FloatingNetworkID == nil {
			return badRequest("floating_network_id is required")
		}
		net, ok := ix.Lookup(kindNetwork, *req.FloatingNetworkID)
		if !ok {
			return notFound("ExternalNetworkNotFound", "External network %s could not be found.", *req.FloatingNetworkID)
		}
		f.Spec.Network = netv1.NetworkRef{Name: net.Name}
		if net.Namespace != ns {
			f.Spec.Network.Namespace = net.Namespace
		}
		if req.FloatingIPAddress != nil {
			f.Spec.FloatingIPAddress = *req.FloatingIPAddress
		}
	} else if req.FloatingNetworkID != nil || req.FloatingIPAddress != nil {
		return badRequest("Cannot update read-only attribute floating_network_id or floating_ip_address")
	}
	if req.Description != nil {
		setAnnotation(f, AnnotationDescription, *req.Description)
	}
	if req.PortID != nil {
		var id *string
		if err := json.Unmarshal(req.PortID, &id); err != nil {
			return badRequest("Invalid input for port_id: %v", err)
		}
		f.Spec.Port, f.Spec.FixedIPAddress = "", ""
		if id != nil && *id != "" {
			p, ok := ix.Lookup(kindPort, *id)
			if !ok || p.Namespace != ns {
				return notFound("PortNotFound", "Port %s could not be found.", *id)
			}
			f.Spec.Port = p.Name
		}
	}
	if req.FixedIPAddress != nil && f.Spec.Port != "" {
		f.Spec.FixedIPAddress = *req.FixedIPAddress
	}
	return nil
}

// ruleKey is a rule's content without its ID and description: what makes
// two rules the same rule.
func ruleKey(r netv1.SecurityGroupRule) string {
	r.ID, r.Description = "", ""
	if r.Ethertype == "" {
		r.Ethertype = "IPv4"
	}
	if r.Protocol == "" {
		r.Protocol = "any"
	}
	b, _ := json.Marshal(r)
	return string(b)
}

// RuleIDs returns the Neutron IDs of a group's rules: the stored id, else
// a UUID derived from the group's uid, the rule's content and how many
// identical rules precede it (stable as other rules come and go).
func RuleIDs(g *netv1.SecurityGroup) []string {
	ids := make([]string, len(g.Spec.Rules))
	seen := map[string]int{}
	for i, r := range g.Spec.Rules {
		if r.ID != "" {
			ids[i] = r.ID
			continue
		}
		k := ruleKey(r)
		ids[i] = derivedUUID(string(g.UID) + "/" + k + "/" + strconv.Itoa(seen[k]))
		seen[k]++
	}
	return ids
}

// derivedUUID is a name-based (version 5 style) UUID of s.
func derivedUUID(s string) string {
	h := sha1.Sum([]byte(s))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// SecurityGroupToNeutron translates a SecurityGroup with its rules.
func SecurityGroupToNeutron(g *netv1.SecurityGroup, ix *Index, projectID string) SecurityGroup {
	out := SecurityGroup{
		ID: string(g.UID), Name: neutronName(g), Description: g.Spec.Description,
		ProjectID: projectID, TenantID: projectID, Stateful: true,
		Rules: []SecurityGroupRule{}, Tags: []string{}, CreatedAt: timestamp(g), UpdatedAt: timestamp(g),
	}
	for i, id := range RuleIDs(g) {
		out.Rules = append(out.Rules, ruleToNeutron(g, g.Spec.Rules[i], id, ix, projectID))
	}
	return out
}

func ruleToNeutron(g *netv1.SecurityGroup, r netv1.SecurityGroupRule, id string, ix *Index, projectID string) SecurityGroupRule {
	out := SecurityGroupRule{
		ID: id, SecurityGroupID: string(g.UID), Direction: r.Direction,
		Ethertype: statusOr(r.Ethertype, "IPv4"), PortRangeMin: r.PortRangeMin, PortRangeMax: r.PortRangeMax,
		RemoteGroupID: ix.idOrNil(kindSecurityGroup, g.Namespace, r.RemoteGroup),
		Description:   r.Description, ProjectID: projectID, TenantID: projectID,
		CreatedAt: timestamp(g), UpdatedAt: timestamp(g),
	}
	if r.Protocol != "" && r.Protocol != "any" {
		p := r.Protocol
		out.Protocol = &p
	}
	if r.RemoteIPPrefix != "" {
		p := r.RemoteIPPrefix
		out.RemoteIPPrefix = &p
	}
	return out
}

// ApplySecurityGroup sets what req names on g.
func ApplySecurityGroup(g *netv1.SecurityGroup, req SecurityGroupRequest) error {
	if req.Stateful != nil && !*req.Stateful {
		return badRequest("stateless security groups are not supported")
	}
	if req.Name != nil {
		setAnnotation(g, AnnotationName, *req.Name)
	}
	if req.Description != nil {
		g.Spec.Description = *req.Description
	}
	return nil
}

// protocols by IANA number, as Neutron accepts them.
var protocolNumbers = map[string]string{"1": "icmp", "6": "tcp", "17": "udp", "132": "sctp", "0": "any"}

// RuleFromNeutron is the rule req asks for (without its ID) and the
// namespace-local name of its group.
func RuleFromNeutron(req SecurityGroupRuleRequest, ns string, ix *Index) (string, netv1.SecurityGroupRule, error) {
	var r netv1.SecurityGroupRule
	if req.SecurityGroupID == nil {
		return "", r, badRequest("security_group_id is required")
	}
	g, ok := ix.Lookup(kindSecurityGroup, *req.SecurityGroupID)
	if !ok || g.Namespace != ns {
		return "", r, notFound("SecurityGroupNotFound", "Security group %s does not exist", *req.SecurityGroupID)
	}
	if req.Direction == nil {
		return "", r, badRequest("direction is required")
	}
	r.Direction = *req.Direction
	r.Ethertype = "IPv4"
	if req.Ethertype != nil {
		r.Ethertype = *req.Ethertype
	}
	r.Protocol = "any"
	if req.Protocol != nil {
		var p any
		if err := json.Unmarshal(req.Protocol, &p); err != nil {
			return "", r, badRequest("Invalid input for protocol: %v", err)
		}
		switch p := p.(type) {
		case string:
			r.Protocol = strings.ToLower(p)
			if n, ok := protocolNumbers[p]; ok {
				r.Protocol = n
			}
		case float64:
			n, ok := protocolNumbers[strconv.Itoa(int(p))]
			if !ok {
				return "", r, badRequest("Security group rule protocol %v not supported: tcp, udp, sctp, icmp or any", p)
			}
			r.Protocol = n
		}
	}
	r.PortRangeMin, r.PortRangeMax = req.PortRangeMin, req.PortRangeMax
	if req.RemoteIPPrefix != nil {
		r.RemoteIPPrefix = *req.RemoteIPPrefix
	}
	if req.RemoteGroupID != nil {
		rg, ok := ix.Lookup(kindSecurityGroup, *req.RemoteGroupID)
		if !ok || rg.Namespace != ns {
			return "", r, notFound("SecurityGroupNotFound", "Security group %s does not exist", *req.RemoteGroupID)
		}
		r.RemoteGroup = rg.Name
	}
	if req.Description != nil {
		r.Description = *req.Description
	}
	return g.Name, r, nil
}

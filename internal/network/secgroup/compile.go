// Package secgroup enforces Neutron security groups (networking.strata.io SecurityGroups) on the
// tenant-network ports of a node. It compiles groups and Ports into package policy's endpoints —
// the same IR, renderer and applier as NetworkPolicy — keyed by each port's MAC on its network's
// bridge, since tenant networks may share addresses. It owns the nftables table "inet
// strata-secgroups" and nothing else.
package secgroup

import (
	"net"
	"net/netip"
	"slices"
	"strings"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/policy"
)

// TableName is the nftables table (family inet) this package owns.
const TableName = "strata-secgroups"

// FilterSource names the Filters Compile makes.
const FilterSource = "securitygroup"

// Network is where a Network's ports are on a node: its bridge and the conntrack zone of the
// bridge's connections (non-zero, unique per bridge on the node; derived from the VNI).
type Network struct {
	Bridge string
	Zone   uint16
}

// Input is what Compile reads: every SecurityGroup and Port (ports on other nodes are remote
// group members), the bridge of each Network by "namespace/name", and the node whose ports are
// enforced here.
type Input struct {
	Node     string
	Groups   []*netv1.SecurityGroup
	Ports    []*netv1.Port
	Networks map[string]Network
}

// Compile returns an endpoint for every Port bound to the node, sorted by bridge and MAC, with
// Neutron's semantics:
//
//   - a port is in spec.securityGroups of its namespace, or in "default" when unset; a group
//     that does not exist allows nothing, except a missing "default", which acts as Neutron
//     creates it (all egress; ingress from the group's members);
//   - both directions are always isolated: a direction lets through what any rule of any of
//     the port's groups allows, and nothing else when there is no such rule;
//   - replies to allowed connections pass (the renderer accepts conntrack established/related);
//   - rules: protocol any/tcp/udp/sctp/icmp; portRangeMin..Max bound the destination port, or
//     are the ICMP type and code; remoteIPPrefix a CIDR; remoteGroup the fixed IPs of the
//     group's ports with port security on the same network (on any node); only IPv4 rules;
//   - DHCP (a request to udp 67 out, an answer to udp 68 in) always passes, and non-IPv4 frames
//     (ARP, IPv6 neighbour discovery) are never filtered;
//   - ports with portSecurityEnabled false and router interfaces (Neutron leaves them
//     unfiltered) are endpoints without filters: their traffic passes, but their bridge's
//     connections are still tracked in its own zone; ports without a parseable MAC, and ports
//     on a network without a bridge here, are not endpoints.
func Compile(in Input) []policy.Endpoint {
	groups := map[string]*netv1.SecurityGroup{}
	for _, g := range in.Groups {
		groups[g.Namespace+"/"+g.Name] = g
	}
	c := compiler{in: in, groups: groups, members: map[string]*policy.AddrSet{}}
	// Ports with the same groups on the same network get the same Filters (the same slices,
	// which lets the renderer share their chain without comparing rules).
	filters := map[string][2]policy.Filter{}
	var eps []policy.Endpoint
	for _, p := range in.Ports {
		if p.Status.NodeName != in.Node {
			continue
		}
		mac, err := net.ParseMAC(p.Status.MACAddress)
		if err != nil || len(mac) != 6 {
			continue
		}
		nw, ok := in.Networks[p.Namespace+"/"+p.Spec.Network]
		if !ok || nw.Bridge == "" {
			continue
		}
		ep := policy.Endpoint{
			Link: &policy.Link{Bridge: nw.Bridge, MAC: mac, Zone: nw.Zone},
			Name: p.Namespace + "/" + p.Name,
		}
		if addrs := fixedIPs(p); len(addrs) > 0 {
			ep.Addr = addrs[0]
		}
		if !filtered(p) {
			eps = append(eps, ep) // not isolated; its bridge still gets its zone
			continue
		}
		key := p.Namespace + "/" + p.Spec.Network + "/" + strings.Join(groupNames(p), ",")
		f, ok := filters[key]
		if !ok {
			f = c.filters(p)
			filters[key] = f
		}
		ep.Ingress, ep.Egress = []policy.Filter{f[0]}, []policy.Filter{f[1]}
		eps = append(eps, ep)
	}
	slices.SortFunc(eps, func(a, b policy.Endpoint) int {
		if c := strings.Compare(a.Link.Bridge, b.Link.Bridge); c != 0 {
			return c
		}
		return slices.Compare(a.Link.MAC, b.Link.MAC)
	})
	return eps
}

// filters returns a port's ingress and egress Filters.
func (c compiler) filters(p *netv1.Port) [2]policy.Filter {
	ingress := policy.Filter{Source: FilterSource, Allows: []policy.Allow{{Ports: []policy.PortRange{dhcpClient}}}}
	egress := policy.Filter{Source: FilterSource, Allows: []policy.Allow{{Ports: []policy.PortRange{dhcpServer}}}}
	for _, name := range groupNames(p) {
		for _, r := range c.rules(p.Namespace, name) {
			a, ok := c.allow(p, r)
			if !ok {
				continue
			}
			if r.Direction == "egress" {
				egress.Allows = append(egress.Allows, a)
			} else {
				ingress.Allows = append(ingress.Allows, a)
			}
		}
	}
	ingress.Allows, egress.Allows = mergeByRemote(ingress.Allows), mergeByRemote(egress.Allows)
	return [2]policy.Filter{ingress, egress}
}

// mergeByRemote joins the Allows with the same remote addresses into one, so that the rules
// of a direction with one remote (everyone, a remote group) become one nft rule per protocol
// with a port set. An Allow of every protocol absorbs the others with its remote.
func mergeByRemote(allows []policy.Allow) []policy.Allow {
	index := map[string]int{}
	var out []policy.Allow
	for _, a := range allows {
		key := "*"
		if a.Remote != nil {
			key = a.Remote.String()
		}
		i, ok := index[key]
		if !ok {
			index[key] = len(out)
			out = append(out, policy.Allow{Remote: a.Remote, Ports: slices.Clone(a.Ports)})
			continue
		}
		switch {
		case out[i].Ports == nil:
		case a.Ports == nil:
			out[i].Ports = nil
		default:
			for _, p := range a.Ports {
				if !slices.Contains(out[i].Ports, p) {
					out[i].Ports = append(out[i].Ports, p)
				}
			}
		}
	}
	return out
}

// DHCP's two ports: a client asks the server's, and is answered on its own.
var (
	dhcpServer = policy.PortRange{Proto: policy.ProtoUDP, First: 67, Last: 67}
	dhcpClient = policy.PortRange{Proto: policy.ProtoUDP, First: 68, Last: 68}
)

type compiler struct {
	in      Input
	groups  map[string]*netv1.SecurityGroup // by namespace/name
	members map[string]*policy.AddrSet      // by namespace/network/group, built on first use
}

// rules returns a group's rules; see Compile for the missing ones.
func (c compiler) rules(ns, name string) []netv1.SecurityGroupRule {
	if g, ok := c.groups[ns+"/"+name]; ok {
		return g.Spec.Rules
	}
	if name == netv1.DefaultSecurityGroup {
		return []netv1.SecurityGroupRule{
			{Direction: "egress"},
			{Direction: "ingress", RemoteGroup: netv1.DefaultSecurityGroup},
		}
	}
	return nil
}

// allow compiles one rule for port p; false when it can match nothing.
func (c compiler) allow(p *netv1.Port, r netv1.SecurityGroupRule) (policy.Allow, bool) {
	if r.Ethertype != "" && r.Ethertype != "IPv4" {
		return policy.Allow{}, false
	}
	var a policy.Allow
	switch {
	case r.RemoteIPPrefix != "":
		prefix, err := netip.ParsePrefix(r.RemoteIPPrefix)
		if err != nil || !prefix.Addr().Is4() {
			return a, false
		}
		a.Remote = &policy.AddrSet{}
		a.Remote.AddPrefix(prefix)
	case r.RemoteGroup != "":
		a.Remote = c.memberAddrs(p.Namespace, p.Spec.Network, r.RemoteGroup)
		if a.Remote.Empty() {
			return a, false
		}
	}
	var proto uint8
	switch r.Protocol {
	case "", "any":
		return a, true // every protocol and port
	case "tcp":
		proto = policy.ProtoTCP
	case "udp":
		proto = policy.ProtoUDP
	case "sctp":
		proto = policy.ProtoSCTP
	case "icmp":
		pr := policy.PortRange{Proto: policy.ProtoICMP, First: 0, Last: 65535}
		if r.PortRangeMin != nil && *r.PortRangeMin >= 0 && *r.PortRangeMin <= 255 {
			pr.First, pr.Last = uint16(*r.PortRangeMin), uint16(*r.PortRangeMin)
			if m := r.PortRangeMax; m != nil && *m >= 0 && *m <= 255 {
				pr.HasCode, pr.Code = true, uint8(*m)
			}
		}
		a.Ports = []policy.PortRange{pr}
		return a, true
	default:
		return a, false // rejected by validation
	}
	pr := policy.PortRange{Proto: proto, First: 0, Last: 65535}
	if lo := r.PortRangeMin; lo != nil && *lo >= 1 && *lo <= 65535 {
		hi := *lo
		if r.PortRangeMax != nil && *r.PortRangeMax >= *lo && *r.PortRangeMax <= 65535 {
			hi = *r.PortRangeMax
		}
		pr.First, pr.Last = uint16(*lo), uint16(hi)
	}
	a.Ports = []policy.PortRange{pr}
	return a, true
}

// memberAddrs returns the fixed IPs of the ports of group on network (all nodes).
func (c compiler) memberAddrs(ns, network, group string) *policy.AddrSet {
	key := ns + "/" + network + "/" + group
	if s, ok := c.members[key]; ok {
		return s
	}
	s := &policy.AddrSet{}
	for _, p := range c.in.Ports {
		if p.Namespace != ns || p.Spec.Network != network || !filtered(p) || !slices.Contains(groupNames(p), group) {
			continue
		}
		for _, a := range fixedIPs(p) {
			s.Add(a)
		}
	}
	c.members[key] = s
	return s
}

// filtered reports whether a port's groups apply to it.
func filtered(p *netv1.Port) bool {
	if p.Spec.PortSecurityEnabled != nil && !*p.Spec.PortSecurityEnabled {
		return false
	}
	return p.Spec.Device == nil || p.Spec.Device.Kind != netv1.DeviceRouterInterface
}

func groupNames(p *netv1.Port) []string {
	if len(p.Spec.SecurityGroups) == 0 {
		return []string{netv1.DefaultSecurityGroup}
	}
	return p.Spec.SecurityGroups
}

func fixedIPs(p *netv1.Port) []netip.Addr {
	var out []netip.Addr
	for _, f := range p.Status.FixedIPs {
		if a, err := netip.ParseAddr(f.IPAddress); err == nil && a.Is4() {
			out = append(out, a)
		}
	}
	return out
}

// Render returns the node's table for the endpoints.
func Render(eps []policy.Endpoint) policy.Ruleset { return policy.RenderBridged(TableName, eps) }

// ZoneFor is the conntrack zone of a network's bridge: its VNI folded into 16 bits, never 0
// (the zone of everything else on the node).
func ZoneFor(vni int32) uint16 {
	z := uint16(uint32(vni) % 65535)
	if z == 0 {
		z = 65535
	}
	return z
}

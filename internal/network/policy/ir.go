// Package policy enforces Kubernetes NetworkPolicy on a node's pod network, and is the rule
// compiler's back end for Neutron security groups too (package secgroup compiles those into this
// IR and installs them with RenderBridged and Apply in a table of its own). It owns the nftables
// table "inet strata-policy" and nothing else.
//
// Three stages, each its own file:
//
//   - compile (NetworkPolicy, Pods, Namespaces, the node's name) -> []Endpoint, pure;
//   - render  []Endpoint -> Ruleset, a plain description of tables, chains, sets and rules, pure;
//   - apply   Ruleset -> one nftables transaction that replaces the whole table.
//
// The intermediate representation between compile and render is deliberately free of anything
// Kubernetes: an Endpoint is a local address with, per direction, a list of Filters that must all
// pass; a Filter is "isolated: allow only what one of these Allows matches"; an Allow is a remote
// address set (nil: any) and a list of protocol/port ranges (nil: any). A security group compiles
// to the same thing: each Port on the node is an Endpoint; its groups' ingress rules become one
// Filter (Neutron groups always isolate), their egress rules another; a rule's protocol and
// port_range_min/max become a PortRange, remote_ip_prefix an AddrSet of one prefix, and
// remote_group_id the AddrSet of the member Ports' fixed IPs. A workload under both a
// NetworkPolicy and a security group gets two Filters per direction, and a packet must pass both.
//
// Tenant networks may reuse each other's addresses, so an endpoint there is keyed by its Link
// (MAC on a bridge) instead of its address, and RenderBridged makes a table of its own for such
// endpoints; ICMP type/code matching (security groups only) sits next to the ports.
package policy

import (
	"bytes"
	"net"
	"net/netip"
)

// Direction is the side of an Endpoint that traffic crosses.
type Direction int

const (
	Ingress Direction = iota // to the endpoint
	Egress                   // from the endpoint
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// IP protocol numbers a PortRange may name.
const (
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
	ProtoICMP uint8 = 1
)

// Endpoint is one address on this node whose traffic is filtered.
type Endpoint struct {
	Addr netip.Addr
	// Link, when set, keys the endpoint instead of Addr (which then only names it).
	Link *Link
	Name string // for comments and errors, e.g. "ns/pod"
	// Ingress and Egress: every Filter must let a new connection pass; none means the direction
	// is not isolated (all traffic passes).
	Ingress []Filter
	Egress  []Filter
}

// Link is an interface's MAC on a Linux bridge of this node: it identifies the interface's
// traffic where addresses of different bridges overlap. Zone is the conntrack zone of the
// bridge's traffic (non-zero, the same for every endpoint of a bridge), which keeps equal
// connections of two bridges apart.
type Link struct {
	Bridge string
	MAC    net.HardwareAddr
	Zone   uint16
}

func (l *Link) is(bridge string, mac net.HardwareAddr) bool {
	return l.Bridge == bridge && bytes.Equal(l.MAC, mac)
}

// Filters returns the filters of one direction.
func (e Endpoint) Filters(d Direction) []Filter {
	if d == Egress {
		return e.Egress
	}
	return e.Ingress
}

// Filter isolates a direction of an endpoint: a new connection passes when one Allow matches.
// An empty Filter denies everything.
type Filter struct {
	Source string // what made it, for comments: "networkpolicy", "securitygroup"
	Allows []Allow
}

// Allow matches connections with the remote side in Remote (nil: any address) and the
// protocol/destination port in one of Ports (nil: any protocol, any port). For ingress the
// destination port is the endpoint's, for egress the remote's.
type Allow struct {
	Remote *AddrSet
	Ports  []PortRange
}

// PortRange is a protocol with an inclusive destination port range; First 0 and Last 65535
// mean every port of the protocol (and also match packets without ports of that protocol).
// For ProtoICMP, First..Last bound the ICMP type instead, and with HasCode only Code matches.
type PortRange struct {
	Proto       uint8
	First, Last uint16
	HasCode     bool
	Code        uint8
}

// AllPorts reports whether r covers every port of its protocol.
func (r PortRange) AllPorts() bool { return r.First == 0 && r.Last == 65535 }

func (r PortRange) contains(p Packet) bool {
	if r.Proto != p.Proto {
		return false
	}
	if p.Proto == ProtoICMP {
		return uint16(p.ICMPType) >= r.First && uint16(p.ICMPType) <= r.Last && (!r.HasCode || r.Code == p.ICMPCode)
	}
	return p.DstPort >= r.First && p.DstPort <= r.Last
}

// Packet is the first packet of a connection, for Allowed. Bridge and the MACs matter only to
// endpoints with a Link.
type Packet struct {
	Src, Dst           netip.Addr
	Proto              uint8
	DstPort            uint16
	ICMPType, ICMPCode uint8
	Bridge             string
	SrcMAC, DstMAC     net.HardwareAddr
}

// Allowed says whether the endpoints let a new connection pass, as the rendered ruleset does on
// the node: the source's egress filters if the source is an endpoint, then the destination's
// ingress filters if it is one (an endpoint with a Link is the side with its MAC on its bridge). It states the semantics for tests; the kernel enforces them.
func Allowed(eps []Endpoint, p Packet) bool {
	for _, e := range eps {
		src, dst := e.Addr == p.Src, e.Addr == p.Dst
		if e.Link != nil {
			src, dst = e.Link.is(p.Bridge, p.SrcMAC), e.Link.is(p.Bridge, p.DstMAC)
		}
		if src && !passes(e.Egress, p.Dst, p) {
			return false
		}
		if dst && !passes(e.Ingress, p.Src, p) {
			return false
		}
	}
	return true
}

func passes(filters []Filter, remote netip.Addr, p Packet) bool {
	for _, f := range filters {
		if !f.matches(remote, p) {
			return false
		}
	}
	return true
}

func (f Filter) matches(remote netip.Addr, p Packet) bool {
	for _, a := range f.Allows {
		if a.Remote != nil && !a.Remote.Contains(remote) {
			continue
		}
		if a.Ports == nil {
			return true
		}
		for _, r := range a.Ports {
			if r.contains(p) {
				return true
			}
		}
	}
	return false
}

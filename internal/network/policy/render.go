package policy

import (
	"fmt"
	"slices"
	"strings"
)

// TableName is the nftables table (family inet) this package owns completely.
const TableName = "strata-policy"

// Names of the base chains and the verdict maps that dispatch to endpoint chains.
const (
	ChainForward = "forward"
	ChainInput   = "input"
	MapIngress   = "ingress-endpoints"
	MapEgress    = "egress-endpoints"
)

// Ruleset describes the whole table: sets first (maps refer to chains, rules to sets), then
// chains with their rules. It is plain data, so tests compare it and String prints it.
type Ruleset struct {
	Table  string // of family inet; empty: TableName
	Sets   []Set
	Chains []Chain
}

// Size counts the ruleset's nftables rules and its sets' and maps' elements.
func (rs Ruleset) Size() (rules, elements int) {
	for _, ch := range rs.Chains {
		rules += len(ch.Rules)
	}
	for _, s := range rs.Sets {
		elements += len(s.Addrs) + len(s.Ports) + len(s.Jumps) + len(s.Zones)
	}
	return rules, elements
}

// TableName returns the table the ruleset describes.
func (rs Ruleset) TableName() string {
	if rs.Table == "" {
		return TableName
	}
	return rs.Table
}

// SetKind is what a Set holds.
type SetKind int

const (
	AddrSetKind    SetKind = iota // interval set of ipv4_addr
	PortSetKind                   // interval set of inet_service
	VerdictMap                    // ipv4_addr : jump <chain>
	LinkVerdictMap                // ether_addr . ifname : jump <chain>
	ZoneMap                       // ifname : conntrack zone
)

// Set is a named set or verdict map of the table.
type Set struct {
	Name  string
	Kind  SetKind
	Addrs []AddrRange   // AddrSetKind
	Ports []PortRange   // PortSetKind (Proto unused)
	Jumps []MapElement  // VerdictMap, LinkVerdictMap
	Zones []ZoneElement // ZoneMap
}

// MapElement sends an endpoint's packets to its chain.
type MapElement struct {
	Key   AddrRange // one address (First == Last); VerdictMap
	Link  *Link     // LinkVerdictMap
	Chain string
}

// ZoneElement puts a bridge's traffic in a conntrack zone.
type ZoneElement struct {
	Bridge string
	Zone   uint16
}

// Chain is a base chain (Hook "forward" or "input", type filter, priority filter, policy
// accept; Hook "prerouting" at priority raw, before conntrack) or a regular one (Hook "").
type Chain struct {
	Name  string
	Hook  string
	Rules []Rule
}

// Rule matches everything its non-zero fields ask for, in this order, then takes Verdict.
type Rule struct {
	SetZone     string     // ct zone set iifname map @SetZone (Verdict unused)
	Established bool       // ct state established,related
	VMap        *AddrMatch // ip saddr/daddr vmap @Set (Verdict unused)
	LinkVMap    *AddrMatch // ipv4 from an ethernet device, ether saddr . iifname / ether daddr . oifname vmap @Set (Verdict unused)
	Addr        *AddrMatch // ip saddr/daddr in a set or one range
	Proto       uint8      // meta l4proto
	DPort       *PortMatch // th dport in a set or one range (needs Proto)
	ICMP        *ICMPMatch // icmp type, code (needs Proto ProtoICMP)
	Verdict     Verdict
	Comment     string
}

// ICMPMatch is "icmp type First-Last" (nothing when it spans 0-255) and, with HasCode,
// "icmp code Code".
type ICMPMatch struct {
	First, Last uint8
	HasCode     bool
	Code        uint8
}

// AddrMatch is "ip <Field> @Set" or, with no Set, "ip <Field> Range".
type AddrMatch struct {
	Field string // "saddr" or "daddr"
	Set   string
	Range AddrRange
}

// PortMatch is "th dport @Set" or, with no Set, "th dport First-Last".
type PortMatch struct {
	Set         string
	First, Last uint16
}

// Verdict ends a rule: "accept", "drop", "return", or "jump" to Chain.
type Verdict struct {
	Kind  string
	Chain string
}

var (
	accept  = Verdict{Kind: "accept"}
	drop    = Verdict{Kind: "drop"}
	retVerd = Verdict{Kind: "return"}
)

// Render turns endpoints into the table's ruleset:
//
//	forward (hook forward): ct established,related accept; ip saddr vmap @egress-endpoints;
//	                        ip daddr vmap @ingress-endpoints
//	input   (hook input):   ct established,related accept; ip saddr vmap @egress-endpoints
//
// and per isolated endpoint and direction a chain "<direction>-<addr>" that returns for
// allowed traffic and drops the rest (with several Filters it jumps to one chain per Filter,
// "<direction>-<addr>-<i>", each of which must return). The hooks run at filter priority, after
// kube-proxy's DNAT (dstnat), so Service traffic is judged by its real pod address and port;
// bridged pod-to-pod traffic reaches the forward hook through br_netfilter, traffic from other
// nodes is routed in from the overlay, and pod traffic to the node itself (cluster DNS on the
// bridge address) passes the input hook, where only egress applies. Traffic from the node to its
// pods (output hook) is never filtered, as upstream allows a pod's node to reach it.
func Render(eps []Endpoint) Ruleset {
	r := renderer{sets: map[string]string{}}
	maps := map[Direction]*Set{
		Ingress: {Name: MapIngress, Kind: VerdictMap, Jumps: []MapElement{}},
		Egress:  {Name: MapEgress, Kind: VerdictMap, Jumps: []MapElement{}},
	}
	var addrEps []Endpoint
	for _, e := range eps {
		if e.Link == nil {
			addrEps = append(addrEps, e)
		}
	}
	chains := r.endpointChains(addrEps, maps, func(e Endpoint) (string, MapElement) {
		return e.Addr.String(), MapElement{Key: AddrRange{e.Addr, e.Addr}}
	})
	established := Rule{Established: true, Verdict: accept}
	egress := Rule{VMap: &AddrMatch{Field: "saddr", Set: MapEgress}}
	ingress := Rule{VMap: &AddrMatch{Field: "daddr", Set: MapIngress}}
	base := []Chain{
		{Name: ChainForward, Hook: "forward", Rules: []Rule{established, egress, ingress}},
		{Name: ChainInput, Hook: "input", Rules: []Rule{established, egress}},
	}
	return Ruleset{
		Sets:   append(r.list, *maps[Ingress], *maps[Egress]),
		Chains: append(chains, base...),
	}
}

// Names of RenderBridged's base chains and maps.
const (
	ChainPrerouting = "prerouting"
	MapZones        = "zones"
	MapIngressPorts = "ingress-ports"
	MapEgressPorts  = "egress-ports"
)

// RenderBridged turns the endpoints with a Link into the ruleset of table (family inet) for
// bridges whose ports share addresses with other bridges' (tenant networks):
//
//	prerouting (hook prerouting, priority raw): ct zone set iifname map @zones
//	forward    (hook forward):                  ct established,related accept;
//	                                            ether saddr . iifname vmap @egress-ports;
//	                                            ether daddr . oifname vmap @ingress-ports
//
// with per endpoint and direction a chain as Render makes, except that endpoints with one
// Filter whose rules are equal share one chain, "<direction>-<n>" (many ports have the same
// groups: a chain per port would multiply a group's rules by its ports).
//
// Why inet and not the bridge family: conntrack in the bridge family needs nf_conntrack_bridge,
// which kernels often lack (the test hosts' has CONFIG_NF_CONNTRACK_BRIDGE unset: any ct
// expression in a bridge table fails with EPROTO). Bridged IPv4 reaches the inet hooks through
// br_netfilter instead, which presents the bridge as both input and output device (prerouting
// included), so a port is found by its MAC on its bridge, and each bridge's connections are
// tracked in its own zone, apart from equal ones of other bridges. Non-IPv4 frames (ARP, IPv6)
// are not filtered, nor are broadcast and multicast frames on ingress (their destination MAC
// is no port's). Endpoints without a Link are ignored.
func RenderBridged(table string, eps []Endpoint) Ruleset {
	r := renderer{sets: map[string]string{}, shared: map[string]string{}, byAllows: map[allowsKey]string{}}
	maps := map[Direction]*Set{
		Ingress: {Name: MapIngressPorts, Kind: LinkVerdictMap, Jumps: []MapElement{}},
		Egress:  {Name: MapEgressPorts, Kind: LinkVerdictMap, Jumps: []MapElement{}},
	}
	zones := Set{Name: MapZones, Kind: ZoneMap, Zones: []ZoneElement{}}
	seen := map[string]bool{}
	var linkEps []Endpoint
	for _, e := range eps {
		if e.Link == nil {
			continue
		}
		linkEps = append(linkEps, e)
		if !seen[e.Link.Bridge] && e.Link.Zone != 0 {
			seen[e.Link.Bridge] = true
			zones.Zones = append(zones.Zones, ZoneElement{Bridge: e.Link.Bridge, Zone: e.Link.Zone})
		}
	}
	slices.SortFunc(zones.Zones, func(a, b ZoneElement) int { return strings.Compare(a.Bridge, b.Bridge) })
	chains := r.endpointChains(linkEps, maps, func(e Endpoint) (string, MapElement) {
		return e.Link.Bridge + "-" + strings.ReplaceAll(e.Link.MAC.String(), ":", ""), MapElement{Link: e.Link}
	})
	base := []Chain{
		{Name: ChainPrerouting, Hook: "prerouting", Rules: []Rule{{SetZone: MapZones}}},
		{Name: ChainForward, Hook: "forward", Rules: []Rule{
			{Established: true, Verdict: accept},
			{LinkVMap: &AddrMatch{Field: "saddr", Set: MapEgressPorts}},
			{LinkVMap: &AddrMatch{Field: "daddr", Set: MapIngressPorts}},
		}},
	}
	return Ruleset{
		Table:  table,
		Sets:   append(r.list, zones, *maps[Ingress], *maps[Egress]),
		Chains: append(chains, base...),
	}
}

// endpointChains makes each endpoint's chains, "<direction>-<key>", and adds their map
// elements.
func (r *renderer) endpointChains(eps []Endpoint, maps map[Direction]*Set, key func(Endpoint) (string, MapElement)) []Chain {
	var chains []Chain
	for _, e := range eps {
		k, elem := key(e)
		for _, d := range []Direction{Ingress, Egress} {
			filters := e.Filters(d)
			if len(filters) == 0 {
				continue
			}
			name := fmt.Sprintf("%s-%s", d, k)
			m := maps[d]
			if len(filters) == 1 && r.shared != nil {
				elem.Chain = r.sharedChain(&chains, filters[0], d)
				m.Jumps = append(m.Jumps, elem)
				continue
			}
			elem.Chain = name
			m.Jumps = append(m.Jumps, elem)
			if len(filters) == 1 {
				chains = append(chains, Chain{Name: name, Rules: r.filterRules(filters[0], d, e.Name)})
				continue
			}
			top := Chain{Name: name}
			for i, f := range filters {
				sub := fmt.Sprintf("%s-%d", name, i)
				top.Rules = append(top.Rules, Rule{Verdict: Verdict{Kind: "jump", Chain: sub}, Comment: f.Source})
				chains = append(chains, Chain{Name: sub, Rules: r.filterRules(f, d, e.Name)})
			}
			chains = append(chains, top)
		}
	}
	return chains
}

type renderer struct {
	sets     map[string]string // content key -> set name, so equal sets are made once
	list     []Set
	shared   map[string]string    // rules -> chain name; nil: a chain per endpoint
	nShared  [2]int               // shared chains per direction
	byAllows map[allowsKey]string // a Filter's Allows slice -> its shared chain
}

// allowsKey identifies a Filter's Allows by their backing array: compilers hand the same
// slice to endpoints with the same rules, which spares rendering them again.
type allowsKey struct {
	first *Allow
	n     int
	d     Direction
}

// sharedChain returns the chain "<direction>-<n>" with f's rules, adding it to chains unless a
// chain with the same rules exists: ports with the same groups on the same network share one.
func (r *renderer) sharedChain(chains *[]Chain, f Filter, d Direction) string {
	var ak allowsKey
	if len(f.Allows) > 0 {
		ak = allowsKey{&f.Allows[0], len(f.Allows), d}
		if name, ok := r.byAllows[ak]; ok {
			return name
		}
	}
	name := r.sharedChainOf(chains, f, d)
	if ak.first != nil {
		r.byAllows[ak] = name
	}
	return name
}

func (r *renderer) sharedChainOf(chains *[]Chain, f Filter, d Direction) string {
	rules := r.filterRules(f, d, "")
	var key strings.Builder
	key.WriteString(d.String())
	for _, rule := range rules {
		key.WriteByte('\n')
		key.WriteString(rule.String())
	}
	if name, ok := r.shared[key.String()]; ok {
		return name
	}
	name := fmt.Sprintf("%s-%d", d, r.nShared[d])
	r.nShared[d]++
	r.shared[key.String()] = name
	*chains = append(*chains, Chain{Name: name, Rules: rules})
	return name
}

// filterRules returns a Filter's chain: one rule per Allow and protocol that returns, then drop.
func (r *renderer) filterRules(f Filter, d Direction, endpoint string) []Rule {
	field := "saddr" // the remote side
	if d == Egress {
		field = "daddr"
	}
	var rules []Rule
	for _, a := range f.Allows {
		var remote *AddrMatch
		if a.Remote != nil {
			remote = r.addrMatch(field, a.Remote)
		}
		if a.Ports == nil {
			rules = append(rules, Rule{Addr: remote, Verdict: retVerd})
			continue
		}
		byProto := map[uint8][]PortRange{}
		var protos []uint8
		for _, p := range a.Ports {
			if p.Proto == ProtoICMP {
				rules = append(rules, Rule{Addr: remote, Proto: ProtoICMP, ICMP: icmpMatch(p), Verdict: retVerd})
				continue
			}
			if _, ok := byProto[p.Proto]; !ok {
				protos = append(protos, p.Proto)
			}
			byProto[p.Proto] = append(byProto[p.Proto], p)
		}
		for _, proto := range protos {
			rules = append(rules, Rule{Addr: remote, Proto: proto, DPort: r.portMatch(byProto[proto]), Verdict: retVerd})
		}
	}
	comment := fmt.Sprintf("%s %s", f.Source, d)
	if endpoint != "" {
		comment += " " + endpoint
	}
	return append(rules, Rule{Verdict: drop, Comment: comment})
}

// icmpMatch returns nil for every ICMP message.
func icmpMatch(p PortRange) *ICMPMatch {
	first, last := min(p.First, 255), min(p.Last, 255)
	if first == 0 && last == 255 && !p.HasCode {
		return nil
	}
	return &ICMPMatch{First: uint8(first), Last: uint8(last), HasCode: p.HasCode, Code: p.Code}
}

func (r *renderer) addrMatch(field string, s *AddrSet) *AddrMatch {
	ranges := s.Ranges()
	if len(ranges) == 1 {
		return &AddrMatch{Field: field, Range: ranges[0]}
	}
	return &AddrMatch{Field: field, Set: r.set(Set{Kind: AddrSetKind, Addrs: ranges}, "a:"+s.String())}
}

// portMatch merges one protocol's ranges; nil means every port.
func (r *renderer) portMatch(ports []PortRange) *PortMatch {
	slices.SortFunc(ports, func(a, b PortRange) int { return int(a.First) - int(b.First) })
	var merged []PortRange
	for _, p := range ports {
		if k := len(merged) - 1; k >= 0 && (merged[k].Last == 65535 || int(p.First) <= int(merged[k].Last)+1) {
			merged[k].Last = max(merged[k].Last, p.Last)
			continue
		}
		merged = append(merged, p)
	}
	if len(merged) == 1 {
		if merged[0].AllPorts() {
			return nil
		}
		return &PortMatch{First: merged[0].First, Last: merged[0].Last}
	}
	var key strings.Builder
	for _, p := range merged {
		fmt.Fprintf(&key, "%d-%d,", p.First, p.Last)
	}
	return &PortMatch{Set: r.set(Set{Kind: PortSetKind, Ports: merged}, "p:"+key.String())}
}

func (r *renderer) set(s Set, key string) string {
	if name, ok := r.sets[key]; ok {
		return name
	}
	prefix := "addrs"
	if s.Kind == PortSetKind {
		prefix = "ports"
	}
	s.Name = fmt.Sprintf("%s-%d", prefix, len(r.list))
	r.sets[key] = s.Name
	r.list = append(r.list, s)
	return s.Name
}

// String prints the ruleset in nft syntax (what `nft list table inet strata-policy` shows,
// give or take formatting).
func (rs Ruleset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", rs.TableName())
	for _, s := range rs.Sets {
		var elems []string
		switch s.Kind {
		case AddrSetKind:
			fmt.Fprintf(&b, "\tset %s {\n\t\ttype ipv4_addr\n\t\tflags interval\n", s.Name)
			for _, a := range s.Addrs {
				elems = append(elems, addrRangeString(a))
			}
		case PortSetKind:
			fmt.Fprintf(&b, "\tset %s {\n\t\ttype inet_service\n\t\tflags interval\n", s.Name)
			for _, p := range s.Ports {
				elems = append(elems, portString(p.First, p.Last))
			}
		case VerdictMap:
			fmt.Fprintf(&b, "\tmap %s {\n\t\ttype ipv4_addr : verdict\n", s.Name)
			for _, e := range s.Jumps {
				elems = append(elems, fmt.Sprintf("%s : jump %s", e.Key.First, e.Chain))
			}
		case LinkVerdictMap:
			fmt.Fprintf(&b, "\tmap %s {\n\t\ttype ether_addr . ifname : verdict\n", s.Name)
			for _, e := range s.Jumps {
				elems = append(elems, fmt.Sprintf("%s . %q : jump %s", e.Link.MAC, e.Link.Bridge, e.Chain))
			}
		case ZoneMap:
			fmt.Fprintf(&b, "\tmap %s {\n\t\ttype ifname : integer\n", s.Name)
			for _, z := range s.Zones {
				elems = append(elems, fmt.Sprintf("%q : %d", z.Bridge, z.Zone))
			}
		}
		if len(elems) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(elems, ", "))
		}
		b.WriteString("\t}\n")
	}
	for _, c := range rs.Chains {
		fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
		if c.Hook != "" {
			prio := "filter"
			if c.Hook == "prerouting" {
				prio = "raw"
			}
			fmt.Fprintf(&b, "\t\ttype filter hook %s priority %s; policy accept;\n", c.Hook, prio)
		}
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func (r Rule) String() string {
	var parts []string
	if r.SetZone != "" {
		return "ct zone set iifname map @" + r.SetZone
	}
	if r.Established {
		parts = append(parts, "ct state established,related")
	}
	if m := r.VMap; m != nil {
		return fmt.Sprintf("ip %s vmap @%s", m.Field, m.Set)
	}
	if m := r.LinkVMap; m != nil {
		dev := "iifname"
		if m.Field == "daddr" {
			dev = "oifname"
		}
		return fmt.Sprintf("meta nfproto ipv4 meta iiftype ether ether %s . %s vmap @%s", m.Field, dev, m.Set)
	}
	if m := r.Addr; m != nil {
		if m.Set != "" {
			parts = append(parts, fmt.Sprintf("ip %s @%s", m.Field, m.Set))
		} else {
			parts = append(parts, fmt.Sprintf("ip %s %s", m.Field, addrRangeString(m.Range)))
		}
	}
	if r.Proto != 0 {
		parts = append(parts, "meta l4proto "+protoName(r.Proto))
	}
	if m := r.DPort; m != nil {
		if m.Set != "" {
			parts = append(parts, "th dport @"+m.Set)
		} else {
			parts = append(parts, "th dport "+portString(m.First, m.Last))
		}
	}
	if m := r.ICMP; m != nil {
		if m.First != 0 || m.Last != 255 {
			parts = append(parts, "icmp type "+portString(uint16(m.First), uint16(m.Last)))
		}
		if m.HasCode {
			parts = append(parts, fmt.Sprintf("icmp code %d", m.Code))
		}
	}
	v := r.Verdict.Kind
	if v == "jump" {
		v += " " + r.Verdict.Chain
	}
	parts = append(parts, v)
	if r.Comment != "" {
		parts = append(parts, fmt.Sprintf("comment %q", r.Comment))
	}
	return strings.Join(parts, " ")
}

func addrRangeString(a AddrRange) string {
	if a.First == a.Last {
		return a.First.String()
	}
	return a.First.String() + "-" + a.Last.String()
}

func portString(first, last uint16) string {
	if first == last {
		return fmt.Sprint(first)
	}
	return fmt.Sprintf("%d-%d", first, last)
}

func protoName(p uint8) string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoSCTP:
		return "sctp"
	case ProtoICMP:
		return "icmp"
	}
	return fmt.Sprint(p)
}

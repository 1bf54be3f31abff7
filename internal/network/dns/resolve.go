package dns

import (
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// Zone is the cluster domain this server is authoritative for.
type Zone struct {
	// Domain is the cluster domain, e.g. "cluster.local"; a trailing dot is optional.
	Domain string
	// TTL, in seconds, of every answer and of negative answers.
	TTL uint32
}

// Reply is the outcome of resolving one question locally.
type Reply struct {
	// Forward means the name is not the cluster's to answer: ask the upstream resolvers.
	Forward bool
	Rcode   int
	Answer  []mdns.RR
	Ns      []mdns.RR
	Extra   []mdns.RR
}

// DNSVersion is the schema version of the Kubernetes DNS specification these answers follow,
// served as TXT at dns-version.<domain>.
const DNSVersion = "1.1.0"

// Resolve answers q from snap. It has no side effects. Names outside the cluster domain, and
// reverse lookups for addresses the cluster does not own, come back with Forward set.
func (z Zone) Resolve(q mdns.Question, snap *Snapshot) Reply {
	origin := mdns.Fqdn(strings.ToLower(z.Domain))
	name := strings.ToLower(mdns.Fqdn(q.Name))
	if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
		return Reply{Forward: true}
	}
	if isReverse(name) {
		return z.reverse(q, name, snap, origin)
	}
	if !mdns.IsSubDomain(origin, name) {
		return Reply{Forward: true}
	}
	r := resolution{z: z, q: q, origin: origin, snap: snap}
	labels := mdns.SplitDomainName(name)
	rel := labels[:len(labels)-mdns.CountLabel(origin)]
	return r.resolve(rel)
}

type resolution struct {
	z      Zone
	q      mdns.Question
	origin string
	snap   *Snapshot
}

func (r resolution) resolve(rel []string) Reply {
	n := len(rel)
	switch {
	case n == 0:
		return r.apex()
	case n == 1 && rel[0] == "dns-version":
		if r.q.Qtype == mdns.TypeTXT || r.q.Qtype == mdns.TypeANY {
			return r.answer([]mdns.RR{&mdns.TXT{Hdr: r.hdr(r.q.Name, mdns.TypeTXT), Txt: []string{DNSVersion}}}, nil)
		}
		return r.nodata()
	case n == 1 && (rel[0] == "svc" || rel[0] == "pod" || rel[0] == "vm"):
		return r.nodata() // empty non-terminals
	case rel[n-1] == "vm":
		return r.vm(rel[:n-1])
	case rel[n-1] == "pod":
		return r.pod(rel[:n-1])
	case rel[n-1] == "svc":
		return r.svc(rel[:n-1])
	}
	return r.nxdomain()
}

// apex answers for the cluster domain itself.
func (r resolution) apex() Reply {
	switch r.q.Qtype {
	case mdns.TypeSOA:
		return r.answer([]mdns.RR{r.soa()}, nil)
	case mdns.TypeNS:
		return r.answer([]mdns.RR{&mdns.NS{Hdr: r.hdr(r.q.Name, mdns.TypeNS), Ns: "ns.dns." + r.origin}}, nil)
	}
	return r.nodata()
}

// pod answers <a-b-c-d>.<namespace>.pod.<domain>: the address is in the name ("pods insecure").
func (r resolution) pod(rel []string) Reply {
	switch len(rel) {
	case 1:
		return r.nodata() // <namespace>.pod.<domain>
	case 2:
	default:
		return r.nxdomain()
	}
	addr, ok := parseDashedIP(rel[0])
	if !ok {
		return r.nxdomain()
	}
	return r.addresses(r.q.Name, []netip.Addr{addr})
}

// vm answers <name>.<namespace>.vm.<domain> with the VM's addresses.
func (r resolution) vm(rel []string) Reply {
	switch len(rel) {
	case 1:
		return r.nodata() // <namespace>.vm.<domain>
	case 2:
	default:
		return r.nxdomain()
	}
	vm := r.snap.vm(rel[1], rel[0])
	if vm == nil {
		return r.nxdomain()
	}
	return r.addresses(r.q.Name, vm.Addrs)
}

// svc answers everything under <namespace>.svc.<domain>.
func (r resolution) svc(rel []string) Reply {
	n := len(rel)
	if n == 0 {
		return r.nxdomain()
	}
	ns := rel[n-1]
	if n == 1 {
		if r.snap != nil && r.snap.namespaces[ns] {
			return r.nodata()
		}
		return r.nxdomain()
	}
	svc := r.snap.service(ns, rel[n-2])
	if svc == nil {
		return r.nxdomain()
	}
	switch n {
	case 2:
		return r.service(svc)
	case 3:
		if strings.HasPrefix(rel[0], "_") { // _<proto>.<svc>: empty non-terminal when used
			if len(r.portsFor(svc, "", strings.TrimPrefix(rel[0], "_"))) > 0 {
				return r.nodata()
			}
			return r.nxdomain()
		}
		return r.endpoint(svc, rel[0])
	case 4:
		if strings.HasPrefix(rel[0], "_") && strings.HasPrefix(rel[1], "_") {
			return r.srv(svc, strings.TrimPrefix(rel[0], "_"), strings.TrimPrefix(rel[1], "_"))
		}
	}
	return r.nxdomain()
}

func (r resolution) service(svc *Service) Reply {
	if svc.ExternalName != "" {
		target := mdns.Fqdn(svc.ExternalName)
		return r.answer([]mdns.RR{&mdns.CNAME{Hdr: r.hdr(r.q.Name, mdns.TypeCNAME), Target: target}}, nil)
	}
	if r.q.Qtype == mdns.TypeSRV {
		return r.srv(svc, "", "")
	}
	if !svc.Headless {
		return r.addresses(r.q.Name, svc.ClusterIPs)
	}
	if len(svc.Endpoints) == 0 {
		// A headless service without ready endpoints has no records, as in CoreDNS.
		return r.nxdomain()
	}
	addrs := make([]netip.Addr, 0, len(svc.Endpoints))
	for _, ep := range svc.Endpoints {
		addrs = append(addrs, ep.Addr)
	}
	return r.addresses(r.q.Name, addrs)
}

// endpoint answers <hostname>.<svc>.<ns>.svc.<domain> for a headless service's endpoints; an
// endpoint without a hostname answers to its dashed address.
func (r resolution) endpoint(svc *Service, host string) Reply {
	if !svc.Headless {
		return r.nxdomain()
	}
	var addrs []netip.Addr
	for _, ep := range svc.Endpoints {
		if endpointHostname(ep) == host {
			addrs = append(addrs, ep.Addr)
		}
	}
	if len(addrs) == 0 {
		return r.nxdomain()
	}
	return r.addresses(r.q.Name, addrs)
}

// srv answers _<port>._<proto>.<svc>.<ns>.svc.<domain>; empty port and proto (an SRV query for
// the service name itself) select every port.
func (r resolution) srv(svc *Service, portName, proto string) Reply {
	if svc.ExternalName != "" {
		return r.nxdomain()
	}
	svcName := svc.fqdn(r.origin)
	var answer, extra []mdns.RR
	if !svc.Headless {
		ports := r.portsFor(svc, portName, proto)
		if len(ports) == 0 {
			return r.nxdomain()
		}
		for _, p := range ports {
			answer = append(answer, r.srvRR(p.Port, svcName, len(ports)))
		}
		extra = r.addressRRs(svcName, svc.ClusterIPs, true)
	} else {
		type target struct {
			host string
			port uint16
		}
		seen := map[target]bool{}
		var matched []Endpoint
		var ports []uint16
		for _, ep := range svc.Endpoints {
			for _, p := range ep.Ports {
				if !portMatches(p, portName, proto) {
					continue
				}
				t := target{endpointHostname(ep), p.Port}
				if seen[t] {
					continue
				}
				seen[t] = true
				matched = append(matched, ep)
				ports = append(ports, p.Port)
			}
		}
		if len(matched) == 0 {
			if len(r.portsFor(svc, portName, proto)) > 0 {
				return r.nodata() // the port exists, no endpoint serves it right now
			}
			return r.nxdomain()
		}
		added := map[netip.Addr]bool{}
		for i, ep := range matched {
			host := endpointHostname(ep) + "." + svcName
			answer = append(answer, r.srvRR(ports[i], host, len(matched)))
			if !added[ep.Addr] {
				added[ep.Addr] = true
				extra = append(extra, r.addressRRs(host, []netip.Addr{ep.Addr}, true)...)
			}
		}
	}
	if r.q.Qtype != mdns.TypeSRV && r.q.Qtype != mdns.TypeANY {
		return r.nodata()
	}
	return r.answer(answer, extra)
}

func (r resolution) srvRR(port uint16, target string, n int) mdns.RR {
	return &mdns.SRV{Hdr: r.hdr(r.q.Name, mdns.TypeSRV), Priority: 0, Weight: uint16(100 / n), Port: port, Target: target}
}

func (r resolution) portsFor(svc *Service, portName, proto string) []Port {
	var out []Port
	for _, p := range svc.Ports {
		if portMatches(p, portName, proto) {
			out = append(out, p)
		}
	}
	return out
}

// portMatches reports whether p is selected by _<portName>._<proto>; empty selects anything.
// Only named ports have SRV names.
func portMatches(p Port, portName, proto string) bool {
	if portName != "" && (p.Name == "" || strings.ToLower(p.Name) != portName) {
		return false
	}
	return proto == "" || p.Protocol == proto
}

// addresses answers A/AAAA (and ANY) with the addresses of the queried family. A name that
// exists but has nothing of that family or type gets NOERROR with no answers.
func (r resolution) addresses(owner string, addrs []netip.Addr) Reply {
	var rrs []mdns.RR
	switch r.q.Qtype {
	case mdns.TypeA, mdns.TypeAAAA, mdns.TypeANY:
		rrs = r.addressRRs(owner, addrs, false)
	}
	if len(rrs) == 0 {
		return r.nodata()
	}
	return r.answer(rrs, nil)
}

// addressRRs builds A and AAAA records for addrs; all families when both is set, else the
// queried family.
func (r resolution) addressRRs(owner string, addrs []netip.Addr, both bool) []mdns.RR {
	var rrs []mdns.RR
	seen := map[netip.Addr]bool{}
	for _, a := range addrs {
		if seen[a] {
			continue
		}
		seen[a] = true
		wantA := both || r.q.Qtype == mdns.TypeA || r.q.Qtype == mdns.TypeANY
		wantAAAA := both || r.q.Qtype == mdns.TypeAAAA || r.q.Qtype == mdns.TypeANY
		switch {
		case a.Is4() && wantA:
			rrs = append(rrs, &mdns.A{Hdr: r.hdr(owner, mdns.TypeA), A: a.AsSlice()})
		case a.Is6() && wantAAAA:
			rrs = append(rrs, &mdns.AAAA{Hdr: r.hdr(owner, mdns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	return rrs
}

// reverse answers PTR queries for service and endpoint IPs; everything else in the reverse
// trees belongs to the host's resolvers.
func (z Zone) reverse(q mdns.Question, name string, snap *Snapshot, origin string) Reply {
	if q.Qtype != mdns.TypePTR || snap == nil {
		return Reply{Forward: true}
	}
	addr, ok := parseReverse(name)
	if !ok {
		return Reply{Forward: true}
	}
	targets := snap.ptr[addr]
	if len(targets) == 0 {
		return Reply{Forward: true}
	}
	r := resolution{z: z, q: q, origin: origin, snap: snap}
	var rrs []mdns.RR
	for _, t := range targets {
		if t.vm != nil {
			target := t.vm.Name + "." + t.vm.Namespace + ".vm." + origin
			rrs = append(rrs, &mdns.PTR{Hdr: r.hdr(q.Name, mdns.TypePTR), Ptr: target})
			continue
		}
		target := t.svc.fqdn(origin)
		if t.hostname != "" {
			target = t.hostname + "." + target
		}
		rrs = append(rrs, &mdns.PTR{Hdr: r.hdr(q.Name, mdns.TypePTR), Ptr: target})
	}
	return r.answer(rrs, nil)
}

func (r resolution) answer(answer, extra []mdns.RR) Reply {
	return Reply{Rcode: mdns.RcodeSuccess, Answer: answer, Extra: extra}
}

func (r resolution) nodata() Reply {
	return Reply{Rcode: mdns.RcodeSuccess, Ns: []mdns.RR{r.soa()}}
}

func (r resolution) nxdomain() Reply {
	return Reply{Rcode: mdns.RcodeNameError, Ns: []mdns.RR{r.soa()}}
}

func (r resolution) soa() mdns.RR {
	var serial uint32
	if r.snap != nil {
		serial = r.snap.Serial
	}
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: r.origin, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: r.z.TTL},
		Ns:      "ns.dns." + r.origin,
		Mbox:    "hostmaster." + r.origin,
		Serial:  serial,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  r.z.TTL,
	}
}

func (r resolution) hdr(owner string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: owner, Rrtype: t, Class: mdns.ClassINET, Ttl: r.z.TTL}
}

func (s *Service) fqdn(origin string) string {
	return strings.ToLower(s.Name) + "." + strings.ToLower(s.Namespace) + ".svc." + origin
}

func endpointHostname(ep Endpoint) string {
	if ep.Hostname != "" {
		return ep.Hostname
	}
	return dashedIP(ep.Addr)
}

// dashedIP writes an address as one DNS label: 10.1.2.3 -> 10-1-2-3, fd00::1 -> fd00--1.
func dashedIP(a netip.Addr) string {
	if a.Is4() {
		return strings.ReplaceAll(a.String(), ".", "-")
	}
	return strings.ReplaceAll(a.String(), ":", "-")
}

func parseDashedIP(label string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ".")); err == nil && a.Is4() {
		return a, true
	}
	if a, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ":")); err == nil && a.Is6() && !a.Is4In6() && a.Zone() == "" {
		return a, true
	}
	return netip.Addr{}, false
}

func isReverse(name string) bool {
	return mdns.IsSubDomain("in-addr.arpa.", name) || mdns.IsSubDomain("ip6.arpa.", name)
}

// parseReverse turns a complete reverse name (d.c.b.a.in-addr.arpa. or the 32 nibbles of
// ip6.arpa.) back into an address.
func parseReverse(name string) (netip.Addr, bool) {
	labels := mdns.SplitDomainName(name)
	switch {
	case strings.HasSuffix(name, ".in-addr.arpa.") && len(labels) == 6:
		a, err := netip.ParseAddr(labels[3] + "." + labels[2] + "." + labels[1] + "." + labels[0])
		return a, err == nil && a.Is4()
	case strings.HasSuffix(name, ".ip6.arpa.") && len(labels) == 34:
		var b [16]byte
		for i := 0; i < 32; i++ {
			l := labels[31-i]
			if len(l) != 1 {
				return netip.Addr{}, false
			}
			v := strings.IndexByte("0123456789abcdef", l[0])
			if v < 0 {
				return netip.Addr{}, false
			}
			if i%2 == 0 {
				b[i/2] = byte(v) << 4
			} else {
				b[i/2] |= byte(v)
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

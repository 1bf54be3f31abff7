package dns

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

func testSnapshot() *Snapshot {
	a := netip.MustParseAddr
	return NewSnapshotWithVMs(7, []Service{
		{
			Namespace: "default", Name: "web",
			ClusterIPs: []netip.Addr{a("10.43.0.20")},
			Ports: []Port{
				{Name: "http", Protocol: "tcp", Port: 80},
				{Name: "dns", Protocol: "udp", Port: 53},
				{Protocol: "tcp", Port: 8080},
			},
		},
		{
			Namespace: "default", Name: "dual",
			ClusterIPs: []netip.Addr{a("10.43.0.21"), a("fd00:43::21")},
		},
		{
			Namespace: "db", Name: "pg", Headless: true,
			Ports: []Port{{Name: "pg", Protocol: "tcp", Port: 5432}},
			Endpoints: []Endpoint{
				{Addr: a("10.42.0.5"), Hostname: "pg-0", Ports: []Port{{Name: "pg", Protocol: "tcp", Port: 5432}}},
				{Addr: a("10.42.1.6"), Ports: []Port{{Name: "pg", Protocol: "tcp", Port: 5432}}},
			},
		},
		{Namespace: "db", Name: "empty", Headless: true, Ports: []Port{{Name: "pg", Protocol: "tcp", Port: 5432}}},
		{Namespace: "default", Name: "ext", ExternalName: "db.example.com"},
	}, []VM{{Namespace: "proj", Name: "db1", Addrs: []netip.Addr{a("10.42.2.9")}}})
}

func TestResolve(t *testing.T) {
	soa := "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 7 7200 1800 86400 5"
	tests := []struct {
		name    string
		qname   string
		qtype   uint16
		forward bool
		rcode   int
		answer  []string
		ns      []string
		extra   []string
	}{
		{name: "cluster IP", qname: "web.default.svc.cluster.local.", qtype: mdns.TypeA,
			answer: []string{"web.default.svc.cluster.local. 5 IN A 10.43.0.20"}},
		{name: "case kept in owner, ignored in match", qname: "Web.Default.SVC.cluster.local.", qtype: mdns.TypeA,
			answer: []string{"Web.Default.SVC.cluster.local. 5 IN A 10.43.0.20"}},
		{name: "AAAA for IPv4-only service is NODATA", qname: "web.default.svc.cluster.local.", qtype: mdns.TypeAAAA,
			ns: []string{soa}},
		{name: "TXT for service is NODATA", qname: "web.default.svc.cluster.local.", qtype: mdns.TypeTXT,
			ns: []string{soa}},
		{name: "dual stack AAAA", qname: "dual.default.svc.cluster.local.", qtype: mdns.TypeAAAA,
			answer: []string{"dual.default.svc.cluster.local. 5 IN AAAA fd00:43::21"}},
		{name: "unknown service", qname: "nope.default.svc.cluster.local.", qtype: mdns.TypeA,
			rcode: mdns.RcodeNameError, ns: []string{soa}},
		{name: "search path expansion of external name", qname: "example.com.default.svc.cluster.local.", qtype: mdns.TypeA,
			rcode: mdns.RcodeNameError, ns: []string{soa}},
		{name: "known namespace is empty non-terminal", qname: "db.svc.cluster.local.", qtype: mdns.TypeA,
			ns: []string{soa}},
		{name: "unknown namespace", qname: "nons.svc.cluster.local.", qtype: mdns.TypeA,
			rcode: mdns.RcodeNameError, ns: []string{soa}},
		{name: "svc label is empty non-terminal", qname: "svc.cluster.local.", qtype: mdns.TypeA, ns: []string{soa}},
		{name: "junk in zone", qname: "foo.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
		{name: "apex SOA", qname: "cluster.local.", qtype: mdns.TypeSOA, answer: []string{soa}},
		{name: "apex NS", qname: "cluster.local.", qtype: mdns.TypeNS, answer: []string{"cluster.local. 5 IN NS ns.dns.cluster.local."}},
		{name: "dns-version", qname: "dns-version.cluster.local.", qtype: mdns.TypeTXT,
			answer: []string{`dns-version.cluster.local. 5 IN TXT "1.1.0"`}},
		{name: "headless A", qname: "pg.db.svc.cluster.local.", qtype: mdns.TypeA,
			answer: []string{"pg.db.svc.cluster.local. 5 IN A 10.42.0.5", "pg.db.svc.cluster.local. 5 IN A 10.42.1.6"}},
		{name: "headless without endpoints", qname: "empty.db.svc.cluster.local.", qtype: mdns.TypeA,
			rcode: mdns.RcodeNameError, ns: []string{soa}},
		{name: "headless endpoint hostname", qname: "pg-0.pg.db.svc.cluster.local.", qtype: mdns.TypeA,
			answer: []string{"pg-0.pg.db.svc.cluster.local. 5 IN A 10.42.0.5"}},
		{name: "headless endpoint dashed IP", qname: "10-42-1-6.pg.db.svc.cluster.local.", qtype: mdns.TypeA,
			answer: []string{"10-42-1-6.pg.db.svc.cluster.local. 5 IN A 10.42.1.6"}},
		{name: "unknown endpoint hostname", qname: "pg-9.pg.db.svc.cluster.local.", qtype: mdns.TypeA,
			rcode: mdns.RcodeNameError, ns: []string{soa}},
		{name: "hostname under cluster IP service", qname: "pg-0.web.default.svc.cluster.local.", qtype: mdns.TypeA,
			rcode: mdns.RcodeNameError, ns: []string{soa}},
		{name: "external name", qname: "ext.default.svc.cluster.local.", qtype: mdns.TypeA,
			answer: []string{"ext.default.svc.cluster.local. 5 IN CNAME db.example.com."}},
		{name: "SRV named port", qname: "_http._tcp.web.default.svc.cluster.local.", qtype: mdns.TypeSRV,
			answer: []string{"_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."},
			extra:  []string{"web.default.svc.cluster.local. 5 IN A 10.43.0.20"}},
		{name: "SRV udp port", qname: "_dns._udp.web.default.svc.cluster.local.", qtype: mdns.TypeSRV,
			answer: []string{"_dns._udp.web.default.svc.cluster.local. 5 IN SRV 0 100 53 web.default.svc.cluster.local."},
			extra:  []string{"web.default.svc.cluster.local. 5 IN A 10.43.0.20"}},
		{name: "SRV wrong protocol", qname: "_http._udp.web.default.svc.cluster.local.", qtype: mdns.TypeSRV,
			rcode: mdns.RcodeNameError, ns: []string{soa}},
		{name: "SRV name asked for A", qname: "_http._tcp.web.default.svc.cluster.local.", qtype: mdns.TypeA,
			ns: []string{soa}},
		{name: "proto empty non-terminal", qname: "_tcp.web.default.svc.cluster.local.", qtype: mdns.TypeSRV,
			ns: []string{soa}},
		{name: "SRV headless", qname: "_pg._tcp.pg.db.svc.cluster.local.", qtype: mdns.TypeSRV,
			answer: []string{
				"_pg._tcp.pg.db.svc.cluster.local. 5 IN SRV 0 50 5432 pg-0.pg.db.svc.cluster.local.",
				"_pg._tcp.pg.db.svc.cluster.local. 5 IN SRV 0 50 5432 10-42-1-6.pg.db.svc.cluster.local.",
			},
			extra: []string{
				"pg-0.pg.db.svc.cluster.local. 5 IN A 10.42.0.5",
				"10-42-1-6.pg.db.svc.cluster.local. 5 IN A 10.42.1.6",
			}},
		{name: "SRV headless without endpoints", qname: "_pg._tcp.empty.db.svc.cluster.local.", qtype: mdns.TypeSRV,
			ns: []string{soa}},
		{name: "pod A", qname: "10-42-3-7.default.pod.cluster.local.", qtype: mdns.TypeA,
			answer: []string{"10-42-3-7.default.pod.cluster.local. 5 IN A 10.42.3.7"}},
		{name: "pod AAAA of IPv4 pod", qname: "10-42-3-7.default.pod.cluster.local.", qtype: mdns.TypeAAAA,
			ns: []string{soa}},
		{name: "pod IPv6", qname: "fd00-42--7.any.pod.cluster.local.", qtype: mdns.TypeAAAA,
			answer: []string{"fd00-42--7.any.pod.cluster.local. 5 IN AAAA fd00:42::7"}},
		{name: "pod bad address", qname: "10-42-3.default.pod.cluster.local.", qtype: mdns.TypeA,
			rcode: mdns.RcodeNameError, ns: []string{soa}},
		{name: "pod namespace", qname: "default.pod.cluster.local.", qtype: mdns.TypeA, ns: []string{soa}},
		{name: "outside the zone", qname: "example.com.", qtype: mdns.TypeA, forward: true},
		{name: "zone suffix without boundary", qname: "xcluster.local.", qtype: mdns.TypeA, forward: true},
		{name: "PTR cluster IP", qname: "20.0.43.10.in-addr.arpa.", qtype: mdns.TypePTR,
			answer: []string{"20.0.43.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."}},
		{name: "PTR headless endpoint", qname: "5.0.42.10.in-addr.arpa.", qtype: mdns.TypePTR,
			answer: []string{"5.0.42.10.in-addr.arpa. 5 IN PTR pg-0.pg.db.svc.cluster.local."}},
		{name: "PTR IPv6 cluster IP", qname: "1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.4.0.0.0.0.d.f.ip6.arpa.", qtype: mdns.TypePTR,
			answer: []string{"1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.4.0.0.0.0.d.f.ip6.arpa. 5 IN PTR dual.default.svc.cluster.local."}},
		{name: "VM", qname: "db1.proj.vm.cluster.local.", qtype: mdns.TypeA,
			answer: []string{"db1.proj.vm.cluster.local. 5 IN A 10.42.2.9"}},
		{name: "VM of another namespace", qname: "db1.other.vm.cluster.local.", qtype: mdns.TypeA,
			rcode: mdns.RcodeNameError, ns: []string{soa}},
		{name: "VM namespace", qname: "proj.vm.cluster.local.", qtype: mdns.TypeA, ns: []string{soa}},
		{name: "PTR VM", qname: "9.2.42.10.in-addr.arpa.", qtype: mdns.TypePTR,
			answer: []string{"9.2.42.10.in-addr.arpa. 5 IN PTR db1.proj.vm.cluster.local."}},
		{name: "PTR unknown address", qname: "1.1.168.192.in-addr.arpa.", qtype: mdns.TypePTR, forward: true},
		{name: "PTR partial reverse name", qname: "43.10.in-addr.arpa.", qtype: mdns.TypePTR, forward: true},
	}
	zone := Zone{Domain: "cluster.local", TTL: 5}
	snap := testSnapshot()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := zone.Resolve(mdns.Question{Name: tt.qname, Qtype: tt.qtype, Qclass: mdns.ClassINET}, snap)
			if got.Forward != tt.forward {
				t.Fatalf("Forward = %v, want %v", got.Forward, tt.forward)
			}
			if tt.forward {
				return
			}
			if got.Rcode != tt.rcode {
				t.Errorf("Rcode = %s, want %s", mdns.RcodeToString[got.Rcode], mdns.RcodeToString[tt.rcode])
			}
			checkRRs(t, "answer", got.Answer, tt.answer)
			checkRRs(t, "authority", got.Ns, tt.ns)
			checkRRs(t, "additional", got.Extra, tt.extra)
		})
	}
}

func TestResolveWithoutSnapshot(t *testing.T) {
	got := Zone{Domain: "cluster.local.", TTL: 5}.Resolve(mdns.Question{Name: "a.b.svc.cluster.local.", Qtype: mdns.TypeA, Qclass: mdns.ClassINET}, nil)
	if got.Forward || got.Rcode != mdns.RcodeNameError {
		t.Fatalf("got %+v, want NXDOMAIN", got)
	}
}

func checkRRs(t *testing.T, section string, got []mdns.RR, want []string) {
	t.Helper()
	var gs []string
	for _, rr := range got {
		gs = append(gs, strings.Join(strings.Fields(rr.String()), " "))
	}
	if !slices.Equal(gs, want) {
		t.Errorf("%s:\n got  %q\n want %q", section, gs, want)
	}
}

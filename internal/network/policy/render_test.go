package policy

import (
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

func TestRender(t *testing.T) {
	c := cluster(
		np("prod", "web", sel("app", "web"), both,
			[]networkingv1.NetworkPolicyIngressRule{
				{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel()}}, Ports: []networkingv1.NetworkPolicyPort{tcp(80), named("http"), portRange(9000, 9010)}},
				{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.0.2.0/24", Except: []string{"192.0.2.7/32"}}}}},
			},
			[]networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{proto("UDP", 53)}}}),
		np("prod", "db", sel("app", "db"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{
			{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel()}}, Ports: []networkingv1.NetworkPolicyPort{tcp(5432)}},
		}, nil),
	)
	got := Render(Compile(c)).String()
	want := `table inet strata-policy {
	set addrs-0 {
		type ipv4_addr
		flags interval
		elements = { 10.42.1.10-10.42.1.11, 10.42.2.20-10.42.2.21 }
	}
	set ports-1 {
		type inet_service
		flags interval
		elements = { 80, 8080, 9000-9010 }
	}
	set addrs-2 {
		type ipv4_addr
		flags interval
		elements = { 192.0.2.0-192.0.2.6, 192.0.2.8-192.0.2.255 }
	}
	map ingress-endpoints {
		type ipv4_addr : verdict
		elements = { 10.42.1.10 : jump ingress-10.42.1.10, 10.42.1.11 : jump ingress-10.42.1.11 }
	}
	map egress-endpoints {
		type ipv4_addr : verdict
		elements = { 10.42.1.10 : jump egress-10.42.1.10 }
	}
	chain ingress-10.42.1.10 {
		ip saddr @addrs-0 meta l4proto tcp th dport @ports-1 return
		ip saddr @addrs-2 return
		drop comment "networkpolicy ingress prod/web"
	}
	chain egress-10.42.1.10 {
		meta l4proto udp th dport 53 return
		drop comment "networkpolicy egress prod/web"
	}
	chain ingress-10.42.1.11 {
		ip saddr @addrs-0 meta l4proto tcp th dport 5432 return
		drop comment "networkpolicy ingress prod/db"
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		ip saddr vmap @egress-endpoints
		ip daddr vmap @ingress-endpoints
	}
	chain input {
		type filter hook input priority filter; policy accept;
		ct state established,related accept
		ip saddr vmap @egress-endpoints
	}
}
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderSeveralFilters(t *testing.T) {
	ep := Endpoint{Addr: mustAddr(webIP), Name: "vm", Ingress: []Filter{
		{Source: "networkpolicy", Allows: []Allow{{Ports: []PortRange{{Proto: ProtoTCP, First: 80, Last: 80}}}}},
		{Source: "securitygroup", Allows: []Allow{{Remote: NewAddrSet(mustAddr(clientIP))}}},
	}}
	got := Render([]Endpoint{ep}).String()
	for _, want := range []string{
		"chain ingress-10.42.1.10-0 {\n\t\tmeta l4proto tcp th dport 80 return\n\t\tdrop",
		"chain ingress-10.42.1.10-1 {\n\t\tip saddr 10.42.2.20 return\n\t\tdrop",
		"chain ingress-10.42.1.10 {\n\t\tjump ingress-10.42.1.10-0 comment \"networkpolicy\"\n\t\tjump ingress-10.42.1.10-1 comment \"securitygroup\"\n\t}",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, got)
		}
	}
	for _, p := range []struct {
		src  string
		port uint16
		want bool
	}{{clientIP, 80, true}, {clientIP, 22, false}, {devIP, 80, false}} {
		if got := Allowed([]Endpoint{ep}, Packet{Src: mustAddr(p.src), Dst: ep.Addr, Proto: ProtoTCP, DstPort: p.port}); got != p.want {
			t.Errorf("%s port %d: allowed = %v, want %v (both filters must pass)", p.src, p.port, got, p.want)
		}
	}
}

package secgroup

import (
	"testing"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
)

func TestRender(t *testing.T) {
	web := port("web", "net1", "10.0.0.10", "02:00:00:00:01:10", node, groups("web"))
	app := port("app", "net1", "10.0.0.20", "02:00:00:00:01:20", "node-b", groups("app"))
	app2 := port("app2", "net1", "10.0.0.22", "02:00:00:00:01:22", "node-b", groups("app"))
	twin := port("twin", "net2", "10.0.0.10", "02:00:00:00:02:10", node, groups("web"))
	open := port("open", "net2", "10.0.0.40", "02:00:00:00:02:40", node, noPortSecurity)
	web2 := port("web2", "net1", "10.0.0.11", "02:00:00:00:01:11", node, groups("web"))
	eps := Compile(Input{Node: node, Networks: testNets, Ports: []*netv1.Port{web, app, app2, twin, open, web2},
		Groups: []*netv1.SecurityGroup{group("web",
			ingress("tcp", i32(80), nil),
			ingress("tcp", i32(8000), i32(8080)),
			ingress("icmp", i32(8), nil),
			ingress("icmp", i32(3), i32(4)),
			netv1.SecurityGroupRule{Direction: "ingress", Protocol: "tcp", PortRangeMin: i32(5432), RemoteGroup: "app"},
			netv1.SecurityGroupRule{Direction: "egress", Protocol: "udp", PortRangeMin: i32(53), RemoteIPPrefix: "192.0.2.0/24"},
		)}})
	got := Render(eps).String()
	want := `table inet strata-secgroups {
	set ports-0 {
		type inet_service
		flags interval
		elements = { 80, 8000-8080 }
	}
	set addrs-1 {
		type ipv4_addr
		flags interval
		elements = { 10.0.0.20, 10.0.0.22 }
	}
	map zones {
		type ifname : integer
		elements = { "tnbr-000001" : 1, "tnbr-000002" : 2 }
	}
	map ingress-ports {
		type ether_addr . ifname : verdict
		elements = { 02:00:00:00:01:10 . "tnbr-000001" : jump ingress-0, 02:00:00:00:01:11 . "tnbr-000001" : jump ingress-0, 02:00:00:00:02:10 . "tnbr-000002" : jump ingress-1 }
	}
	map egress-ports {
		type ether_addr . ifname : verdict
		elements = { 02:00:00:00:01:10 . "tnbr-000001" : jump egress-0, 02:00:00:00:01:11 . "tnbr-000001" : jump egress-0, 02:00:00:00:02:10 . "tnbr-000002" : jump egress-0 }
	}
	chain ingress-0 {
		meta l4proto icmp icmp type 8 return
		meta l4proto icmp icmp type 3 icmp code 4 return
		meta l4proto udp th dport 68 return
		meta l4proto tcp th dport @ports-0 return
		ip saddr @addrs-1 meta l4proto tcp th dport 5432 return
		drop comment "securitygroup ingress"
	}
	chain egress-0 {
		meta l4proto udp th dport 67 return
		ip daddr 192.0.2.0-192.0.2.255 meta l4proto udp th dport 53 return
		drop comment "securitygroup egress"
	}
	chain ingress-1 {
		meta l4proto icmp icmp type 8 return
		meta l4proto icmp icmp type 3 icmp code 4 return
		meta l4proto udp th dport 68 return
		meta l4proto tcp th dport @ports-0 return
		drop comment "securitygroup ingress"
	}
	chain prerouting {
		type filter hook prerouting priority raw; policy accept;
		ct zone set iifname map @zones
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		meta nfproto ipv4 meta iiftype ether ether saddr . iifname vmap @egress-ports
		meta nfproto ipv4 meta iiftype ether ether daddr . oifname vmap @ingress-ports
	}
}
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

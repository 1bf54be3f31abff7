package secgroup

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/policy"
)

const node = "node-a"

var testNets = map[string]Network{
	"prod/net1": {Bridge: "tnbr-000001", Zone: 1},
	"prod/net2": {Bridge: "tnbr-000002", Zone: 2},
}

type portOpt func(*netv1.Port)

func port(name, network, ip, mac, nodeName string, opts ...portOpt) *netv1.Port {
	p := &netv1.Port{
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: name},
		Spec:       netv1.PortSpec{Network: network},
		Status: netv1.PortStatus{MACAddress: mac, NodeName: nodeName,
			FixedIPs: []netv1.FixedIP{{IPAddress: ip}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func groups(names ...string) portOpt {
	return func(p *netv1.Port) { p.Spec.SecurityGroups = names }
}

func noPortSecurity(p *netv1.Port) {
	off := false
	p.Spec.PortSecurityEnabled = &off
}

func group(name string, rules ...netv1.SecurityGroupRule) *netv1.SecurityGroup {
	return &netv1.SecurityGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: name},
		Spec: netv1.SecurityGroupSpec{Rules: rules}}
}

func i32(v int32) *int32 { return &v }

func ingress(proto string, lo, hi *int32) netv1.SecurityGroupRule {
	return netv1.SecurityGroupRule{Direction: "ingress", Protocol: proto, PortRangeMin: lo, PortRangeMax: hi}
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// pkt is a connection's first packet between two ports of the same bridge.
type pkt struct {
	from, to *netv1.Port
	proto    uint8
	port     uint16 // or ICMP type
	code     uint8
}

func (p pkt) packet() policy.Packet {
	src := netip.MustParseAddr(p.from.Status.FixedIPs[0].IPAddress)
	dst := netip.MustParseAddr(p.to.Status.FixedIPs[0].IPAddress)
	out := policy.Packet{Src: src, Dst: dst, Proto: p.proto, DstPort: p.port,
		Bridge: testNets["prod/"+p.from.Spec.Network].Bridge,
		SrcMAC: mac(p.from.Status.MACAddress), DstMAC: mac(p.to.Status.MACAddress)}
	if p.proto == policy.ProtoICMP {
		out.DstPort, out.ICMPType, out.ICMPCode = 0, uint8(p.port), p.code
	}
	return out
}

func TestCompileSemantics(t *testing.T) {
	// net1: web (group web), app and app2 (group app), db (group db), open (no port
	// security), plain (default group), remote app on another node; net2: twin with web's IP.
	web := port("web", "net1", "10.0.0.10", "02:00:00:00:01:10", node, groups("web"))
	app := port("app", "net1", "10.0.0.20", "02:00:00:00:01:20", node, groups("app"))
	remoteApp := port("remote-app", "net1", "10.0.0.21", "02:00:00:00:01:21", "node-b", groups("app"))
	db := port("db", "net1", "10.0.0.30", "02:00:00:00:01:30", node, groups("db"))
	open := port("open", "net1", "10.0.0.40", "02:00:00:00:01:40", node, groups("web"), noPortSecurity)
	plain := port("plain", "net1", "10.0.0.50", "02:00:00:00:01:50", node)
	plain2 := port("plain2", "net1", "10.0.0.51", "02:00:00:00:01:51", "node-b")
	twin := port("twin", "net2", "10.0.0.10", "02:00:00:00:02:10", node, groups("db"))
	twinApp := port("twin-app", "net2", "10.0.0.20", "02:00:00:00:02:20", node, groups("web"))

	gs := []*netv1.SecurityGroup{
		group("web",
			ingress("tcp", i32(80), nil),
			ingress("tcp", i32(8000), i32(8080)),
			ingress("icmp", i32(8), i32(0)), // echo request only
			netv1.SecurityGroupRule{Direction: "egress"},
		),
		group("app", netv1.SecurityGroupRule{Direction: "egress", Protocol: "tcp", PortRangeMin: i32(5432), RemoteIPPrefix: "10.0.0.0/24"}),
		group("db",
			netv1.SecurityGroupRule{Direction: "ingress", Protocol: "tcp", PortRangeMin: i32(5432), RemoteGroup: "app"},
			netv1.SecurityGroupRule{Direction: "ingress", Protocol: "icmp"},
		),
	}
	eps := Compile(Input{Node: node, Groups: gs, Networks: testNets,
		Ports: []*netv1.Port{web, app, remoteApp, db, open, plain, plain2, twin, twinApp}})

	var names []string
	for _, e := range eps {
		names = append(names, e.Name)
		if e.Name == "prod/open" && (e.Ingress != nil || e.Egress != nil) {
			t.Errorf("port without port security has filters: %+v", e)
		}
	}
	if got, want := strings.Join(names, " "), "prod/web prod/app prod/db prod/open prod/plain prod/twin prod/twin-app"; got != want {
		t.Fatalf("endpoints %q, want %q (this node's ports, by bridge and MAC)", got, want)
	}

	tcp, udp, icmp := policy.ProtoTCP, policy.ProtoUDP, policy.ProtoICMP
	for _, c := range []struct {
		name string
		p    pkt
		want bool
	}{
		{"port 80 open to all", pkt{plain, web, tcp, 80, 0}, true},
		{"but not past the client's egress", pkt{app, web, tcp, 80, 0}, false},
		{"port range low end", pkt{db, web, tcp, 8000, 0}, false}, // db has no egress rule
		{"port range", pkt{plain, web, tcp, 8080, 0}, true},
		{"port range high end + 1", pkt{plain, web, tcp, 8081, 0}, false},
		{"udp on the tcp port", pkt{plain, web, udp, 80, 0}, false},
		{"icmp echo request", pkt{plain, web, icmp, 8, 0}, true},
		{"icmp echo with another code", pkt{plain, web, icmp, 8, 1}, false},
		{"icmp timestamp", pkt{plain, web, icmp, 13, 0}, false},
		{"any icmp rule", pkt{web, db, icmp, 13, 0}, true},
		{"remote group member on this node", pkt{app, db, tcp, 5432, 0}, true},
		{"remote group member on another node", pkt{remoteApp, db, tcp, 5432, 0}, true},
		{"remote group: not a member", pkt{web, db, tcp, 5432, 0}, false},
		{"app egress only to 5432", pkt{app, web, tcp, 8080, 0}, false},
		{"db egress: none", pkt{db, plain, tcp, 22, 0}, false},
		{"DHCP request always out", pkt{db, remoteApp, udp, 67, 0}, true},
		{"DHCP answer always in", pkt{plain, db, udp, 68, 0}, true},
		{"default group: ingress from members", pkt{plain2, plain, tcp, 22, 0}, true},
		{"default group: not from others", pkt{web, plain, tcp, 22, 0}, false},
		{"default group: all egress", pkt{plain, app, tcp, 22, 0}, false}, // app denies ingress
		{"port security off: nothing filtered", pkt{open, plain2, udp, 9999, 0}, true},
		{"port security off is no member", pkt{open, plain, tcp, 22, 0}, false},
		// twin has web's IP on net2 and db's groups: its ingress is db's, not web's.
		{"same IP, other network: db's rules", pkt{twinApp, twin, tcp, 80, 0}, false},
		{"same IP, other network: no member on net2", pkt{twinApp, twin, tcp, 5432, 0}, false},
		{"same IP, other network: web's rules", pkt{twin, twinApp, icmp, 8, 0}, false}, // twin: no egress
	} {
		if got := policy.Allowed(eps, c.p.packet()); got != c.want {
			t.Errorf("%s: %s -> %s: allowed %v, want %v", c.name, c.p.from.Name, c.p.to.Name, got, c.want)
		}
	}
	// Default group, explicit: only what its object says.
	eps = Compile(Input{Node: node, Networks: testNets, Ports: []*netv1.Port{plain, plain2},
		Groups: []*netv1.SecurityGroup{group("default", ingress("tcp", i32(22), nil))}})
	if policy.Allowed(eps, pkt{plain, plain2, tcp, 443, 0}.packet()) {
		t.Error("explicit default group without egress rules still lets egress out")
	}
	if !policy.Allowed(eps, pkt{plain2, plain, tcp, 22, 0}.packet()) {
		t.Error("explicit default group: tcp/22 from anywhere denied")
	}
}

// TestCompileSameAddress keeps two ports with one IP on different testNets apart: their
// endpoints are keyed by bridge and MAC, and remote groups count members of the port's own
// network only.
func TestCompileSameAddress(t *testing.T) {
	a := port("a", "net1", "10.0.0.5", "02:00:00:00:00:05", node, groups("db"))
	b := port("b", "net2", "10.0.0.5", "02:00:00:00:00:05", node, groups("db"))
	client1 := port("c1", "net1", "10.0.0.7", "02:00:00:00:00:07", "node-b", groups("app"))
	eps := Compile(Input{Node: node, Networks: testNets, Ports: []*netv1.Port{a, b, client1},
		Groups: []*netv1.SecurityGroup{
			group("db", netv1.SecurityGroupRule{Direction: "ingress", Protocol: "tcp", PortRangeMin: i32(5432), RemoteGroup: "app"}),
			group("app", netv1.SecurityGroupRule{Direction: "egress"}),
		}})
	if len(eps) != 2 || eps[0].Link.Bridge != "tnbr-000001" || eps[1].Link.Bridge != "tnbr-000002" {
		t.Fatalf("endpoints %+v, want one per bridge", eps)
	}
	if eps[0].Link.Zone == eps[1].Link.Zone {
		t.Errorf("both bridges in conntrack zone %d", eps[0].Link.Zone)
	}
	from := netip.MustParseAddr("10.0.0.7")
	for _, c := range []struct {
		bridge string
		want   bool
	}{{"tnbr-000001", true}, {"tnbr-000002", false}} {
		p := policy.Packet{Src: from, Dst: netip.MustParseAddr("10.0.0.5"), Proto: policy.ProtoTCP, DstPort: 5432,
			Bridge: c.bridge, SrcMAC: mac("02:00:00:00:00:07"), DstMAC: mac("02:00:00:00:00:05")}
		if got := policy.Allowed(eps, p); got != c.want {
			t.Errorf("10.0.0.7 -> 10.0.0.5:5432 on %s: allowed %v, want %v", c.bridge, got, c.want)
		}
	}
}

func TestZoneFor(t *testing.T) {
	for vni, want := range map[int32]uint16{1: 1, 65534: 65534, 65535: 65535, 65536: 1, 16777215: 255} {
		if got := ZoneFor(vni); got != want {
			t.Errorf("ZoneFor(%d) = %d, want %d", vni, got, want)
		}
	}
}

func TestMergeByRemote(t *testing.T) {
	tcp := func(p uint16) policy.PortRange { return policy.PortRange{Proto: policy.ProtoTCP, First: p, Last: p} }
	everyone := &policy.AddrSet{}
	everyone.AddPrefix(netip.MustParsePrefix("0.0.0.0/0"))
	sameAsEveryone := &policy.AddrSet{}
	sameAsEveryone.AddPrefix(netip.MustParsePrefix("0.0.0.0/0"))
	members := policy.NewAddrSet(netip.MustParseAddr("10.0.0.7"))
	for _, c := range []struct {
		name string
		in   []policy.Allow
		want string
	}{
		{"ports of one remote join", []policy.Allow{{Remote: everyone, Ports: []policy.PortRange{tcp(80)}}, {Remote: sameAsEveryone, Ports: []policy.PortRange{tcp(443), tcp(80)}}},
			"0.0.0.0-255.255.255.255:[{6 80 80 false 0} {6 443 443 false 0}]"},
		{"every protocol absorbs", []policy.Allow{{Remote: members, Ports: []policy.PortRange{tcp(80)}}, {Remote: members}, {Remote: members, Ports: []policy.PortRange{tcp(22)}}},
			"10.0.0.7:[]"},
		{"remotes stay apart", []policy.Allow{{Ports: []policy.PortRange{tcp(80)}}, {Remote: members, Ports: []policy.PortRange{tcp(22)}}},
			"*:[{6 80 80 false 0}] 10.0.0.7:[{6 22 22 false 0}]"},
	} {
		var got []string
		for _, a := range mergeByRemote(c.in) {
			remote := "*"
			if a.Remote != nil {
				remote = a.Remote.String()
			}
			got = append(got, fmt.Sprintf("%s:%v", remote, a.Ports))
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%s: got %q, want %q", c.name, strings.Join(got, " "), c.want)
		}
	}
}

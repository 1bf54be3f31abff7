package overlay

import (
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func mkNode(name, ip, cidr string) Node {
	return Node{Name: name, IP: netip.MustParseAddr(ip), PodCIDR: netip.MustParsePrefix(cidr), VTEPMAC: VTEPMAC(name)}
}

func TestVTEPMAC(t *testing.T) {
	a, b := VTEPMAC("node-a"), VTEPMAC("node-b")
	if a.String() != VTEPMAC("node-a").String() || a.String() == b.String() {
		t.Fatal("MAC not deterministic or not distinct")
	}
	for _, m := range []net.HardwareAddr{a, b} {
		if len(m) != 6 || m[0]&1 != 0 || m[0]&2 == 0 {
			t.Fatalf("%s is not a locally administered unicast MAC", m)
		}
	}
}

func TestDesired(t *testing.T) {
	a := mkNode("a", "192.168.77.1", "10.42.1.0/24")
	b := mkNode("b", "192.168.77.2", "10.42.2.0/24")
	c := mkNode("c", "192.168.77.3", "10.42.3.0/24")
	entries := func(n Node) (Route, Neighbor, FDBEntry) {
		v := VTEPAddr(n.PodCIDR)
		return Route{Dst: n.PodCIDR, Via: v}, Neighbor{IP: v, MAC: n.VTEPMAC.String()}, FDBEntry{MAC: n.VTEPMAC.String(), Dst: n.IP}
	}
	rb, nb, fb := entries(b)
	rc, nc, fc := entries(c)
	tests := []struct {
		name  string
		self  string
		nodes []Node
		want  State
		err   string
	}{
		{name: "alone", self: "a", nodes: []Node{a}, want: State{}},
		{name: "three nodes, any order", self: "a", nodes: []Node{c, a, b},
			want: State{Routes: []Route{rb, rc}, Neighbors: []Neighbor{nb, nc}, FDB: sortedFDB(fb, fc)}},
		{name: "self absent from list", self: "a", nodes: []Node{b},
			want: State{Routes: []Route{rb}, Neighbors: []Neighbor{nb}, FDB: []FDBEntry{fb}}},
		{name: "incomplete node skipped", self: "a", nodes: []Node{a, b, {Name: "d", IP: netip.MustParseAddr("192.168.77.4")}},
			want: State{Routes: []Route{rb}, Neighbors: []Neighbor{nb}, FDB: []FDBEntry{fb}}, err: "node d has no IPv4 pod CIDR"},
		{name: "peer may not shadow our CIDR", self: "b", nodes: []Node{a, b, mkNode("0-evil", "192.168.77.9", "10.42.2.0/25")},
			want: State{Routes: []Route{rb2(a)}, Neighbors: []Neighbor{nb2(a)}, FDB: []FDBEntry{fb2(a)}}, err: "0-evil pod CIDR 10.42.2.0/25 overlaps 10.42.2.0/24"},
		{name: "duplicate IP skipped", self: "a", nodes: []Node{a, b, mkNode("z", "192.168.77.2", "10.42.9.0/24")},
			want: State{Routes: []Route{rb}, Neighbors: []Neighbor{nb}, FDB: []FDBEntry{fb}}, err: "node z has the IP of b"},
		{name: "duplicate MAC skipped", self: "a", nodes: []Node{a, b, {Name: "z", IP: netip.MustParseAddr("192.168.77.9"),
			PodCIDR: netip.MustParsePrefix("10.42.9.0/24"), VTEPMAC: b.VTEPMAC}},
			want: State{Routes: []Route{rb}, Neighbors: []Neighbor{nb}, FDB: []FDBEntry{fb}}, err: "node z has the VTEP MAC of b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Desired(tt.self, tt.nodes)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("err = %v, want %q", err, tt.err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func rb2(n Node) Route    { return Route{Dst: n.PodCIDR, Via: VTEPAddr(n.PodCIDR)} }
func nb2(n Node) Neighbor { return Neighbor{IP: VTEPAddr(n.PodCIDR), MAC: n.VTEPMAC.String()} }
func fb2(n Node) FDBEntry { return FDBEntry{MAC: n.VTEPMAC.String(), Dst: n.IP} }

func sortedFDB(f ...FDBEntry) []FDBEntry {
	s := State{FDB: f}
	s.sort()
	return s.FDB
}

func TestDiff(t *testing.T) {
	r1 := Route{Dst: netip.MustParsePrefix("10.42.1.0/24"), Via: netip.MustParseAddr("10.42.1.0")}
	r2 := Route{Dst: netip.MustParsePrefix("10.42.2.0/24"), Via: netip.MustParseAddr("10.42.2.0")}
	n1 := Neighbor{IP: netip.MustParseAddr("10.42.1.0"), MAC: "02:00:00:00:00:01"}
	n1new := Neighbor{IP: netip.MustParseAddr("10.42.1.0"), MAC: "02:00:00:00:00:99"}
	f1 := FDBEntry{MAC: "02:00:00:00:00:01", Dst: netip.MustParseAddr("192.168.77.1")}
	f1moved := FDBEntry{MAC: "02:00:00:00:00:01", Dst: netip.MustParseAddr("192.168.77.100")}
	tests := []struct {
		name                string
		current, desired    State
		wantAdd, wantRemove State
	}{
		{name: "in sync", current: State{Routes: []Route{r1}}, desired: State{Routes: []Route{r1}}},
		{name: "empty kernel", desired: State{Routes: []Route{r1}, Neighbors: []Neighbor{n1}, FDB: []FDBEntry{f1}},
			wantAdd: State{Routes: []Route{r1}, Neighbors: []Neighbor{n1}, FDB: []FDBEntry{f1}}},
		{name: "stale node removed", current: State{Routes: []Route{r1, r2}}, desired: State{Routes: []Route{r1}},
			wantRemove: State{Routes: []Route{r2}}},
		{name: "changed MAC and node IP", current: State{Neighbors: []Neighbor{n1}, FDB: []FDBEntry{f1}},
			desired: State{Neighbors: []Neighbor{n1new}, FDB: []FDBEntry{f1moved}},
			wantAdd: State{Neighbors: []Neighbor{n1new}, FDB: []FDBEntry{f1moved}}, wantRemove: State{Neighbors: []Neighbor{n1}, FDB: []FDBEntry{f1}}},
		{name: "duplicates in kernel collapse", current: State{FDB: []FDBEntry{f1, f1moved, f1moved}}, desired: State{FDB: []FDBEntry{f1}},
			wantRemove: State{FDB: []FDBEntry{f1moved}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			add, remove := Diff(tt.current, tt.desired)
			if !reflect.DeepEqual(add, tt.wantAdd) || !reflect.DeepEqual(remove, tt.wantRemove) {
				t.Fatalf("add %+v remove %+v\nwant add %+v remove %+v", add, remove, tt.wantAdd, tt.wantRemove)
			}
		})
	}
}

func TestNodeFromObject(t *testing.T) {
	tests := []struct {
		name        string
		podCIDR     string
		annotations map[string]string
		internalIP  string
		wantIP      string
		wantMAC     string
		err         bool
	}{
		{name: "n1", podCIDR: "10.42.1.0/24", annotations: map[string]string{AnnotationNodeIP: "192.168.1.5", AnnotationVTEPMAC: "02:aa:bb:cc:dd:ee"},
			internalIP: "10.0.0.1", wantIP: "192.168.1.5", wantMAC: "02:aa:bb:cc:dd:ee"},
		{name: "n2", podCIDR: "10.42.2.0/24", internalIP: "10.0.0.2", wantIP: "10.0.0.2", wantMAC: VTEPMAC("n2").String()},
		{name: "n3", podCIDR: "", internalIP: "10.0.0.2", err: true},
		{name: "n4", podCIDR: "10.42.4.0/24", err: true},
		{name: "n5", podCIDR: "10.42.4.0/24", internalIP: "10.0.0.5", annotations: map[string]string{AnnotationVTEPMAC: "zz"}, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := NodeFromObject(tt.name, tt.podCIDR, tt.annotations, tt.internalIP)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v", err)
			}
			if tt.err {
				return
			}
			if n.IP.String() != tt.wantIP || n.VTEPMAC.String() != tt.wantMAC || n.PodCIDR.String() != tt.podCIDR {
				t.Fatalf("got %+v", n)
			}
			back, err := NodeFromObject(n.Name, tt.podCIDR, n.Annotations(), "")
			if err != nil || !reflect.DeepEqual(back, n) {
				t.Fatalf("annotations do not round-trip: %+v %v", back, err)
			}
		})
	}
}

func TestDesiredRoutesMigratedAddresses(t *testing.T) {
	a := mkNode("a", "192.168.77.1", "10.42.1.0/24")
	b := mkNode("b", "192.168.77.2", "10.42.2.0/24")
	n, err := NodeFromObject("b", "10.42.2.0/24", map[string]string{AnnotationRoutedIPs: "10.42.1.7, bogus,10.42.3.9"}, "192.168.77.2")
	if err != nil {
		t.Fatal(err)
	}
	if got := n.RoutedIPs; len(got) != 2 || got[0].String() != "10.42.1.7" || got[1].String() != "10.42.3.9" {
		t.Fatalf("RoutedIPs = %v", got)
	}
	b.RoutedIPs = n.RoutedIPs
	st, err := Desired("a", []Node{a, b})
	if err != nil {
		t.Fatal(err)
	}
	via := VTEPAddr(b.PodCIDR)
	want := []Route{{Dst: netip.MustParsePrefix("10.42.1.7/32"), Via: via}, {Dst: b.PodCIDR, Via: via}, {Dst: netip.MustParsePrefix("10.42.3.9/32"), Via: via}}
	if !reflect.DeepEqual(st.Routes, want) {
		t.Errorf("routes %v, want %v (a /32 to the node hosting a migrated VM, even one of our own range)", st.Routes, want)
	}
	if own, _ := Desired("b", []Node{a, b}); len(own.Routes) != 1 {
		t.Errorf("a node routes its own migrated addresses over the overlay: %v", own.Routes)
	}
}

package tenant

import (
	"net/netip"
	"reflect"
	"testing"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestDesired(t *testing.T) {
	self := netip.MustParseAddr("192.168.1.1")
	tests := []struct {
		name     string
		segments []Segment
		nodes    []netip.Addr
		want     State
	}{
		{name: "nothing", want: State{}},
		{
			name:     "sorted, deduplicated, smallest MTU, default MTU",
			segments: []Segment{{VNI: 300, MTU: 1450}, {VNI: 7}, {VNI: 300, MTU: 1400}, {VNI: 300, MTU: 1450}},
			nodes:    addrs("192.168.1.3", "192.168.1.1", "192.168.1.2", "192.168.1.3"),
			want:     State{Segments: []Segment{{VNI: 7, MTU: DefaultMTU}, {VNI: 300, MTU: 1400}}, Peers: addrs("192.168.1.2", "192.168.1.3")},
		},
		{
			name:     "invalid VNIs and non-IPv4 peers dropped",
			segments: []Segment{{VNI: 0}, {VNI: -1}, {VNI: 1 << 24}, {VNI: 1<<24 - 1, MTU: 9000}},
			nodes:    addrs("fd00::1", "0.0.0.0", "::ffff:192.168.1.9"),
			want:     State{Segments: []Segment{{VNI: 1<<24 - 1, MTU: 9000}}, Peers: addrs("192.168.1.9")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Desired(self, tt.segments, tt.nodes); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseDeviceName(t *testing.T) {
	tests := []struct {
		name     string
		vni      int32
		isBridge bool
		ok       bool
	}{
		{BridgeName(0x1234), 0x1234, true, true},
		{VXLANName(0xffffff), 0xffffff, false, true},
		{"tnbr-000000", 0, false, false},
		{"tnbr-12345", 0, false, false},
		{"tnvx-zzzzzz", 0, false, false},
		{"strata0", 0, false, false},
		{"tnbr-1234567", 0, false, false},
	}
	for _, tt := range tests {
		vni, isBridge, ok := ParseDeviceName(tt.name)
		if vni != tt.vni || isBridge != tt.isBridge || ok != tt.ok {
			t.Errorf("%s: got %d %v %v", tt.name, vni, isBridge, ok)
		}
	}
}

func TestStale(t *testing.T) {
	st := State{Segments: []Segment{{VNI: 5, MTU: 1450}}}
	links := []string{"lo", "eth0", BridgeName(5), VXLANName(5), BridgeName(6), VXLANName(6), VXLANName(9), "tnbr-nothex"}
	want := []string{BridgeName(6), VXLANName(6), VXLANName(9)}
	if got := Stale(st, links); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got := Stale(State{}, []string{"eth0"}); got != nil {
		t.Fatalf("got %v", got)
	}
}

func TestDiffPeers(t *testing.T) {
	tests := []struct {
		name                string
		current, desired    []netip.Addr
		wantAdd, wantRemove []netip.Addr
	}{
		{name: "empty"},
		{name: "first peers", desired: addrs("10.1.0.2", "10.1.0.3"), wantAdd: addrs("10.1.0.2", "10.1.0.3")},
		{name: "node left, node came", current: addrs("10.1.0.2", "10.1.0.3"), desired: addrs("10.1.0.3", "10.1.0.4"),
			wantAdd: addrs("10.1.0.4"), wantRemove: addrs("10.1.0.2")},
		{name: "in sync", current: addrs("10.1.0.3"), desired: addrs("10.1.0.3")},
		{name: "duplicates in the kernel's list", current: addrs("10.1.0.9", "10.1.0.9"), wantRemove: addrs("10.1.0.9")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			add, remove := DiffPeers(tt.current, tt.desired)
			if !reflect.DeepEqual(add, tt.wantAdd) || !reflect.DeepEqual(remove, tt.wantRemove) {
				t.Fatalf("add %v remove %v, want %v %v", add, remove, tt.wantAdd, tt.wantRemove)
			}
		})
	}
}

package tenant

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// DefaultMTU is a VXLAN tenant network's MTU when its status names none (Neutron's 1450: 1500
// less the 50 bytes of VXLAN over IPv4).
const DefaultMTU = 1450

// Segment is one tenant network's L2 segment on a node: bridge BridgeName(VNI) and VXLAN device
// VXLANName(VNI) enslaved to it.
type Segment struct {
	VNI int32
	MTU int
}

// State is what a node needs for its tenant networks: its segments, and the other nodes' VTEP
// addresses that every segment floods broadcast and unknown unicast to (head-end replication;
// unicast is learnt).
type State struct {
	Segments []Segment
	Peers    []netip.Addr
}

// Desired merges the segments wanted on a node (a network may be wanted by several pods and a
// router, possibly with different MTUs seen from stale objects: the smallest wins) and the
// underlay addresses of the other nodes, both sorted and without duplicates. Segments without a
// valid VNI and addresses that are not IPv4 or are the node's own are dropped.
func Desired(self netip.Addr, segments []Segment, nodeIPs []netip.Addr) State {
	var st State
	byVNI := map[int32]int{}
	for _, s := range segments {
		if !ValidVNI(s.VNI) {
			continue
		}
		if s.MTU <= 0 {
			s.MTU = DefaultMTU
		}
		if i, ok := byVNI[s.VNI]; ok {
			st.Segments[i].MTU = min(st.Segments[i].MTU, s.MTU)
			continue
		}
		byVNI[s.VNI] = len(st.Segments)
		st.Segments = append(st.Segments, s)
	}
	slices.SortFunc(st.Segments, func(a, b Segment) int { return cmp.Compare(a.VNI, b.VNI) })
	for _, a := range nodeIPs {
		a = a.Unmap()
		if a.Is4() && a != self && !a.IsUnspecified() {
			st.Peers = append(st.Peers, a)
		}
	}
	slices.SortFunc(st.Peers, netip.Addr.Compare)
	st.Peers = slices.Compact(st.Peers)
	return st
}

// ValidVNI reports whether vni fits VXLAN's 24 bits and is not 0.
func ValidVNI(vni int32) bool { return vni > 0 && vni < 1<<24 }

// ParseDeviceName returns the VNI of a tenant bridge or VXLAN device name, and which one it is.
func ParseDeviceName(name string) (vni int32, isBridge, ok bool) {
	hex, isBridge := strings.CutPrefix(name, "tnbr-")
	if !isBridge {
		var isVX bool
		if hex, isVX = strings.CutPrefix(name, "tnvx-"); !isVX {
			return 0, false, false
		}
	}
	if len(hex) != 6 {
		return 0, false, false
	}
	v, err := strconv.ParseUint(hex, 16, 32)
	if err != nil || !ValidVNI(int32(v)) {
		return 0, false, false
	}
	return int32(v), isBridge, true
}

// Stale returns, sorted, the tenant devices among names (a node's links) that belong to no
// segment of st: those of networks no longer used on the node.
func Stale(st State, names []string) []string {
	want := map[int32]bool{}
	for _, s := range st.Segments {
		want[s.VNI] = true
	}
	var out []string
	for _, n := range names {
		if vni, _, ok := ParseDeviceName(n); ok && !want[vni] {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// DiffPeers returns the flood entries to add and to remove on a VXLAN device that has current
// and must have desired.
func DiffPeers(current, desired []netip.Addr) (add, remove []netip.Addr) {
	in := func(list []netip.Addr, a netip.Addr) bool { return slices.Contains(list, a) }
	for _, a := range desired {
		if !in(current, a) && !in(add, a) {
			add = append(add, a)
		}
	}
	for _, a := range current {
		if !in(desired, a) && !in(remove, a) {
			remove = append(remove, a)
		}
	}
	return add, remove
}

func (s Segment) String() string { return fmt.Sprintf("vni %d mtu %d", s.VNI, s.MTU) }

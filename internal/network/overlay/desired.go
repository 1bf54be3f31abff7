// Package overlay joins the nodes' pod CIDRs with VXLAN. Each node has one VXLAN device
// (strata.vxlan, VNI 1, UDP 8472, learning off) whose address is the network address of the
// node's pod CIDR and whose MAC is derived from the node name. From the list of nodes, Desired
// computes, purely, the routes (remote pod CIDR via the remote VTEP address, onlink), permanent
// ARP entries (remote VTEP address -> remote VTEP MAC) and FDB entries (remote VTEP MAC -> remote
// node IP) a node needs; Overlay.Sync makes the kernel match, touching only its own device.
// Nothing is flooded or learnt: a node reaches exactly the peers it was told about.
package overlay

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

const (
	// AnnotationVTEPMAC on a Node is the MAC of its VXLAN device.
	AnnotationVTEPMAC = "network.strata.io/vtep-mac"
	// AnnotationNodeIP on a Node is the underlay address peers send VXLAN packets to.
	AnnotationNodeIP = "network.strata.io/node-ip"
	// AnnotationRoutedIPs on a Node lists, comma-separated, addresses outside its pod CIDR that
	// it hosts: VMs that migrated there keep their first node's address. Peers route each as a
	// /32 to it.
	AnnotationRoutedIPs = "network.strata.io/routed-ips"

	DeviceName = "strata.vxlan"
	VNI        = 1
	Port       = 8472
	// Overhead is what VXLAN over IPv4 adds to a frame; pod MTU = underlay MTU - Overhead.
	Overhead = 50
)

// Node is what the overlay needs to know about one node.
type Node struct {
	Name    string
	IP      netip.Addr // underlay address
	PodCIDR netip.Prefix
	VTEPMAC net.HardwareAddr
	// RoutedIPs are addresses outside PodCIDR the node hosts (AnnotationRoutedIPs).
	RoutedIPs []netip.Addr
}

// VTEPMAC derives a node's VXLAN device MAC from its name: locally administered, unicast, stable
// across restarts, so peers' FDB and ARP entries stay valid.
func VTEPMAC(nodeName string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("strata-vtep/" + nodeName))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = (mac[0] | 0x02) &^ 0x01
	return mac
}

// VTEPAddr is the address of a node's VXLAN device: the network address of its pod CIDR (the
// bridge holds the first host address).
func VTEPAddr(podCIDR netip.Prefix) netip.Addr { return podCIDR.Masked().Addr() }

// NodeFromObject builds a Node from the fields of a Kubernetes Node: its name, spec.podCIDR,
// annotations, and an InternalIP to fall back on when AnnotationNodeIP is absent. A missing
// AnnotationVTEPMAC falls back to VTEPMAC(name).
func NodeFromObject(name, podCIDR string, annotations map[string]string, internalIP string) (Node, error) {
	n := Node{Name: name}
	if name == "" {
		return n, errors.New("overlay: node without name")
	}
	p, err := netip.ParsePrefix(podCIDR)
	if err != nil {
		return n, fmt.Errorf("overlay: node %s pod CIDR: %w", name, err)
	}
	n.PodCIDR = p.Masked()
	ipStr := annotations[AnnotationNodeIP]
	if ipStr == "" {
		ipStr = internalIP
	}
	if n.IP, err = netip.ParseAddr(ipStr); err != nil {
		return n, fmt.Errorf("overlay: node %s IP: %w", name, err)
	}
	if m := annotations[AnnotationVTEPMAC]; m != "" {
		if n.VTEPMAC, err = net.ParseMAC(m); err != nil || len(n.VTEPMAC) != 6 {
			return n, fmt.Errorf("overlay: node %s VTEP MAC %q invalid", name, m)
		}
	} else {
		n.VTEPMAC = VTEPMAC(name)
	}
	for _, f := range strings.Split(annotations[AnnotationRoutedIPs], ",") {
		if a, err := netip.ParseAddr(strings.TrimSpace(f)); err == nil && a.Is4() {
			n.RoutedIPs = append(n.RoutedIPs, a)
		}
	}
	return n, nil
}

// Annotations returns the annotations the agent publishes on its own Node.
func (n Node) Annotations() map[string]string {
	return map[string]string{AnnotationVTEPMAC: n.VTEPMAC.String(), AnnotationNodeIP: n.IP.String()}
}

// Route is "Dst via Via dev <vxlan> onlink".
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
}

// Neighbor is a permanent ARP entry on the VXLAN device.
type Neighbor struct {
	IP  netip.Addr
	MAC string // canonical net.HardwareAddr.String(), so entries compare with ==
}

// FDBEntry sends frames for MAC to the node at Dst.
type FDBEntry struct {
	MAC string
	Dst netip.Addr
}

// State is the overlay's forwarding state on one node.
type State struct {
	Routes    []Route
	Neighbors []Neighbor
	FDB       []FDBEntry
}

// Desired computes the state node self needs to reach every other node in nodes. Nodes that are
// incomplete or conflict with an earlier one (by name order: same pod CIDR, overlapping CIDR,
// same MAC or IP) are left out and reported in the returned error; the rest is still returned.
func Desired(self string, nodes []Node) (State, error) {
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	var (
		st    State
		errs  []error
		cidrs []netip.Prefix
		macs  = map[string]string{}
		ips   = map[netip.Addr]string{}
	)
	// the local node's CIDR, MAC and IP are taken first so no peer can shadow them
	slices.SortStableFunc(sorted, func(a, b Node) int {
		return cmp.Compare(boolRank(a.Name != self), boolRank(b.Name != self))
	})
	for _, n := range sorted {
		if err := checkNode(n); err != nil {
			errs = append(errs, err)
			continue
		}
		mac := n.VTEPMAC.String()
		if other, dup := macs[mac]; dup {
			errs = append(errs, fmt.Errorf("overlay: node %s has the VTEP MAC of %s", n.Name, other))
			continue
		}
		if other, dup := ips[n.IP]; dup {
			errs = append(errs, fmt.Errorf("overlay: node %s has the IP of %s", n.Name, other))
			continue
		}
		if i := slices.IndexFunc(cidrs, func(c netip.Prefix) bool { return c.Overlaps(n.PodCIDR) }); i >= 0 {
			errs = append(errs, fmt.Errorf("overlay: node %s pod CIDR %s overlaps %s", n.Name, n.PodCIDR, cidrs[i]))
			continue
		}
		macs[mac], ips[n.IP] = n.Name, n.Name
		cidrs = append(cidrs, n.PodCIDR)
		if n.Name == self {
			continue
		}
		vtep := VTEPAddr(n.PodCIDR)
		st.Routes = append(st.Routes, Route{Dst: n.PodCIDR, Via: vtep})
		for _, a := range n.RoutedIPs {
			st.Routes = append(st.Routes, Route{Dst: netip.PrefixFrom(a, 32), Via: vtep})
		}
		st.Neighbors = append(st.Neighbors, Neighbor{IP: vtep, MAC: mac})
		st.FDB = append(st.FDB, FDBEntry{MAC: mac, Dst: n.IP})
	}
	st.sort()
	return st, errors.Join(errs...)
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

func checkNode(n Node) error {
	switch {
	case n.Name == "":
		return errors.New("overlay: node without name")
	case !n.IP.IsValid() || !n.IP.Is4():
		return fmt.Errorf("overlay: node %s has no IPv4 underlay address", n.Name)
	case !n.PodCIDR.IsValid() || !n.PodCIDR.Addr().Is4():
		return fmt.Errorf("overlay: node %s has no IPv4 pod CIDR", n.Name)
	case len(n.VTEPMAC) != 6 || n.VTEPMAC[0]&1 == 1:
		return fmt.Errorf("overlay: node %s has no unicast VTEP MAC", n.Name)
	}
	return nil
}

func (s *State) sort() {
	slices.SortFunc(s.Routes, func(a, b Route) int {
		return cmp.Or(a.Dst.Addr().Compare(b.Dst.Addr()), cmp.Compare(a.Dst.Bits(), b.Dst.Bits()), a.Via.Compare(b.Via))
	})
	slices.SortFunc(s.Neighbors, func(a, b Neighbor) int { return cmp.Or(a.IP.Compare(b.IP), cmp.Compare(a.MAC, b.MAC)) })
	slices.SortFunc(s.FDB, func(a, b FDBEntry) int { return cmp.Or(cmp.Compare(a.MAC, b.MAC), a.Dst.Compare(b.Dst)) })
}

// Diff returns what to add to and remove from current to reach desired. Entries are compared
// whole, so a changed entry (new node IP, new MAC) is one removal plus one addition.
func Diff(current, desired State) (add, remove State) {
	add = State{
		Routes:    minus(desired.Routes, current.Routes),
		Neighbors: minus(desired.Neighbors, current.Neighbors),
		FDB:       minus(desired.FDB, current.FDB),
	}
	remove = State{
		Routes:    minus(current.Routes, desired.Routes),
		Neighbors: minus(current.Neighbors, desired.Neighbors),
		FDB:       minus(current.FDB, desired.FDB),
	}
	add.sort()
	remove.sort()
	return add, remove
}

func minus[T comparable](a, b []T) []T {
	in := make(map[T]bool, len(b))
	for _, x := range b {
		in[x] = true
	}
	var out []T
	for _, x := range a {
		if !in[x] {
			out = append(out, x)
			in[x] = true // and drop duplicates within a
		}
	}
	return out
}

// Empty reports whether s holds nothing.
func (s State) Empty() bool { return len(s.Routes)+len(s.Neighbors)+len(s.FDB) == 0 }

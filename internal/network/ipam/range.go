// Package ipam hands out pod addresses from a node's pod CIDR. The address arithmetic (Range) is
// pure; Store persists one small file per allocation in a directory so that concurrent CNI plugin
// processes on a node agree on who owns which address, and so that every failure path can give an
// address back (Release, ReleaseByContainer) and dead containers can be collected (GC).
package ipam

import (
	"fmt"
	"iter"
	"net/netip"
)

// Range is the usable part of a pod subnet: the first host address is the gateway (the bridge),
// pods get Start..End inclusive. For IPv4 the broadcast address is excluded.
type Range struct {
	Subnet  netip.Prefix
	Gateway netip.Addr
	Start   netip.Addr
	End     netip.Addr
}

// NewRange returns the range of a pod subnet such as 10.42.3.0/24: gateway 10.42.3.1, pods from
// 10.42.3.2 to 10.42.3.254.
func NewRange(subnet netip.Prefix) (Range, error) {
	if !subnet.IsValid() {
		return Range{}, fmt.Errorf("invalid subnet %v", subnet)
	}
	subnet = subnet.Masked()
	hostBits := subnet.Addr().BitLen() - subnet.Bits()
	// IPv4 needs network, gateway, one pod and broadcast; IPv6 network, gateway and one pod.
	minHostBits := 2
	if hostBits < minHostBits {
		return Range{}, fmt.Errorf("subnet %v too small for a gateway and a pod", subnet)
	}
	gw := subnet.Addr().Next()
	last := lastAddr(subnet)
	if subnet.Addr().Is4() {
		last = last.Prev()
	}
	return Range{Subnet: subnet, Gateway: gw, Start: gw.Next(), End: last}, nil
}

// Contains reports whether a is an address that the range hands out to pods.
func (r Range) Contains(a netip.Addr) bool {
	return a.IsValid() && a.BitLen() == r.Start.BitLen() && a.Compare(r.Start) >= 0 && a.Compare(r.End) <= 0
}

// Candidates yields every pod address once, starting after last (round-robin, so a just-released
// address is the last to be handed out again and stale ARP/conntrack state can age out) and
// wrapping around. An invalid or out-of-range last starts at Start.
func (r Range) Candidates(last netip.Addr) iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		first := r.Start
		if r.Contains(last) && last != r.End {
			first = last.Next()
		}
		for a := first; r.Contains(a); a = a.Next() {
			if !yield(a) {
				return
			}
		}
		for a := r.Start; a != first; a = a.Next() {
			if !yield(a) {
				return
			}
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 7; j >= 0; j-- {
			if i*8+(7-j) >= bits {
				b[i] |= 1 << j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

package policy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// AddrSet is a set of IPv4 addresses as sorted, disjoint, non-adjacent inclusive ranges — the
// shape an nftables interval set wants (overlapping elements are rejected by the kernel).
// Build it with Add, AddPrefix and Remove; the zero value is empty.
type AddrSet struct {
	ranges []addrRange
	dirty  bool // ranges need normalize
}

type addrRange struct{ first, last uint32 }

// AddrRange is one inclusive range of an AddrSet.
type AddrRange struct{ First, Last netip.Addr }

// NewAddrSet returns the set of the given addresses (IPv6 ones are ignored: the pod network is
// IPv4).
func NewAddrSet(addrs ...netip.Addr) *AddrSet {
	s := &AddrSet{}
	for _, a := range addrs {
		s.Add(a)
	}
	return s
}

// Add adds one address.
func (s *AddrSet) Add(a netip.Addr) {
	if a.Is4() {
		v := u32(a)
		s.add(addrRange{v, v})
	}
}

// AddPrefix adds every address of p (IPv6 prefixes are ignored).
func (s *AddrSet) AddPrefix(p netip.Prefix) {
	if r, ok := prefixRange(p); ok {
		s.add(r)
	}
}

// RemovePrefix removes every address of p.
func (s *AddrSet) RemovePrefix(p netip.Prefix) {
	cut, ok := prefixRange(p)
	if !ok {
		return
	}
	s.normalize()
	var out []addrRange
	for _, r := range s.ranges {
		if r.last < cut.first || r.first > cut.last {
			out = append(out, r)
			continue
		}
		if r.first < cut.first {
			out = append(out, addrRange{r.first, cut.first - 1})
		}
		if r.last > cut.last {
			out = append(out, addrRange{cut.last + 1, r.last})
		}
	}
	s.ranges = out
}

// Union adds every address of o.
func (s *AddrSet) Union(o *AddrSet) {
	for _, r := range o.ranges {
		s.add(r)
	}
}

func (s *AddrSet) add(n addrRange) {
	s.ranges = append(s.ranges, n)
	s.dirty = true
}

// normalize sorts and merges the ranges once after any number of adds (building a set of n
// addresses stays O(n log n)). Reads normalize, so a set is not safe for concurrent use.
func (s *AddrSet) normalize() {
	if !s.dirty {
		return
	}
	s.dirty = false
	slices.SortFunc(s.ranges, func(a, b addrRange) int { return cmpU32(a.first, b.first) })
	out := s.ranges[:0]
	for _, r := range s.ranges {
		if k := len(out) - 1; k >= 0 && (out[k].last == ^uint32(0) || r.first <= out[k].last+1) {
			out[k].last = max(out[k].last, r.last)
			continue
		}
		out = append(out, r)
	}
	s.ranges = out
}

// Contains reports whether a is in the set; nil holds nothing.
func (s *AddrSet) Contains(a netip.Addr) bool {
	if s == nil || !a.Is4() {
		return false
	}
	s.normalize()
	v := u32(a)
	i, found := slices.BinarySearchFunc(s.ranges, v, func(r addrRange, v uint32) int { return cmpU32(r.first, v) })
	if found {
		return true
	}
	return i > 0 && v <= s.ranges[i-1].last
}

// Empty reports whether the set holds no address.
func (s *AddrSet) Empty() bool { return s == nil || len(s.ranges) == 0 } // adds never empty it

// Ranges returns the set's ranges in order.
func (s *AddrSet) Ranges() []AddrRange {
	if s == nil {
		return nil
	}
	s.normalize()
	out := make([]AddrRange, len(s.ranges))
	for i, r := range s.ranges {
		out[i] = AddrRange{addr(r.first), addr(r.last)}
	}
	return out
}

// String lists the set in nft syntax: a, b-c.
func (s *AddrSet) String() string {
	var parts []string
	for _, r := range s.Ranges() {
		if r.First == r.Last {
			parts = append(parts, r.First.String())
		} else {
			parts = append(parts, fmt.Sprintf("%s-%s", r.First, r.Last))
		}
	}
	return strings.Join(parts, ", ")
}

func prefixRange(p netip.Prefix) (addrRange, bool) {
	if !p.IsValid() || !p.Addr().Is4() {
		return addrRange{}, false
	}
	p = p.Masked()
	first := u32(p.Addr())
	return addrRange{first, first | (^uint32(0) >> p.Bits())}, true
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

package lb

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// A Pool is the set of external IPv4 addresses LoadBalancer Services get
// theirs from: ranges, in the order given, each inclusive.
type Pool struct {
	ranges []addrRange
}

type addrRange struct{ first, last netip.Addr }

// ParsePool reads --lb-pool: comma-separated CIDRs (10.99.0.192/27; their
// network and broadcast addresses are left out) and ranges
// (10.99.0.200-10.99.0.220). An empty string is an empty pool.
func ParsePool(s string) (Pool, error) {
	var p Pool
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		r, err := parseRange(part)
		if err != nil {
			return Pool{}, fmt.Errorf("address pool %q: %w", part, err)
		}
		for _, o := range p.ranges {
			if r.first.Compare(o.last) <= 0 && o.first.Compare(r.last) <= 0 {
				return Pool{}, fmt.Errorf("address pool %q overlaps %s-%s", part, o.first, o.last)
			}
		}
		p.ranges = append(p.ranges, r)
	}
	return p, nil
}

func parseRange(s string) (addrRange, error) {
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, err := netip.ParseAddr(strings.TrimSpace(first))
		if err != nil {
			return addrRange{}, err
		}
		b, err := netip.ParseAddr(strings.TrimSpace(last))
		if err != nil {
			return addrRange{}, err
		}
		if !a.Is4() || !b.Is4() {
			return addrRange{}, errors.New("only IPv4 addresses can be announced by ARP")
		}
		if b.Less(a) {
			return addrRange{}, errors.New("the range ends before it starts")
		}
		return addrRange{a, b}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return addrRange{}, errors.New("neither a CIDR nor a range FIRST-LAST")
	}
	if !p.Addr().Is4() {
		return addrRange{}, errors.New("only IPv4 addresses can be announced by ARP")
	}
	p = p.Masked()
	first, last := p.Addr(), lastAddr(p)
	if p.Bits() < 31 { // a subnet's network and broadcast addresses
		first, last = first.Next(), last.Prev()
	}
	return addrRange{first, last}, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		a[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(a)
}

// Empty reports whether the pool has no address.
func (p Pool) Empty() bool { return len(p.ranges) == 0 }

// Contains reports whether a is in the pool.
func (p Pool) Contains(a netip.Addr) bool {
	for _, r := range p.ranges {
		if r.first.Compare(a) <= 0 && a.Compare(r.last) <= 0 {
			return true
		}
	}
	return false
}

// String is the pool as ranges, for messages.
func (p Pool) String() string {
	parts := make([]string, len(p.ranges))
	for i, r := range p.ranges {
		parts[i] = r.first.String() + "-" + r.last.String()
	}
	return strings.Join(parts, ",")
}

// firstFree is the pool's lowest address not in used.
func (p Pool) firstFree(used func(netip.Addr) bool) (netip.Addr, bool) {
	for _, r := range p.ranges {
		for a := r.first; a.IsValid() && a.Compare(r.last) <= 0; a = a.Next() {
			if !used(a) {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

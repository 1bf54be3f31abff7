// Package subnetipam owns the address bitmap of a tenant Subnet
// (networking.strata.io Subnet.status.allocations): one bit per address of
// the subnet's CIDR, set when a Port, a Router's external gateway or a
// FloatingIP holds that address. It also derives a subnet's effective
// gateway and allocation pools as Neutron does, and retries
// read-modify-write cycles against a store with optimistic concurrency
// (Update), so that an address is handed out once even when several
// writers race. The package is pure: the store is an interface.
package subnetipam

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
)

// MinPrefixBits bounds a subnet's size: the bitmap of a /12 is 128 KiB at
// worst, well inside an object's size limit.
const MinPrefixBits = 12

// Errors of Allocate and AllocateNext; test with errors.Is.
var (
	// ErrOutsideSubnet: the address is not in the subnet's CIDR.
	ErrOutsideSubnet = errors.New("not in the subnet")
	// ErrReserved: the address is the network, broadcast or gateway
	// address, or outside the allocation pools.
	ErrReserved = errors.New("outside the allocation pools")
	// ErrInUse: another holder has the address.
	ErrInUse = errors.New("already allocated")
	// ErrFull: no address of the pools is free.
	ErrFull = errors.New("no more addresses available")
)

// Range is an inclusive range of IPv4 addresses.
type Range struct {
	Start, End netip.Addr
}

func (r Range) String() string { return r.Start.String() + "-" + r.End.String() }

// Contains reports whether a is in r.
func (r Range) Contains(a netip.Addr) bool {
	return a.Is4() && r.Start.Compare(a) <= 0 && a.Compare(r.End) <= 0
}

// Effective returns a subnet's gateway and allocation pools as Neutron
// derives them: the gateway is gatewayIP, or none with noGateway, or the
// first host address; without explicit pools, the pools are all host
// addresses but the gateway. Explicit pools must lie inside the subnet,
// must not overlap, and must not hold the gateway.
func Effective(cidr netip.Prefix, gatewayIP string, noGateway bool, pools []Range) (netip.Addr, []Range, error) {
	if err := checkPrefix(cidr); err != nil {
		return netip.Addr{}, nil, err
	}
	first, last := hosts(cidr)
	var gw netip.Addr
	switch {
	case noGateway:
	case gatewayIP != "":
		a, err := netip.ParseAddr(gatewayIP)
		if err != nil || !a.Is4() {
			return netip.Addr{}, nil, fmt.Errorf("gateway %q is not an IPv4 address", gatewayIP)
		}
		if !cidr.Contains(a) {
			return netip.Addr{}, nil, fmt.Errorf("gateway %s is not in %s", a, cidr)
		}
		gw = a
	default:
		gw = first
	}
	if len(pools) > 0 {
		sorted := slices.Clone(pools)
		slices.SortFunc(sorted, func(a, b Range) int { return a.Start.Compare(b.Start) })
		for i, p := range sorted {
			if !p.Start.Is4() || !p.End.Is4() || p.End.Less(p.Start) {
				return netip.Addr{}, nil, fmt.Errorf("allocation pool %s is not a range of IPv4 addresses", p)
			}
			if !cidr.Contains(p.Start) || !cidr.Contains(p.End) {
				return netip.Addr{}, nil, fmt.Errorf("allocation pool %s is not in %s", p, cidr)
			}
			if i > 0 && !sorted[i-1].End.Less(p.Start) {
				return netip.Addr{}, nil, fmt.Errorf("allocation pools %s and %s overlap", sorted[i-1], p)
			}
			if gw.IsValid() && p.Contains(gw) {
				return netip.Addr{}, nil, fmt.Errorf("gateway %s conflicts with allocation pool %s", gw, p)
			}
		}
		return gw, sorted, nil
	}
	var out []Range
	switch {
	case last.Less(first):
	case !gw.IsValid() || gw.Less(first) || last.Less(gw):
		out = []Range{{first, last}}
	default:
		if first.Less(gw) {
			out = append(out, Range{first, gw.Prev()})
		}
		if gw.Less(last) {
			out = append(out, Range{gw.Next(), last})
		}
	}
	return gw, out, nil
}

// hosts returns the first and last host address of cidr: all but the
// network and broadcast addresses.
func hosts(cidr netip.Prefix) (netip.Addr, netip.Addr) {
	base := u32(cidr.Masked().Addr())
	size := uint32(1) << (32 - cidr.Bits())
	if size <= 2 {
		return addr(base), addr(base + size - 1)
	}
	return addr(base + 1), addr(base + size - 2)
}

func checkPrefix(cidr netip.Prefix) error {
	if !cidr.IsValid() || !cidr.Addr().Is4() {
		return fmt.Errorf("%v is not an IPv4 CIDR", cidr)
	}
	if cidr.Bits() < MinPrefixBits {
		return fmt.Errorf("%s is larger than /%d", cidr, MinPrefixBits)
	}
	return nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Subnet is the allocation state of one subnet: which addresses are
// held, over which may be allocated (the pools, never the network,
// broadcast or gateway address).
type Subnet struct {
	cidr    netip.Prefix
	gateway netip.Addr // invalid: none
	pools   []Range
	bitmap  []byte // bit i (most significant first) is cidr's i-th address
}

// New returns an empty bitmap over cidr; pools (as Effective returns
// them) bound what may be allocated.
func New(cidr netip.Prefix, gateway netip.Addr, pools []Range) (*Subnet, error) {
	if err := checkPrefix(cidr); err != nil {
		return nil, err
	}
	cidr = cidr.Masked()
	size := 1 << (32 - cidr.Bits())
	return &Subnet{cidr: cidr, gateway: gateway, pools: slices.Clone(pools), bitmap: make([]byte, (size+7)/8)}, nil
}

// Load replaces the bitmap with an encoded one (Bytes); an empty one
// means nothing is allocated.
func (s *Subnet) Load(b []byte) error {
	if len(b) > len(s.bitmap) {
		return fmt.Errorf("allocations of %d bytes do not fit %s (%d bytes)", len(b), s.cidr, len(s.bitmap))
	}
	clear(s.bitmap)
	copy(s.bitmap, b)
	return nil
}

// Bytes encodes the bitmap, without its trailing zero bytes so that a
// large subnet with few addresses in use stays small.
func (s *Subnet) Bytes() []byte {
	n := len(s.bitmap)
	for n > 0 && s.bitmap[n-1] == 0 {
		n--
	}
	if n == 0 {
		return nil
	}
	return slices.Clone(s.bitmap[:n])
}

// CIDR is the subnet's range.
func (s *Subnet) CIDR() netip.Prefix { return s.cidr }

func (s *Subnet) index(a netip.Addr) (int, bool) {
	if !a.Is4() || !s.cidr.Contains(a) {
		return 0, false
	}
	return int(u32(a) - u32(s.cidr.Addr())), true
}

func (s *Subnet) bit(i int) bool      { return s.bitmap[i/8]&(0x80>>(i%8)) != 0 }
func (s *Subnet) set(i int)           { s.bitmap[i/8] |= 0x80 >> (i % 8) }
func (s *Subnet) unset(i int)         { s.bitmap[i/8] &^= 0x80 >> (i % 8) }
func (s *Subnet) at(i int) netip.Addr { return addr(u32(s.cidr.Addr()) + uint32(i)) }

// Allocatable reports whether a may be handed out at all: inside the
// pools and neither the network, broadcast nor gateway address.
func (s *Subnet) Allocatable(a netip.Addr) bool {
	if _, ok := s.index(a); !ok {
		return false
	}
	first, last := hosts(s.cidr)
	if a.Less(first) || last.Less(a) || a == s.gateway {
		return false
	}
	for _, p := range s.pools {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Has reports whether a is allocated.
func (s *Subnet) Has(a netip.Addr) bool {
	i, ok := s.index(a)
	return ok && s.bit(i)
}

// Allocate takes the address a.
func (s *Subnet) Allocate(a netip.Addr) error {
	i, ok := s.index(a)
	switch {
	case !ok:
		return fmt.Errorf("%s: %w %s", a, ErrOutsideSubnet, s.cidr)
	case !s.Allocatable(a):
		return fmt.Errorf("%s: %w of %s", a, ErrReserved, s.cidr)
	case s.bit(i):
		return fmt.Errorf("%s: %w", a, ErrInUse)
	}
	s.set(i)
	return nil
}

// Mark sets a's bit whether or not it is allocatable: an address a holder
// already has (the repair pass), even outside pools that changed since.
func (s *Subnet) Mark(a netip.Addr) {
	if i, ok := s.index(a); ok {
		s.set(i)
	}
}

// AllocateNext takes the lowest free address of the pools.
func (s *Subnet) AllocateNext() (netip.Addr, error) {
	for _, p := range s.pools {
		for a := p.Start; a.IsValid() && a.Compare(p.End) <= 0; a = a.Next() {
			if i, ok := s.index(a); ok && !s.bit(i) && s.Allocatable(a) {
				s.set(i)
				return a, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("%s: %w", s.cidr, ErrFull)
}

// Release gives a back; releasing a free address does nothing.
func (s *Subnet) Release(a netip.Addr) {
	if i, ok := s.index(a); ok {
		s.unset(i)
	}
}

// Allocated lists the allocated addresses in order.
func (s *Subnet) Allocated() []netip.Addr {
	var out []netip.Addr
	for i, b := range s.bitmap {
		if b == 0 {
			continue
		}
		for j := range 8 {
			if k := i*8 + j; b&(0x80>>j) != 0 {
				out = append(out, s.at(k))
			}
		}
	}
	return out
}

// Used counts the allocated addresses.
func (s *Subnet) Used() int {
	n := 0
	for _, b := range s.bitmap {
		n += bits.OnesCount8(b)
	}
	return n
}

// Free counts the pools' addresses that may still be allocated.
func (s *Subnet) Free() int {
	n := 0
	first, last := hosts(s.cidr)
	for _, p := range s.pools {
		start, end := p.Start, p.End
		if start.Less(first) {
			start = first
		}
		if last.Less(end) {
			end = last
		}
		if end.Less(start) {
			continue
		}
		n += int(u32(end)-u32(start)) + 1
		if s.gateway.IsValid() && !s.gateway.Less(start) && !end.Less(s.gateway) {
			n--
		}
	}
	for _, a := range s.Allocated() {
		if s.Allocatable(a) {
			n--
		}
	}
	return n
}

// Store reads and conditionally writes one subnet's bitmap. Write must
// fail with an error for which the conflict function given to Update
// returns true when the state changed since Read returned version.
type Store interface {
	Read(ctx context.Context) (s *Subnet, version string, err error)
	Write(ctx context.Context, s *Subnet, version string) error
}

// maxAttempts bounds Update's retries; a writer that loses this often
// gives up and is retried later by its controller.
const maxAttempts = 64

// Update reads the bitmap, applies change and writes it back, again from
// a fresh read while the write conflicts. An error from change ends it
// without a write; so does a change that returns ErrNoChange.
func Update(ctx context.Context, st Store, conflict func(error) bool, change func(*Subnet) error) error {
	var err error
	for range maxAttempts {
		var s *Subnet
		var version string
		s, version, err = st.Read(ctx)
		if err != nil {
			return err
		}
		if err := change(s); err != nil {
			if errors.Is(err, ErrNoChange) {
				return nil
			}
			return err
		}
		err = st.Write(ctx, s, version)
		if err == nil || !conflict(err) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("gave up after %d conflicting writes: %w", maxAttempts, err)
}

// ErrNoChange, returned by Update's change function, skips the write.
var ErrNoChange = errors.New("no change")

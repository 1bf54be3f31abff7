package lb

import (
	"fmt"
	"net/netip"
	"time"
)

// A Claim is a Service that holds a pool address.
type Claim struct {
	Service string // namespace/name
	Created time.Time
}

// beats reports whether c keeps an address that both c and o claim: the
// older Service, then the lower name, as every allocator would decide.
func (c Claim) beats(o Claim) bool {
	if !c.Created.Equal(o.Created) {
		return c.Created.Before(o.Created)
	}
	return c.Service < o.Service
}

// A Request is one Service's side of an allocation.
type Request struct {
	Claim
	// LoadBalancerIP is spec.loadBalancerIP: empty, or the address the
	// Service asks for.
	LoadBalancerIP string
	// Current are the addresses in its status.loadBalancer.ingress.
	Current []netip.Addr
}

// Assign chooses the address of the Service that req describes: the one
// it asks for, else the pool address it already has, else the pool's
// lowest free one. held maps the addresses other Services hold to them.
// The error says, for the Service's events, why it stays pending.
func Assign(pool Pool, req Request, held map[netip.Addr]Claim) (netip.Addr, error) {
	takenFromUs := func(a netip.Addr) (Claim, bool) {
		other, ok := held[a]
		if !ok || other.Service == req.Service {
			return Claim{}, false
		}
		if !other.beats(req.Claim) {
			return Claim{}, false // we hold it too and keep it: the other Service moves
		}
		return other, true
	}
	holds := func(a netip.Addr) bool {
		for _, c := range req.Current {
			if c == a {
				return true
			}
		}
		return false
	}
	if req.LoadBalancerIP != "" {
		want, err := netip.ParseAddr(req.LoadBalancerIP)
		if err != nil || !want.Is4() {
			return netip.Addr{}, fmt.Errorf("spec.loadBalancerIP %q is not an IPv4 address", req.LoadBalancerIP)
		}
		if !pool.Contains(want) {
			return netip.Addr{}, fmt.Errorf("spec.loadBalancerIP %s is not in the address pool %s", want, pool)
		}
		if other, ok := held[want]; ok && other.Service != req.Service && (!holds(want) || other.beats(req.Claim)) {
			return netip.Addr{}, fmt.Errorf("spec.loadBalancerIP %s is already used by Service %s", want, other.Service)
		}
		return want, nil
	}
	for _, a := range req.Current {
		if _, lost := takenFromUs(a); pool.Contains(a) && !lost {
			return a, nil
		}
	}
	a, ok := pool.firstFree(func(a netip.Addr) bool { _, used := held[a]; return used })
	if !ok {
		return netip.Addr{}, fmt.Errorf("no free address in the pool %s (%d in use)", pool, len(held))
	}
	return a, nil
}

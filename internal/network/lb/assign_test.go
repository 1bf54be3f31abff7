package lb

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestAssign(t *testing.T) {
	pool, err := ParsePool("10.99.0.200-10.99.0.202")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	old := Claim{Service: "a/old", Created: t0}
	me := Claim{Service: "a/me", Created: t0.Add(time.Hour)}
	young := Claim{Service: "a/young", Created: t0.Add(2 * time.Hour)}
	ip := netip.MustParseAddr
	for _, tc := range []struct {
		name      string
		requested string
		current   []string
		held      map[string]Claim
		want      string // an address, or a fragment of the error
	}{
		{name: "first free", want: "10.99.0.200"},
		{name: "skips held", held: map[string]Claim{"10.99.0.200": old}, want: "10.99.0.201"},
		{name: "keeps its own", current: []string{"10.99.0.202"}, want: "10.99.0.202"},
		{name: "own outside the pool is replaced", current: []string{"10.1.1.1"}, want: "10.99.0.200"},
		{name: "keeps a shared one against a younger Service", current: []string{"10.99.0.200"}, held: map[string]Claim{"10.99.0.200": young}, want: "10.99.0.200"},
		{name: "gives a shared one to an older Service", current: []string{"10.99.0.200"}, held: map[string]Claim{"10.99.0.200": old}, want: "10.99.0.201"},
		{name: "requested and free", requested: "10.99.0.201", want: "10.99.0.201"},
		{name: "requested replaces current", requested: "10.99.0.201", current: []string{"10.99.0.200"}, want: "10.99.0.201"},
		{name: "requested in use", requested: "10.99.0.201", held: map[string]Claim{"10.99.0.201": young}, want: "already used by Service a/young"},
		{name: "requested, held by both, ours", requested: "10.99.0.201", current: []string{"10.99.0.201"}, held: map[string]Claim{"10.99.0.201": young}, want: "10.99.0.201"},
		{name: "requested outside the pool", requested: "10.99.0.9", want: "not in the address pool 10.99.0.200-10.99.0.202"},
		{name: "requested not IPv4", requested: "fd00::1", want: "not an IPv4 address"},
		{name: "requested garbage", requested: "x", want: "not an IPv4 address"},
		{name: "exhausted", held: map[string]Claim{"10.99.0.200": old, "10.99.0.201": old, "10.99.0.202": young}, want: "no free address in the pool 10.99.0.200-10.99.0.202 (3 in use)"},
		{name: "held by itself", held: map[string]Claim{"10.99.0.200": me}, current: []string{"10.99.0.200"}, want: "10.99.0.200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held := map[netip.Addr]Claim{}
			for a, c := range tc.held {
				held[ip(a)] = c
			}
			req := Request{Claim: me, LoadBalancerIP: tc.requested}
			for _, a := range tc.current {
				req.Current = append(req.Current, ip(a))
			}
			got, err := Assign(pool, req, held)
			if err != nil {
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %q, want %q", err, tc.want)
				}
				return
			}
			if got.String() != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestAssignNeverTwice allocates the whole pool one Service at a time, as
// the allocator does: every Service gets a distinct address, and the one
// past the pool's size none.
func TestAssignNeverTwice(t *testing.T) {
	pool, err := ParsePool("10.0.0.0/28") // 14 usable
	if err != nil {
		t.Fatal(err)
	}
	held := map[netip.Addr]Claim{}
	for i := range 15 {
		c := Claim{Service: "ns/s" + string(rune('a'+i))}
		a, err := Assign(pool, Request{Claim: c}, held)
		if i == 14 {
			if err == nil {
				t.Fatalf("15th Service got %s from a pool of 14", a)
			}
			return
		}
		if err != nil {
			t.Fatalf("Service %d: %v", i, err)
		}
		if prev, dup := held[a]; dup {
			t.Fatalf("%s given to %s and %s", a, prev.Service, c.Service)
		}
		held[a] = c
	}
}

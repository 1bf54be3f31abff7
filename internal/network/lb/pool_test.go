package lb

import (
	"net/netip"
	"testing"
)

func TestParsePool(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want: the pool's ranges, or "error"
	}{
		{"", ""},
		{"10.99.0.200-10.99.0.220", "10.99.0.200-10.99.0.220"},
		{"10.99.0.200 - 10.99.0.200", "10.99.0.200-10.99.0.200"},
		{"192.168.10.0/24", "192.168.10.1-192.168.10.254"},
		{"192.168.10.7/24", "192.168.10.1-192.168.10.254"},
		{"192.168.10.4/31", "192.168.10.4-192.168.10.5"},
		{"192.168.10.9/32", "192.168.10.9-192.168.10.9"},
		{"10.0.0.1-10.0.0.2, 10.0.1.0/30", "10.0.0.1-10.0.0.2,10.0.1.1-10.0.1.2"},
		{"10.0.0.9-10.0.0.1", "error"},
		{"10.0.0.0/24,10.0.0.128/25", "error"},
		{"fd00::/64", "error"},
		{"10.0.0.1-fd00::1", "error"},
		{"banana", "error"},
		{"10.0.0.1", "error"},
	} {
		p, err := ParsePool(tc.in)
		got := p.String()
		if err != nil {
			got = "error"
		}
		if got != tc.want {
			t.Errorf("ParsePool(%q) = %q (%v), want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestPoolContains(t *testing.T) {
	p, err := ParsePool("10.0.0.10-10.0.0.12,10.0.1.0/30")
	if err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{
		"10.0.0.9": false, "10.0.0.10": true, "10.0.0.12": true, "10.0.0.13": false,
		"10.0.1.0": false, "10.0.1.1": true, "10.0.1.2": true, "10.0.1.3": false,
	} {
		if got := p.Contains(netip.MustParseAddr(a)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", a, got, want)
		}
	}
}

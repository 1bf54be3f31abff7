package router

import (
	"net/netip"
	"testing"
)

func TestRules(t *testing.T) {
	ext := &External{Name: "qg-0a1b2c3d", Address: netip.MustParsePrefix("203.0.113.10/24")}
	ifcs := []Interface{
		{Name: "qr-a", Address: netip.MustParsePrefix("10.0.0.1/24")},
		{Name: "qr-b", Address: netip.MustParsePrefix("10.0.1.1/26")},
	}
	fips := []Floating{
		{Floating: netip.MustParseAddr("203.0.113.50"), Fixed: netip.MustParseAddr("10.0.0.5")},
		{Floating: netip.MustParseAddr("203.0.113.51"), Fixed: netip.MustParseAddr("10.0.1.9")},
	}
	tests := []struct {
		name string
		st   RouterState
		want string
	}{
		{name: "no external gateway: empty table", st: RouterState{Interfaces: ifcs, SNAT: true}, want: `table ip strata-router {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
	}
}
`},
		{name: "SNAT for every subnet", st: RouterState{Interfaces: ifcs, External: ext, SNAT: true}, want: `table ip strata-router {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "qg-0a1b2c3d" ip saddr 10.0.0.0/24 snat to 203.0.113.10
		oifname "qg-0a1b2c3d" ip saddr 10.0.1.0/26 snat to 203.0.113.10
	}
}
`},
		{name: "floating IPs before SNAT", st: RouterState{Interfaces: ifcs, External: ext, SNAT: true, Floating: fips}, want: `table ip strata-router {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 203.0.113.50 dnat to 10.0.0.5
		ip daddr 203.0.113.51 dnat to 10.0.1.9
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "qg-0a1b2c3d" ip saddr 10.0.0.5 snat to 203.0.113.50
		oifname "qg-0a1b2c3d" ip saddr 10.0.1.9 snat to 203.0.113.51
		oifname "qg-0a1b2c3d" ip saddr 10.0.0.0/24 snat to 203.0.113.10
		oifname "qg-0a1b2c3d" ip saddr 10.0.1.0/26 snat to 203.0.113.10
		iifname != "qg-0a1b2c3d" oifname != "qg-0a1b2c3d" ct status dnat masquerade
	}
}
`},
		{name: "floating IPs without SNAT", st: RouterState{Interfaces: ifcs, External: ext, Floating: fips[:1]}, want: `table ip strata-router {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 203.0.113.50 dnat to 10.0.0.5
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "qg-0a1b2c3d" ip saddr 10.0.0.5 snat to 203.0.113.50
		iifname != "qg-0a1b2c3d" oifname != "qg-0a1b2c3d" ct status dnat masquerade
	}
}
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := Rules(tt.st)
			if got := rs.String(); got != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tt.want)
			}
			for _, r := range rs.Rules {
				if _, err := r.exprs(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

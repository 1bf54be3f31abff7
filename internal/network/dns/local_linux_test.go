package dns

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/strata-cloud/strata/internal/network/netnstest"
)

func TestEnsureLocalAddress(t *testing.T) {
	tests := []struct {
		name string
		ip   string
		bits int
	}{
		{name: "IPv4", ip: "10.43.0.10", bits: 32},
		{name: "IPv6", ip: "fd00:43::a", bits: 128},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := netnstest.New(t) // skips without root, fails under CI=true
			ip := net.ParseIP(tt.ip)
			netnstest.Do(t, n, func() error {
				// Twice: it must be idempotent.
				if err := EnsureLocalAddress(ip); err != nil {
					return err
				}
				return EnsureLocalAddress(ip)
			})

			h := netnstest.Handle(t, n)
			link, err := h.LinkByName(LocalDevice)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := link.(*netlink.Bridge); !ok {
				t.Errorf("%s is a %s, want bridge", LocalDevice, link.Type())
			}
			if link.Attrs().Flags&net.FlagUp == 0 {
				t.Errorf("%s is not up", LocalDevice)
			}
			addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
			if err != nil {
				t.Fatal(err)
			}
			var found int
			for _, a := range addrs {
				if a.IP.Equal(ip) {
					found++
					if ones, bits := a.Mask.Size(); ones != tt.bits || bits != tt.bits {
						t.Errorf("address %s, want /%d", a.IPNet, tt.bits)
					}
				}
			}
			if found != 1 {
				t.Fatalf("addresses %v: want %s exactly once", addrs, ip)
			}

			// The point of it all: the DNS server can bind the address, over UDP and TCP.
			netnstest.Do(t, n, func() error {
				pc, l, err := bindPair(t.Context(), net.JoinHostPort(tt.ip, "53"))
				if err != nil {
					return err
				}
				pc.Close()
				return l.Close()
			})
		})
	}
}

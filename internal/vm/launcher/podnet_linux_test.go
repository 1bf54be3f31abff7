package launcher

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/strata-cloud/strata/internal/network/cni"
	"github.com/strata-cloud/strata/internal/network/netnstest"
	"github.com/strata-cloud/strata/internal/vm/dhcp"
)

// TestBindTenantInterface binds a pod interface set up as the CNI plugin sets up a tenant
// network's: the guest gets the router's gateway, the subnet's host routes and DNS servers, and
// the same again when the launcher restarts after the address left eth0.
func TestBindTenantInterface(t *testing.T) {
	tests := []struct {
		name    string
		gateway string
		dns     []netip.Addr
	}{
		{name: "routed subnet", gateway: "10.0.0.1", dns: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("9.9.9.9")}},
		{name: "isolated subnet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node, pod := netnstest.New(t), netnstest.New(t)
			attrs := netlink.NewLinkAttrs()
			attrs.Name, attrs.MTU = "host0", 1450
			h := netnstest.Handle(t, node)
			if err := h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(pod.Fd()))}); err != nil {
				t.Fatal(err)
			}
			runDir := t.TempDir()
			want := dhcp.Lease{Addr: netip.MustParsePrefix("10.0.0.5/24"), MTU: 1450,
				Routes: []dhcp.Route{{Dst: netip.MustParsePrefix("192.168.50.0/24"), Via: netip.MustParseAddr("10.0.0.254")}}}
			if tt.gateway != "" {
				want.Gateway = netip.MustParseAddr(tt.gateway)
			}
			want.DNS = tt.dns
			netnstest.Do(t, pod, func() error {
				l, err := netlink.LinkByName("eth0")
				if err != nil {
					return err
				}
				want.MAC = l.Attrs().HardwareAddr
				if len(tt.dns) > 0 {
					if err := netlink.LinkSetAlias(l, cni.DNSAlias(tt.dns)); err != nil {
						return err
					}
				}
				if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("10.0.0.5"), Mask: net.CIDRMask(24, 32)}}); err != nil {
					return err
				}
				if err := netlink.LinkSetUp(l); err != nil {
					return err
				}
				if tt.gateway != "" {
					if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)},
						Gw: net.ParseIP(tt.gateway)}); err != nil {
						return err
					}
				}
				_, dst, _ := net.ParseCIDR("192.168.50.0/24")
				if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Gw: net.ParseIP("10.0.0.254")}); err != nil {
					return err
				}
				for _, round := range []string{"first start", "restart"} {
					lease, _, err := bindPodInterface(runDir, "eth0", "tap0", nil)
					if err != nil {
						return fmt.Errorf("%s: %w", round, err)
					}
					if len(tt.dns) == 0 {
						lease.DNS, lease.Search = nil, nil // the test host's resolv.conf
					}
					if !reflect.DeepEqual(lease, want) {
						return fmt.Errorf("%s: lease %+v, want %+v", round, lease, want)
					}
				}
				return nil
			})
		})
	}
}

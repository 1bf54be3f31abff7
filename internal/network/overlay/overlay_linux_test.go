package overlay

import (
	"context"
	"net"
	"net/netip"
	"reflect"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/strata-cloud/strata/internal/network/netnstest"
)

func TestSyncReconcilesKernel(t *testing.T) {
	ctx := context.Background()
	n := netnstest.New(t)
	h := netnstest.Handle(t, n)

	// an unrelated device with a permanent neighbour that Sync must leave alone
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "other0"
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		t.Fatal(err)
	}
	other, _ := h.LinkByName("other0")
	_ = h.LinkSetUp(other)
	_ = h.AddrAdd(other, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("172.16.0.1"), Mask: net.CIDRMask(24, 32)}})
	foreign := &netlink.Neigh{LinkIndex: other.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: net.ParseIP("172.16.0.9"), HardwareAddr: net.HardwareAddr{2, 1, 1, 1, 1, 1}}
	if err := h.NeighSet(foreign); err != nil {
		t.Fatal(err)
	}

	a := mkNode("a", "192.168.77.1", "10.42.1.0/24")
	b := mkNode("b", "192.168.77.2", "10.42.2.0/24")
	c := mkNode("c", "192.168.77.3", "10.42.3.0/24")
	o, err := New(Config{NodeName: "a", NodeIP: a.IP, PodCIDR: a.PodCIDR}, h)
	if err != nil {
		t.Fatal(err)
	}

	check := func(nodes []Node) {
		t.Helper()
		want, _ := Desired("a", nodes)
		l, err := h.LinkByName(DeviceName)
		if err != nil {
			t.Fatal(err)
		}
		got, err := o.current(l)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("kernel state\n got  %+v\n want %+v", got, want)
		}
	}

	if err := o.Sync(ctx, []Node{a, b, c}); err != nil {
		t.Fatal(err)
	}
	check([]Node{a, b, c})

	l, _ := h.LinkByName(DeviceName)
	vx := l.(*netlink.Vxlan)
	if vx.VxlanId != VNI || vx.Port != Port || vx.Learning || vx.Attrs().HardwareAddr.String() != VTEPMAC("a").String() ||
		vx.Attrs().MTU != 1450 || !vx.SrcAddr.Equal(net.ParseIP("192.168.77.1")) {
		t.Fatalf("device %+v", vx)
	}
	addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.42.1.0/32" {
		t.Fatalf("VTEP addresses %v", addrs)
	}

	// c leaves, b moves to another underlay address
	b.IP = netip.MustParseAddr("192.168.77.22")
	if err := o.Sync(ctx, []Node{a, b}); err != nil {
		t.Fatal(err)
	}
	check([]Node{a, b})

	// idempotent
	if err := o.Sync(ctx, []Node{a, b}); err != nil {
		t.Fatal(err)
	}
	check([]Node{a, b})

	neighs, _ := h.NeighList(other.Attrs().Index, netlink.FAMILY_V4)
	found := false
	for _, nb := range neighs {
		found = found || nb.IP.Equal(foreign.IP)
	}
	if !found {
		t.Fatal("Sync removed a neighbour of another device")
	}

	// a device with the wrong parameters is replaced
	o2, _ := New(Config{NodeName: "a", NodeIP: a.IP, PodCIDR: a.PodCIDR, Port: 4789}, h)
	if err := o2.Sync(ctx, []Node{a, b}); err != nil {
		t.Fatal(err)
	}
	l, _ = h.LinkByName(DeviceName)
	if l.(*netlink.Vxlan).Port != 4789 {
		t.Fatal("device not replaced")
	}

	if err := o2.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if err := o2.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LinkByName(DeviceName); err == nil {
		t.Fatal("device still there")
	}
}

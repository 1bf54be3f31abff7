package tenant

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/strata-cloud/strata/internal/network/netnstest"
)

// labNode is a "node": a namespace with an underlay address and the Segments working in it.
type labNode struct {
	ns   ns.NetNS
	h    *netlink.Handle
	ip   netip.Addr
	segs *Segments
}

func newLabNode(t *testing.T, ip string) *labNode {
	n := &labNode{ns: netnstest.New(t), ip: netip.MustParseAddr(ip)}
	n.h = netnstest.Handle(t, n.ns)
	var err error
	n.segs, err = NewSegments(n.h, n.ip, func(f func() error) error { return n.ns.Do(func(ns.NetNS) error { return f() }) })
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// twoNodes joins two lab nodes by an underlay veth pair in 192.168.88.0/24.
func twoNodes(t *testing.T) (a, b *labNode) {
	a, b = newLabNode(t, "192.168.88.1"), newLabNode(t, "192.168.88.2")
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "under0"
	if err := a.h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "under0", PeerNamespace: netlink.NsFd(int(b.ns.Fd()))}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*labNode{a, b} {
		u, err := n.h.LinkByName("under0")
		if err != nil {
			t.Fatal(err)
		}
		if err := n.h.AddrAdd(u, &netlink.Addr{IPNet: &net.IPNet{IP: n.ip.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
			t.Fatal(err)
		}
		if err := n.h.LinkSetUp(u); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

// endpoint plugs a new namespace with addr into the node's segment vni, as a pod would be.
func (n *labNode) endpoint(t *testing.T, name string, vni int32, addr string) ns.NetNS {
	t.Helper()
	pod := netnstest.New(t)
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU = name, 1450
	if err := n.h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(pod.Fd()))}); err != nil {
		t.Fatal(err)
	}
	host, _ := n.h.LinkByName(name)
	br, err := n.h.LinkByName(BridgeName(vni))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.h.LinkSetMaster(host, br); err != nil {
		t.Fatal(err)
	}
	if err := n.h.LinkSetUp(host); err != nil {
		t.Fatal(err)
	}
	netnstest.Do(t, pod, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		p := netip.MustParsePrefix(addr)
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	return pod
}

// reach reports whether client can open a TCP connection to addr served in server.
func reach(t *testing.T, server, client ns.NetNS, addr string) bool {
	t.Helper()
	var ln net.Listener
	netnstest.Do(t, server, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			fmt.Fprintln(c, "hello")
			c.Close()
		}
	}()
	ok := false
	netnstest.Do(t, client, func() error {
		c, err := net.DialTimeout("tcp4", addr, 1500*time.Millisecond)
		if err != nil {
			return nil
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		ok = err == nil && line == "hello\n"
		return nil
	})
	return ok
}

func (n *labNode) floods(t *testing.T, vni int32) []netip.Addr {
	t.Helper()
	vx, err := n.h.LinkByName(VXLANName(vni))
	if err != nil {
		t.Fatal(err)
	}
	got, err := n.segs.floodEntries(vx)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, netip.Addr.Compare)
	return got
}

// TestSegmentsTwoNodes: two nodes share two tenant networks with the same CIDR 10.0.0.0/24 but
// different VNIs. Endpoints of one network talk across nodes; they never reach the other's.
func TestSegmentsTwoNodes(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	segs := []Segment{{VNI: 100, MTU: 1450}, {VNI: 200, MTU: 1450}}
	for _, n := range []*labNode{a, b} {
		st := Desired(n.ip, segs, []netip.Addr{a.ip, b.ip})
		if err := n.segs.Sync(ctx, st); err != nil {
			t.Fatal(err)
		}
		if err := n.segs.Sync(ctx, st); err != nil { // idempotent
			t.Fatal(err)
		}
	}

	// the devices as specified
	br, err := a.h.LinkByName(BridgeName(100))
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if addrs, _ := a.h.AddrList(br, fam); len(addrs) != 0 {
			t.Fatalf("tenant bridge has addresses %v", addrs)
		}
	}
	l, err := a.h.LinkByName(VXLANName(100))
	if err != nil {
		t.Fatal(err)
	}
	vx := l.(*netlink.Vxlan)
	if vx.VxlanId != 100 || vx.Port != VXLANPort || !vx.Learning || !vx.SrcAddr.Equal(net.ParseIP("192.168.88.1")) ||
		vx.MTU != 1450 || vx.MasterIndex != br.Attrs().Index {
		t.Fatalf("vxlan device %+v", vx)
	}
	if got := a.floods(t, 100); !slices.Equal(got, []netip.Addr{b.ip}) {
		t.Fatalf("flood entries %v, want %v", got, b.ip)
	}
	netnstest.Do(t, a.ns, func() error {
		if v, _ := readSysctl("/proc/sys/net/ipv6/conf/" + BridgeName(100) + "/disable_ipv6"); v != "" && v != "1" {
			return fmt.Errorf("IPv6 on the tenant bridge: disable_ipv6=%s", v)
		}
		return nil
	})

	a1 := a.endpoint(t, "ep-a1", 100, "10.0.0.1/24")
	b1 := b.endpoint(t, "ep-b1", 100, "10.0.0.11/24")
	a2 := a.endpoint(t, "ep-a2", 200, "10.0.0.2/24")
	b2 := b.endpoint(t, "ep-b2", 200, "10.0.0.12/24")
	// the same address on both networks, on the same node as the other network's client
	b3 := b.endpoint(t, "ep-b3", 200, "10.0.0.1/24")

	if !reach(t, b1, a1, "10.0.0.11:7000") {
		t.Fatal("network 100: no connection across nodes")
	}
	if !reach(t, a1, b1, "10.0.0.1:7000") {
		t.Fatal("network 100: no connection back")
	}
	if !reach(t, b2, a2, "10.0.0.12:7000") {
		t.Fatal("network 200: no connection across nodes")
	}
	if !reach(t, b3, a2, "10.0.0.1:7001") {
		t.Fatal("network 200: 10.0.0.1 is not its own endpoint")
	}
	if reach(t, b2, a1, "10.0.0.12:7002") {
		t.Fatal("network 100 reached an endpoint of network 200")
	}
	if reach(t, b1, a2, "10.0.0.11:7002") {
		t.Fatal("network 200 reached an endpoint of network 100")
	}

	// b leaves network 200 while an endpoint is plugged in: kept; unplugged: removed
	if err := a.segs.Sync(ctx, Desired(a.ip, segs, []netip.Addr{a.ip})); err != nil { // b left the cluster
		t.Fatal(err)
	}
	if got := a.floods(t, 100); len(got) != 0 {
		t.Fatalf("flood entries %v after the peer left", got)
	}
	only100 := Desired(b.ip, segs[:1], []netip.Addr{a.ip})
	if err := b.segs.Sync(ctx, only100); err != nil {
		t.Fatal(err)
	}
	if _, err := b.h.LinkByName(BridgeName(200)); err != nil {
		t.Fatal("a segment with endpoints plugged in was removed")
	}
	for _, ep := range []string{"ep-b2", "ep-b3"} {
		l, _ := b.h.LinkByName(ep)
		if err := b.h.LinkDel(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.segs.Sync(ctx, only100); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{BridgeName(200), VXLANName(200)} {
		if _, err := b.h.LinkByName(name); err == nil {
			t.Fatalf("%s left after its network went", name)
		}
	}
	if _, err := b.h.LinkByName(BridgeName(100)); err != nil {
		t.Fatal("the segment still in use was removed")
	}

	// a device with the wrong parameters is replaced, and an address put on the bridge removed
	if err := b.h.AddrAdd(br0(t, b), &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("10.0.0.99"), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	other, _ := NewSegments(b.h, netip.MustParseAddr("192.168.88.22"), nil)
	if err := other.Ensure(Segment{VNI: 100, MTU: 1400}, nil); err != nil {
		t.Fatal(err)
	}
	l, _ = b.h.LinkByName(VXLANName(100))
	if vx := l.(*netlink.Vxlan); !vx.SrcAddr.Equal(net.ParseIP("192.168.88.22")) || vx.MTU != 1400 || vx.MasterIndex != br0(t, b).Attrs().Index {
		t.Fatalf("device not replaced: %+v", vx)
	}
	if addrs, _ := b.h.AddrList(br0(t, b), netlink.FAMILY_V4); len(addrs) != 0 {
		t.Fatalf("address left on the tenant bridge: %v", addrs)
	}
}

func br0(t *testing.T, n *labNode) netlink.Link {
	l, err := n.h.LinkByName(BridgeName(100))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

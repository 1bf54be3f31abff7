package lb

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/strata-cloud/strata/internal/network/netnstest"
)

// TestResponderAnswersAndAnnounces runs a responder in one namespace and
// checks, from a neighbour on a veth, that it resolves the address to the
// responder's interface, and that gratuitous ARP moves an existing entry.
func TestResponderAnswersAndAnnounces(t *testing.T) {
	node, peer := netnstest.New(t), netnstest.New(t)
	hn, hp := netnstest.Handle(t, node), netnstest.Handle(t, peer)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lbnode"}, PeerName: "lbpeer"}
	if err := hn.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	peerLink, err := hn.LinkByName("lbpeer")
	if err != nil {
		t.Fatal(err)
	}
	if err := hn.LinkSetNsFd(peerLink, int(peer.Fd())); err != nil {
		t.Fatal(err)
	}
	up := func(h *netlink.Handle, name, cidr string) netlink.Link {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := netlink.ParseAddr(cidr)
		if err := h.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	nodeLink, peerLink := up(hn, "lbnode", "10.250.0.1/24"), up(hp, "lbpeer", "10.250.0.2/24")
	nodeMAC := nodeLink.Attrs().HardwareAddr

	var r *responder
	netnstest.Do(t, node, func() error {
		iface, err := interfaceWith(netip.MustParseAddr("10.250.0.1"))
		if err != nil {
			return err
		}
		r, err = openResponder(iface)
		return err
	})
	served := make(chan error, 1)
	go func() { served <- r.serve() }()
	t.Cleanup(func() {
		r.close()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	vip, moved := netip.MustParseAddr("10.250.0.100"), netip.MustParseAddr("10.250.0.101")
	if added := r.set([]netip.Addr{vip}); len(added) != 1 {
		t.Fatalf("added %v", added)
	}

	neighbour := func(a netip.Addr) (net.HardwareAddr, error) {
		neighs, err := hp.NeighList(peerLink.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			return nil, err
		}
		for _, n := range neighs {
			if n.IP.Equal(a.AsSlice()) && n.HardwareAddr != nil && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0 {
				return n.HardwareAddr, nil
			}
		}
		return nil, fmt.Errorf("no resolved neighbour entry for %s: %v", a, neighs)
	}
	waitMAC := func(a netip.Addr, want net.HardwareAddr, poke func()) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if poke != nil {
				poke()
			}
			mac, err := neighbour(a)
			if err == nil && mac.String() == want.String() {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s resolves to %v (%v), want %s", a, mac, err, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// A datagram to the address makes the peer ask for it.
	send := func() {
		_ = peer.Do(func(ns.NetNS) error {
			c, err := net.Dial("udp4", net.JoinHostPort(vip.String(), "9"))
			if err == nil {
				_, _ = c.Write([]byte("x"))
				c.Close()
			}
			return nil
		})
	}
	waitMAC(vip, nodeMAC, send)

	// The peer believes another host has the address; the takeover's
	// gratuitous ARP corrects it without the peer asking.
	stale := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	if err := hp.NeighSet(&netlink.Neigh{LinkIndex: peerLink.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_STALE, IP: moved.AsSlice(), HardwareAddr: stale}); err != nil {
		t.Fatal(err)
	}
	waitMAC(moved, stale, nil)
	time.Sleep(1100 * time.Millisecond) // past the neighbour's locktime
	if added := r.set([]netip.Addr{vip, moved}); len(added) != 1 || added[0] != moved {
		t.Fatalf("added %v, want %s", added, moved)
	}
	if err := r.announce(moved); err != nil {
		t.Fatal(err)
	}
	waitMAC(moved, nodeMAC, nil)

	// Withdrawn: requests for the address go unanswered.
	r.set(nil)
	gone := netip.MustParseAddr("10.250.0.102")
	_ = peer.Do(func(ns.NetNS) error {
		c, err := net.Dial("udp4", net.JoinHostPort(gone.String(), "9"))
		if err == nil {
			_, _ = c.Write([]byte("x"))
			c.Close()
		}
		return nil
	})
	time.Sleep(time.Second)
	if mac, err := neighbour(gone); err == nil {
		t.Errorf("%s resolved to %s, though nobody answers for it", gone, mac)
	}
}

package secgroup

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/netnstest"
	"github.com/strata-cloud/strata/internal/network/policy"
)

// TestApplyEnforces builds a node namespace with two bridges whose ports (namespaces with fixed
// MACs) reuse each other's addresses, applies compiled security groups there and checks real
// traffic: a group allowing only tcp/80 in lets HTTP through (replies included) and drops ping
// and other ports; the filtered port's egress follows its egress rule; the port with the same IP
// and MAC on the other bridge follows its own group, in its own conntrack zone.
func TestApplyEnforces(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	nodeNS := netnstest.New(t)
	netnstest.Do(t, nodeNS, func() error {
		return os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-iptables", []byte("1"), 0o644)
	})
	h := netnstest.Handle(t, nodeNS)
	nets := map[string]Network{"lab/a": {Bridge: "sgbr-a", Zone: 11}, "lab/b": {Bridge: "sgbr-b", Zone: 12}}
	for _, nw := range nets {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: nw.Bridge}}
		if err := h.LinkAdd(br); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(br); err != nil {
			t.Fatal(err)
		}
	}
	type lp struct {
		ns   ns.NetNS
		port *netv1.Port
		ip   netip.Addr
	}
	n := 0
	addPort := func(name, network, ip, hw string, opts ...portOpt) lp {
		n++
		p := port(name, network, ip, hw, node, opts...)
		p.Namespace = "lab"
		pns := netnstest.New(t)
		host := fmt.Sprintf("sgv%d", n)
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}, PeerName: "eth0",
			PeerHardwareAddr: mac(hw), PeerNamespace: netlink.NsFd(int(pns.Fd()))}
		if err := h.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		l, err := h.LinkByName(host)
		if err == nil {
			err = h.LinkSetMaster(l, &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: nets["lab/"+network].Bridge}})
		}
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			t.Fatal(err)
		}
		ph := netnstest.Handle(t, pns)
		eth, err := ph.LinkByName("eth0")
		if err == nil {
			err = ph.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(ip), Mask: net.CIDRMask(24, 32)}})
		}
		if err == nil {
			err = ph.LinkSetUp(eth)
		}
		if err != nil {
			t.Fatal(err)
		}
		return lp{pns, p, netip.MustParseAddr(ip)}
	}
	web := addPort("web", "a", "10.9.0.1", "02:00:00:00:00:01", groups("web"))
	client := addPort("client", "a", "10.9.0.2", "02:00:00:00:00:02", noPortSecurity)
	peer := addPort("peer", "a", "10.9.0.3", "02:00:00:00:00:03", groups("open"))
	twin := addPort("twin", "b", "10.9.0.1", "02:00:00:00:00:01", groups("open")) // web's IP and MAC
	clientB := addPort("client-b", "b", "10.9.0.2", "02:00:00:00:00:22", noPortSecurity)
	for _, p := range []lp{web, twin} {
		netnstest.ServeLine(t, p.ns, netip.AddrPortFrom(p.ip, 80))
		netnstest.ServeLine(t, p.ns, netip.AddrPortFrom(p.ip, 81))
	}
	netnstest.ServeLine(t, peer.ns, netip.AddrPortFrom(peer.ip, 8080))
	netnstest.ServeLine(t, peer.ns, netip.AddrPortFrom(peer.ip, 80))
	netnstest.ServeLine(t, client.ns, netip.AddrPortFrom(client.ip, 80))

	in := Input{Node: node, Networks: nets,
		Ports: []*netv1.Port{web.port, client.port, peer.port, twin.port, clientB.port},
		Groups: []*netv1.SecurityGroup{
			{ObjectMeta: group("web").ObjectMeta, Spec: netv1.SecurityGroupSpec{Rules: []netv1.SecurityGroupRule{
				ingress("tcp", i32(80), nil),
				{Direction: "egress", Protocol: "tcp", PortRangeMin: i32(8080)},
			}}},
			{ObjectMeta: group("open").ObjectMeta, Spec: netv1.SecurityGroupSpec{Rules: []netv1.SecurityGroupRule{
				{Direction: "ingress"}, {Direction: "egress"},
			}}},
		}}
	for _, g := range in.Groups {
		g.Namespace = "lab"
	}
	opt := nftables.WithNetNSFd(int(nodeNS.Fd()))
	began := time.Now()
	if err := policy.Apply(ctx, Render(Compile(in)), opt); err != nil {
		t.Fatal(err)
	}
	t.Logf("applied in %s", time.Since(began))

	tcpTo := func(p lp, port uint16) netip.AddrPort { return netip.AddrPortFrom(p.ip, port) }
	for _, c := range []struct {
		name     string
		from     ns.NetNS
		to       netip.AddrPort // port 0: ping
		reach    bool
		protocol string
	}{
		{"HTTP to web, replies back", client.ns, tcpTo(web, 80), true, "tcp"},
		{"web's other port", client.ns, tcpTo(web, 81), false, "tcp"},
		{"ping web", client.ns, tcpTo(web, 0), false, "icmp"},
		{"ping web from a filtered peer", peer.ns, tcpTo(web, 0), false, "icmp"},
		{"HTTP to web from a filtered peer", peer.ns, tcpTo(web, 80), true, "tcp"},
		{"web egress to 8080", web.ns, tcpTo(peer, 8080), true, "tcp"},
		{"web egress to 80", web.ns, tcpTo(peer, 80), false, "tcp"},
		{"web egress to an unfiltered port", web.ns, tcpTo(client, 80), false, "tcp"},
		{"ping the unfiltered port", peer.ns, tcpTo(client, 0), true, "icmp"},
		{"twin (same IP and MAC, other bridge): its own group", clientB.ns, tcpTo(twin, 81), true, "tcp"},
		{"ping twin", clientB.ns, tcpTo(twin, 0), true, "icmp"},
	} {
		var err error
		if c.protocol == "icmp" {
			err = ping(c.from, c.to.Addr())
		} else {
			err = netnstest.DialLine(c.from, c.to)
		}
		if c.reach && err != nil {
			t.Errorf("%s (%s): %v, want reachable", c.name, c.to, err)
		}
		if !c.reach && err == nil {
			t.Errorf("%s (%s): reachable, want blocked", c.name, c.to)
		}
	}
	// Each bridge's connections are tracked in its own zone.
	var conntrack []byte
	netnstest.Do(t, nodeNS, func() (err error) {
		conntrack, err = os.ReadFile("/proc/thread-self/net/nf_conntrack")
		return err
	})
	for _, want := range []string{"dport=80 src=10.9.0.1 dst=10.9.0.2", "zone=11", "zone=12"} {
		if !strings.Contains(string(conntrack), want) {
			t.Errorf("conntrack table lacks %q:\n%s", want, conntrack)
		}
	}

	if err := policy.RemoveTable(ctx, TableName, opt); err != nil {
		t.Fatal(err)
	}
	if err := ping(client.ns, web.ip); err != nil {
		t.Errorf("ping web after removing the table: %v", err)
	}
}

// ping sends one ICMP echo request from inside n and waits for the reply.
func ping(n ns.NetNS, to netip.Addr) error {
	return n.Do(func(ns.NetNS) error {
		c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return err
		}
		defer c.Close()
		msg := []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1, 'p', 'i', 'n', 'g'}
		sum := uint32(0)
		for i := 0; i < len(msg); i += 2 {
			sum += uint32(msg[i])<<8 | uint32(msg[i+1])
		}
		sum = (sum >> 16) + (sum & 0xffff)
		sum += sum >> 16
		msg[2], msg[3] = byte(^sum>>8), byte(^sum)
		if _, err := c.WriteTo(msg, &net.IPAddr{IP: to.AsSlice()}); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
		buf := make([]byte, 1500)
		for {
			k, from, err := c.ReadFrom(buf)
			if err != nil {
				return err
			}
			if k >= 8 && buf[0] == 0 && from.(*net.IPAddr).IP.Equal(to.AsSlice()) && buf[4] == 0x12 && buf[5] == 0x34 {
				return nil
			}
		}
	})
}

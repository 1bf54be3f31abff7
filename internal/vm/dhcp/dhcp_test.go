package dhcp

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

var (
	guestMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	serverID = netip.MustParseAddr("169.254.75.10")
	lease    = Lease{
		MAC: guestMAC, Addr: netip.MustParsePrefix("10.42.0.57/24"), Gateway: netip.MustParseAddr("10.42.0.1"),
		DNS: []netip.Addr{netip.MustParseAddr("10.43.0.10")}, Search: []string{"ns1.svc.cluster.local", "svc.cluster.local"},
		Hostname: "web1", MTU: 1450,
	}
)

func request(typ byte, mac net.HardwareAddr, opts map[byte][]byte) *Packet {
	p := &Packet{Op: 1, XID: 0xabcd, CHAddr: mac, Options: map[byte][]byte{optMessageType: {typ}}}
	for k, v := range opts {
		p.Options[k] = v
	}
	// Through the wire format, as the server sees it.
	q, err := Parse(p.Marshal())
	if err != nil {
		panic(err)
	}
	return q
}

func TestOfferAndAck(t *testing.T) {
	offer := Reply(request(Discover, guestMAC, nil), lease, serverID)
	if offer == nil || offer.Type() != Offer {
		t.Fatalf("DISCOVER got %+v, want an OFFER", offer)
	}
	back, err := Parse(offer.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if back.YIAddr != lease.Addr.Addr() || back.XID != 0xabcd {
		t.Errorf("offer yiaddr %s xid %x", back.YIAddr, back.XID)
	}
	for code, want := range map[byte][]byte{
		optSubnetMask: {255, 255, 255, 0}, optRouter: {10, 42, 0, 1}, optDNS: {10, 43, 0, 10},
		optBroadcast: {10, 42, 0, 255}, optMTU: {0x05, 0xaa}, optHostname: []byte("web1"),
		optServerID: {169, 254, 75, 10}, optDomainName: []byte("ns1.svc.cluster.local"),
		optDomainSearch: append([]byte("\x03ns1\x03svc\x07cluster\x05local\x00"), "\x03svc\x07cluster\x05local\x00"...),
	} {
		if got := back.Options[code]; !bytes.Equal(got, want) {
			t.Errorf("option %d = %v, want %v", code, got, want)
		}
	}
	ack := Reply(request(Request, guestMAC, map[byte][]byte{optRequestedIP: {10, 42, 0, 57}, optServerID: {169, 254, 75, 10}}), lease, serverID)
	if ack == nil || ack.Type() != Ack || ack.YIAddr != lease.Addr.Addr() {
		t.Fatalf("REQUEST for the leased address got %+v, want an ACK", ack)
	}
}

func TestNakIgnoreAndOtherClients(t *testing.T) {
	if nak := Reply(request(Request, guestMAC, map[byte][]byte{optRequestedIP: {10, 42, 0, 99}}), lease, serverID); nak == nil || nak.Type() != Nak {
		t.Errorf("REQUEST for another address got %+v, want a NAK", nak)
	}
	if r := Reply(request(Request, guestMAC, map[byte][]byte{optServerID: {10, 0, 0, 1}}), lease, serverID); r != nil {
		t.Errorf("REQUEST to another server answered: %+v", r)
	}
	other := net.HardwareAddr{0x52, 0x54, 0x00, 0, 0, 1}
	if r := Reply(request(Discover, other, nil), lease, serverID); r != nil {
		t.Errorf("DISCOVER from another MAC answered: %+v", r)
	}
	if r := Reply(request(Release, guestMAC, nil), lease, serverID); r != nil {
		t.Errorf("RELEASE answered: %+v", r)
	}
	if _, err := Parse([]byte("short")); err == nil {
		t.Error("a short packet parsed")
	}
}

func TestClasslessRoutes(t *testing.T) {
	// RFC 3442's own examples, and an on-link route.
	got := EncodeRoutes([]Route{
		{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("10.0.0.1")},
		{Dst: netip.MustParsePrefix("10.0.0.0/8"), Via: netip.MustParseAddr("10.0.0.6")},
		{Dst: netip.MustParsePrefix("10.17.0.0/16"), Via: netip.MustParseAddr("10.0.0.6")},
		{Dst: netip.MustParsePrefix("10.27.129.0/24"), Via: netip.MustParseAddr("10.0.0.6")},
		{Dst: netip.MustParsePrefix("10.229.0.128/25"), Via: netip.MustParseAddr("10.0.0.6")},
		{Dst: netip.MustParsePrefix("10.198.122.47/32"), Via: netip.MustParseAddr("10.0.0.6")},
		{Dst: netip.MustParsePrefix("169.254.169.254/32")},
		{Dst: netip.MustParsePrefix("fd00::/8")}, // not IPv4: left out
	})
	want := []byte{
		0, 10, 0, 0, 1,
		8, 10, 10, 0, 0, 6,
		16, 10, 17, 10, 0, 0, 6,
		24, 10, 27, 129, 10, 0, 0, 6,
		25, 10, 229, 0, 128, 10, 0, 0, 6,
		32, 10, 198, 122, 47, 10, 0, 0, 6,
		32, 169, 254, 169, 254, 0, 0, 0, 0,
	}
	if !bytes.Equal(got, want) {
		t.Errorf("EncodeRoutes = %v\nwant %v", got, want)
	}

	// Without routes, no option 121: the router option is enough.
	if r := Reply(request(Discover, guestMAC, nil), lease, serverID); r.Options[optStaticRoutes] != nil {
		t.Errorf("option 121 without routes: %v", r.Options[optStaticRoutes])
	}
	// With routes, the default route comes along (clients then ignore
	// option 3, which stays for those that do not know 121).
	withRoutes := lease
	withRoutes.Routes = []Route{{Dst: netip.MustParsePrefix("169.254.169.254/32")}}
	back, err := Parse(Reply(request(Discover, guestMAC, nil), withRoutes, serverID).Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := back.Options[optStaticRoutes], []byte{32, 169, 254, 169, 254, 0, 0, 0, 0, 0, 10, 42, 0, 1}; !bytes.Equal(got, want) {
		t.Errorf("option 121 = %v, want %v", got, want)
	}
	if !bytes.Equal(back.Options[optRouter], []byte{10, 42, 0, 1}) {
		t.Errorf("option 3 = %v", back.Options[optRouter])
	}
	// A gateway outside the subnet gets a route on the link first.
	withRoutes.Addr = netip.MustParsePrefix("10.42.0.57/32")
	r := Reply(request(Discover, guestMAC, nil), withRoutes, serverID)
	if got, want := r.Options[optStaticRoutes], []byte{32, 169, 254, 169, 254, 0, 0, 0, 0, 32, 10, 42, 0, 1, 0, 0, 0, 0, 0, 10, 42, 0, 1}; !bytes.Equal(got, want) {
		t.Errorf("option 121 with an off-subnet gateway = %v, want %v", got, want)
	}
}

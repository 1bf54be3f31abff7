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

package lb

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

func TestARPReply(t *testing.T) {
	asker := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	ours := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	vip, client := netip.MustParseAddr("10.99.0.200"), netip.MustParseAddr("10.99.0.5")
	req := arpPacket{EthDst: broadcastMAC, EthSrc: asker, Op: arpRequest, SenderMAC: asker, SenderIP: client, TargetMAC: make(net.HardwareAddr, 6), TargetIP: vip}
	frame := req.marshal()
	if len(frame) != minFrameLen {
		t.Fatalf("frame of %d bytes, want %d", len(frame), minFrameLen)
	}
	parsed, err := parseARP(frame)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.TargetIP != vip || parsed.SenderIP != client || !bytes.Equal(parsed.SenderMAC, asker) || parsed.Op != arpRequest {
		t.Fatalf("parsed %+v, want %+v", parsed, req)
	}
	reply, ok := replyTo(parsed, ours)
	if !ok {
		t.Fatal("no reply to a request")
	}
	back, err := parseARP(reply.marshal())
	if err != nil {
		t.Fatal(err)
	}
	if back.Op != arpReply || back.SenderIP != vip || !bytes.Equal(back.SenderMAC, ours) ||
		back.TargetIP != client || !bytes.Equal(back.TargetMAC, asker) || !bytes.Equal(back.EthDst, asker) || !bytes.Equal(back.EthSrc, ours) {
		t.Fatalf("reply %+v", back)
	}
	// Another host announcing the address is no question.
	if _, ok := replyTo(arpPacket{Op: arpRequest, SenderIP: vip, TargetIP: vip, SenderMAC: asker}, ours); ok {
		t.Error("answered a gratuitous ARP")
	}
	if _, ok := replyTo(back, ours); ok {
		t.Error("answered a reply")
	}
	if _, err := parseARP(frame[:30]); err == nil {
		t.Error("parsed a short frame")
	}
	ipv4 := append([]byte(nil), frame...)
	ipv4[12], ipv4[13] = 0x08, 0x00
	if _, err := parseARP(ipv4); err == nil {
		t.Error("parsed an IPv4 frame as ARP")
	}
}

func TestGratuitous(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	vip := netip.MustParseAddr("10.99.0.200")
	for _, p := range gratuitous(vip, mac) {
		got, err := parseARP(p.marshal())
		if err != nil {
			t.Fatal(err)
		}
		if got.SenderIP != vip || got.TargetIP != vip || !bytes.Equal(got.SenderMAC, mac) || !bytes.Equal(got.EthDst, broadcastMAC) {
			t.Errorf("gratuitous ARP %+v", got)
		}
	}
}

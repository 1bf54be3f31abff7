package lb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// ARP over Ethernet for IPv4 (RFC 826), as the announcer needs it.
const (
	etherTypeARP = 0x0806
	arpRequest   = 1
	arpReply     = 2
	ethHeaderLen = 14
	arpLen       = 28
	minFrameLen  = 60 // Ethernet's minimum, without the FCS
)

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// arpPacket is an Ethernet/IPv4 ARP message with its Ethernet header.
type arpPacket struct {
	EthDst, EthSrc net.HardwareAddr
	Op             uint16
	SenderMAC      net.HardwareAddr
	SenderIP       netip.Addr
	TargetMAC      net.HardwareAddr
	TargetIP       netip.Addr
}

func (p arpPacket) marshal() []byte {
	b := make([]byte, minFrameLen)
	copy(b[0:6], p.EthDst)
	copy(b[6:12], p.EthSrc)
	binary.BigEndian.PutUint16(b[12:14], etherTypeARP)
	a := b[ethHeaderLen:]
	binary.BigEndian.PutUint16(a[0:2], 1)      // Ethernet
	binary.BigEndian.PutUint16(a[2:4], 0x0800) // IPv4
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], p.Op)
	copy(a[8:14], p.SenderMAC)
	s, t := p.SenderIP.As4(), p.TargetIP.As4()
	copy(a[14:18], s[:])
	copy(a[18:24], p.TargetMAC)
	copy(a[24:28], t[:])
	return b
}

var errNotARP = errors.New("not an Ethernet/IPv4 ARP frame")

func parseARP(b []byte) (arpPacket, error) {
	if len(b) < ethHeaderLen+arpLen || binary.BigEndian.Uint16(b[12:14]) != etherTypeARP {
		return arpPacket{}, errNotARP
	}
	a := b[ethHeaderLen:]
	if binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != 0x0800 || a[4] != 6 || a[5] != 4 {
		return arpPacket{}, errNotARP
	}
	return arpPacket{
		EthDst:    net.HardwareAddr(b[0:6]),
		EthSrc:    net.HardwareAddr(b[6:12]),
		Op:        binary.BigEndian.Uint16(a[6:8]),
		SenderMAC: net.HardwareAddr(a[8:14]),
		SenderIP:  netip.AddrFrom4([4]byte(a[14:18])),
		TargetMAC: net.HardwareAddr(a[18:24]),
		TargetIP:  netip.AddrFrom4([4]byte(a[24:28])),
	}, nil
}

// replyTo is the answer to request, when ip is ours and mac is our
// interface's; ok is false when request is no question about an address
// (a gratuitous announcement of another host's).
func replyTo(request arpPacket, mac net.HardwareAddr) (arpPacket, bool) {
	if request.Op != arpRequest || request.SenderIP == request.TargetIP {
		return arpPacket{}, false
	}
	return arpPacket{
		EthDst: request.SenderMAC, EthSrc: mac, Op: arpReply,
		SenderMAC: mac, SenderIP: request.TargetIP,
		TargetMAC: request.SenderMAC, TargetIP: request.SenderIP,
	}, true
}

// gratuitous are the announcements of ip at mac (RFC 5227 §3): a request
// and a reply, both broadcast, as hosts differ in which they heed.
func gratuitous(ip netip.Addr, mac net.HardwareAddr) []arpPacket {
	return []arpPacket{
		{EthDst: broadcastMAC, EthSrc: mac, Op: arpRequest, SenderMAC: mac, SenderIP: ip, TargetMAC: make(net.HardwareAddr, 6), TargetIP: ip},
		{EthDst: broadcastMAC, EthSrc: mac, Op: arpReply, SenderMAC: mac, SenderIP: ip, TargetMAC: broadcastMAC, TargetIP: ip},
	}
}

// A responder answers ARP requests for a set of addresses on one
// interface, through a packet socket: the addresses are never assigned
// to the node, so its kernel neither answers for them nor routes to them
// locally (kube-proxy's DNAT does that).
type responder struct {
	iface *net.Interface
	file  *os.File

	mu    sync.Mutex
	addrs map[netip.Addr]bool
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openResponder opens a packet socket for ARP on iface.
func openResponder(iface *net.Interface) (*responder, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(htons(etherTypeARP)))
	if err != nil {
		return nil, fmt.Errorf("ARP socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(etherTypeARP), Ifindex: iface.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ARP socket on %s: %w", iface.Name, err)
	}
	// Non-blocking, so reads wait in Go's poller and Close ends them.
	return &responder{iface: iface, file: os.NewFile(uintptr(fd), "arp-"+iface.Name), addrs: map[netip.Addr]bool{}}, nil
}

// set replaces the addresses answered for and returns those added.
func (r *responder) set(addrs []netip.Addr) []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	var added []netip.Addr
	next := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		next[a] = true
		if !r.addrs[a] {
			added = append(added, a)
		}
	}
	r.addrs = next
	return added
}

func (r *responder) answers(a netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addrs[a]
}

// announce sends gratuitous ARP for a, so that neighbours forget the
// previous announcer at once.
func (r *responder) announce(a netip.Addr) error {
	var errs []error
	for _, p := range gratuitous(a, r.iface.HardwareAddr) {
		_, err := r.file.Write(p.marshal())
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// serve answers requests until the responder is closed.
func (r *responder) serve() error {
	buf := make([]byte, 1500)
	for {
		n, err := r.file.Read(buf)
		if errors.Is(err, os.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read ARP on %s: %w", r.iface.Name, err)
		}
		req, err := parseARP(buf[:n])
		if err != nil || !r.answers(req.TargetIP) {
			continue
		}
		if reply, ok := replyTo(req, r.iface.HardwareAddr); ok {
			_, _ = r.file.Write(reply.marshal()) // the asker asks again
		}
	}
}

func (r *responder) close() error { return r.file.Close() }

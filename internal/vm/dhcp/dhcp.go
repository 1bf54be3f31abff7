// Package dhcp is the launcher's DHCPv4 server: it hands one guest (known
// by its MAC) the address its launcher pod was given, so the VM owns the
// pod's IP. It answers DISCOVER, REQUEST and INFORM for that MAC only,
// with an infinite lease (the address belongs to the pod for its life), and
// ignores everything else on the wire (RFC 2131, options from RFC 2132 and
// the domain search list of RFC 3397, classless static routes of RFC 3442).
package dhcp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
)

// Lease is what the guest gets.
type Lease struct {
	MAC      net.HardwareAddr
	Addr     netip.Prefix // the guest's address and the subnet's length
	Gateway  netip.Addr   // default router; zero for none
	DNS      []netip.Addr
	Search   []string // DNS search domains
	Hostname string
	MTU      int // 0 leaves the guest's default
	// Routes are classless static routes (option 121, RFC 3442) beyond
	// the default one. A client that takes option 121 ignores the router
	// option, so with Routes the lease also carries the default route via
	// Gateway in option 121 (and a route to Gateway on the link when the
	// subnet does not hold it).
	Routes []Route
}

// Route is one classless static route; an unset or unspecified Via means
// the destination is on the link.
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
}

// Message types (option 53).
const (
	Discover = 1
	Offer    = 2
	Request  = 3
	Decline  = 4
	Ack      = 5
	Nak      = 6
	Release  = 7
	Inform   = 8
)

// Option codes used here.
const (
	optSubnetMask   = 1
	optRouter       = 3
	optDNS          = 6
	optHostname     = 12
	optDomainName   = 15
	optMTU          = 26
	optBroadcast    = 28
	optRequestedIP  = 50
	optLeaseTime    = 51
	optMessageType  = 53
	optServerID     = 54
	optDomainSearch = 119
	optStaticRoutes = 121
	optEnd          = 255
	optPad          = 0
)

var magicCookie = []byte{99, 130, 83, 99}

// Packet is the part of a BOOTP message the server reads and writes.
type Packet struct {
	Op      byte
	XID     uint32
	Flags   uint16
	CIAddr  netip.Addr
	YIAddr  netip.Addr
	SIAddr  netip.Addr
	GIAddr  netip.Addr
	CHAddr  net.HardwareAddr
	Options map[byte][]byte
}

// Type is the message type option, 0 when absent.
func (p *Packet) Type() byte {
	if v := p.Options[optMessageType]; len(v) == 1 {
		return v[0]
	}
	return 0
}

const headerLen = 236

// Parse decodes a BOOTP/DHCP message.
func Parse(b []byte) (*Packet, error) {
	if len(b) < headerLen+4 || !bytes.Equal(b[headerLen:headerLen+4], magicCookie) {
		return nil, errors.New("not a DHCP message")
	}
	hlen := int(b[2])
	if hlen > 16 {
		return nil, fmt.Errorf("hardware address length %d", hlen)
	}
	p := &Packet{
		Op: b[0], XID: binary.BigEndian.Uint32(b[4:8]), Flags: binary.BigEndian.Uint16(b[10:12]),
		CIAddr: addr4(b[12:16]), YIAddr: addr4(b[16:20]), SIAddr: addr4(b[20:24]), GIAddr: addr4(b[24:28]),
		CHAddr: net.HardwareAddr(bytes.Clone(b[28 : 28+hlen])), Options: map[byte][]byte{},
	}
	opts := b[headerLen+4:]
	for i := 0; i < len(opts); {
		code := opts[i]
		if code == optEnd {
			break
		}
		if code == optPad {
			i++
			continue
		}
		if i+1 >= len(opts) || i+2+int(opts[i+1]) > len(opts) {
			return nil, errors.New("truncated option")
		}
		n := int(opts[i+1])
		p.Options[code] = append(p.Options[code], opts[i+2:i+2+n]...) // RFC 3396: split options concatenate
		i += 2 + n
	}
	return p, nil
}

func addr4(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b)) }

// Marshal encodes p, its options in ascending code order.
func (p *Packet) Marshal() []byte {
	b := make([]byte, headerLen, 548)
	b[0], b[1], b[2] = p.Op, 1, byte(len(p.CHAddr))
	binary.BigEndian.PutUint32(b[4:8], p.XID)
	binary.BigEndian.PutUint16(b[10:12], p.Flags)
	for i, a := range []netip.Addr{p.CIAddr, p.YIAddr, p.SIAddr, p.GIAddr} {
		if a.Is4() {
			a4 := a.As4()
			copy(b[12+4*i:], a4[:])
		}
	}
	copy(b[28:44], p.CHAddr)
	b = append(b, magicCookie...)
	for code := 1; code < 255; code++ {
		v, ok := p.Options[byte(code)]
		if !ok {
			continue
		}
		for len(v) > 0 { // long values split across options (RFC 3396)
			n := min(len(v), 255)
			b = append(b, byte(code), byte(n))
			b = append(b, v[:n]...)
			v = v[n:]
		}
	}
	b = append(b, optEnd)
	for len(b) < 300 { // the BOOTP minimum some clients insist on
		b = append(b, optPad)
	}
	return b
}

// Reply is the server's answer to req for lease, or nil when it ignores
// req (another client, a message a server does not answer).
func Reply(req *Packet, lease Lease, serverID netip.Addr) *Packet {
	if req.Op != 1 || !bytes.Equal(req.CHAddr, lease.MAC) {
		return nil
	}
	var typ byte
	switch req.Type() {
	case Discover:
		typ = Offer
	case Request:
		typ = Ack
		want := req.CIAddr
		if v := req.Options[optRequestedIP]; len(v) == 4 {
			want = addr4(v)
		}
		if sid := req.Options[optServerID]; len(sid) == 4 && addr4(sid) != serverID {
			return nil // the client chose another server
		}
		if want.IsValid() && !want.IsUnspecified() && want != lease.Addr.Addr() {
			typ = Nak // an address from an earlier life: start over
		}
	case Inform:
		typ = Ack
	default:
		return nil
	}
	resp := &Packet{Op: 2, XID: req.XID, Flags: req.Flags, GIAddr: req.GIAddr, CHAddr: req.CHAddr, Options: map[byte][]byte{}}
	sid := serverID.As4()
	resp.Options[optMessageType] = []byte{typ}
	resp.Options[optServerID] = sid[:]
	if typ == Nak {
		return resp
	}
	if req.Type() != Inform {
		resp.YIAddr = lease.Addr.Addr()
		resp.Options[optLeaseTime] = []byte{0xff, 0xff, 0xff, 0xff} // infinite
	}
	resp.CIAddr = req.CIAddr
	mask := net.CIDRMask(lease.Addr.Bits(), 32)
	resp.Options[optSubnetMask] = mask
	bcast := lease.Addr.Masked().Addr().As4()
	for i := range bcast {
		bcast[i] |= ^mask[i]
	}
	resp.Options[optBroadcast] = bcast[:]
	if lease.Gateway.Is4() {
		gw := lease.Gateway.As4()
		resp.Options[optRouter] = gw[:]
	}
	var dns []byte
	for _, d := range lease.DNS {
		if d.Is4() {
			a := d.As4()
			dns = append(dns, a[:]...)
		}
	}
	if len(dns) > 0 {
		resp.Options[optDNS] = dns
	}
	if lease.Hostname != "" {
		resp.Options[optHostname] = []byte(lease.Hostname)
	}
	if len(lease.Search) > 0 {
		resp.Options[optDomainName] = []byte(lease.Search[0])
		resp.Options[optDomainSearch] = encodeSearch(lease.Search)
	}
	if lease.MTU >= 68 && lease.MTU <= 65535 {
		resp.Options[optMTU] = binary.BigEndian.AppendUint16(nil, uint16(lease.MTU))
	}
	if routes := lease.classlessRoutes(); len(routes) > 0 {
		resp.Options[optStaticRoutes] = EncodeRoutes(routes)
	}
	return resp
}

// classlessRoutes is option 121's list: Routes, then (with a gateway) a
// route to it on the link if the subnet does not hold it, and the default
// route via it. Nil without Routes (the router option is enough).
func (l Lease) classlessRoutes() []Route {
	if len(l.Routes) == 0 {
		return nil
	}
	routes := slices.Clone(l.Routes)
	if l.Gateway.Is4() {
		if !l.Addr.Masked().Contains(l.Gateway) {
			routes = append(routes, Route{Dst: netip.PrefixFrom(l.Gateway, 32)})
		}
		routes = append(routes, Route{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Via: l.Gateway})
	}
	return routes
}

// EncodeRoutes writes routes as option 121 does (RFC 3442): the prefix
// length, the destination's significant octets, the router (0.0.0.0 for on
// the link). Non-IPv4 routes are left out.
func EncodeRoutes(routes []Route) []byte {
	var b []byte
	for _, r := range routes {
		if !r.Dst.Addr().Is4() || r.Dst.Bits() < 0 {
			continue
		}
		dst := r.Dst.Masked().Addr().As4()
		via := [4]byte{}
		if r.Via.Is4() {
			via = r.Via.As4()
		}
		b = append(b, byte(r.Dst.Bits()))
		b = append(b, dst[:(r.Dst.Bits()+7)/8]...)
		b = append(b, via[:]...)
	}
	return b
}

// encodeSearch writes domains as DNS names (RFC 1035 labels, no
// compression), as option 119 carries them.
func encodeSearch(domains []string) []byte {
	var b []byte
	for _, d := range domains {
		for l := range strings.SplitSeq(strings.Trim(d, "."), ".") {
			if l == "" || len(l) > 63 {
				continue
			}
			b = append(b, byte(len(l)))
			b = append(b, l...)
		}
		b = append(b, 0)
	}
	return b
}

// Serve answers the guest's DHCP messages on the interface ifName (which
// must have serverID as an address) until ctx is done.
func Serve(ctx context.Context, ifName string, serverID netip.Addr, lease Lease, logf func(string, ...any)) error {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = errors.Join(
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1),
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1),
				syscall.BindToDevice(int(fd), ifName),
			)
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", "0.0.0.0:67")
	if err != nil {
		return fmt.Errorf("dhcp: listen on %s: %w", ifName, err)
	}
	go func() {
		<-ctx.Done()
		pc.Close()
	}()
	buf := make([]byte, 1500)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dhcp: read: %w", err)
		}
		req, err := Parse(buf[:n])
		if err != nil {
			continue
		}
		resp := Reply(req, lease, serverID)
		if resp == nil {
			continue
		}
		// Broadcast: the guest has no address yet (and an INFORMing one
		// hears it as well).
		dst := &net.UDPAddr{IP: net.IPv4bcast, Port: 68}
		if _, err := pc.WriteTo(resp.Marshal(), dst); err != nil {
			logf("dhcp: reply to %s: %v", req.CHAddr, err)
			continue
		}
		if t := resp.Type(); t == Ack || t == Nak {
			logf("dhcp: %s %s to %s", map[byte]string{Ack: "ACK", Nak: "NAK"}[t], resp.YIAddr, req.CHAddr)
		}
	}
}

package overlay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
)

// Config describes the local end of the overlay.
type Config struct {
	NodeName string
	NodeIP   netip.Addr   // underlay source address of VXLAN packets
	PodCIDR  netip.Prefix // this node's pod CIDR
	MTU      int          // of the VXLAN device; 0 means 1500 - Overhead
	// Device, VNI and Port default to DeviceName, VNI and Port.
	Device string
	VNI    int
	Port   int
}

// Overlay programs the local VXLAN device and its forwarding state through one netlink handle,
// which fixes the network namespace it works in.
type Overlay struct {
	h   *netlink.Handle
	cfg Config
}

// New checks cfg and returns an Overlay working through h (a handle for the node's namespace;
// netlink.NewHandle() for the caller's). The caller keeps ownership of h.
func New(cfg Config, h *netlink.Handle) (*Overlay, error) {
	if cfg.Device == "" {
		cfg.Device = DeviceName
	}
	if cfg.VNI == 0 {
		cfg.VNI = VNI
	}
	if cfg.Port == 0 {
		cfg.Port = Port
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500 - Overhead
	}
	if err := checkNode(Node{Name: cfg.NodeName, IP: cfg.NodeIP, PodCIDR: cfg.PodCIDR, VTEPMAC: VTEPMAC(cfg.NodeName)}); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("overlay: nil netlink handle")
	}
	cfg.PodCIDR = cfg.PodCIDR.Masked()
	return &Overlay{h: h, cfg: cfg}, nil
}

// Local is this node as peers must see it; publish Local().Annotations() on the Node.
func (o *Overlay) Local() Node {
	return Node{Name: o.cfg.NodeName, IP: o.cfg.NodeIP, PodCIDR: o.cfg.PodCIDR, VTEPMAC: VTEPMAC(o.cfg.NodeName)}
}

// Sync is the reconcile entry point: it ensures the device and makes its routes, ARP and FDB
// entries exactly those Desired computes for nodes (which may include the local node). Invalid
// or conflicting nodes are skipped and reported in the error after the rest is applied.
func (o *Overlay) Sync(ctx context.Context, nodes []Node) error {
	link, err := o.EnsureDevice(ctx)
	if err != nil {
		return err
	}
	desired, nodeErr := Desired(o.cfg.NodeName, nodes)
	current, err := o.current(link)
	if err != nil {
		return errors.Join(err, nodeErr)
	}
	add, remove := Diff(current, desired)
	return errors.Join(o.apply(ctx, link, add, remove), nodeErr)
}

// EnsureDevice creates or repairs the VXLAN device: VNI, port, source address and learning off
// (recreated when they differ), MAC, MTU, VTEP address, up.
func (o *Overlay) EnsureDevice(ctx context.Context) (netlink.Link, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	mac := VTEPMAC(o.cfg.NodeName)
	l, err := o.h.LinkByName(o.cfg.Device)
	switch {
	case err == nil:
		if vx, ok := l.(*netlink.Vxlan); !ok || !o.matches(vx) {
			if err := o.h.LinkDel(l); err != nil {
				return nil, fmt.Errorf("overlay: replace %s: %w", o.cfg.Device, err)
			}
			l = nil
		}
	case isNotFound(err):
		l = nil
	default:
		return nil, fmt.Errorf("overlay: look up %s: %w", o.cfg.Device, err)
	}
	if l == nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU, attrs.HardwareAddr = o.cfg.Device, o.cfg.MTU, mac
		vx := &netlink.Vxlan{LinkAttrs: attrs, VxlanId: o.cfg.VNI, SrcAddr: o.cfg.NodeIP.AsSlice(),
			Port: o.cfg.Port, Learning: false}
		if err := o.h.LinkAdd(vx); err != nil && !errors.Is(err, syscall.EEXIST) {
			return nil, fmt.Errorf("overlay: create %s: %w", o.cfg.Device, err)
		}
		if l, err = o.h.LinkByName(o.cfg.Device); err != nil {
			return nil, fmt.Errorf("overlay: look up %s: %w", o.cfg.Device, err)
		}
	}
	if l.Attrs().HardwareAddr.String() != mac.String() {
		if err := o.h.LinkSetHardwareAddr(l, mac); err != nil {
			return nil, fmt.Errorf("overlay: set MAC of %s: %w", o.cfg.Device, err)
		}
	}
	if l.Attrs().MTU != o.cfg.MTU {
		if err := o.h.LinkSetMTU(l, o.cfg.MTU); err != nil {
			return nil, fmt.Errorf("overlay: set MTU of %s: %w", o.cfg.Device, err)
		}
	}
	if err := o.ensureAddr(l); err != nil {
		return nil, err
	}
	if err := o.h.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("overlay: set %s up: %w", o.cfg.Device, err)
	}
	return l, nil
}

func (o *Overlay) matches(vx *netlink.Vxlan) bool {
	return vx.VxlanId == o.cfg.VNI && vx.Port == o.cfg.Port && !vx.Learning &&
		net.IP(o.cfg.NodeIP.AsSlice()).Equal(vx.SrcAddr)
}

// ensureAddr leaves exactly the VTEP address (/32) on the device.
func (o *Overlay) ensureAddr(l netlink.Link) error {
	want := netip.PrefixFrom(VTEPAddr(o.cfg.PodCIDR), 32)
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return o.h.AddrList(l, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("overlay: addresses of %s: %w", o.cfg.Device, err)
	}
	has := false
	for _, a := range addrs {
		if p, ok := toPrefix(a.IPNet); ok && p == want {
			has = true
			continue
		}
		if err := o.h.AddrDel(l, &a); err != nil {
			return fmt.Errorf("overlay: remove stale %s from %s: %w", a.IPNet, o.cfg.Device, err)
		}
	}
	if !has {
		if err := o.h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(want)}); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("overlay: add %s to %s: %w", want, o.cfg.Device, err)
		}
	}
	return nil
}

// current reads the state on our device only: non-kernel IPv4 routes, permanent ARP entries,
// and FDB entries with a destination.
func (o *Overlay) current(l netlink.Link) (State, error) {
	var st State
	idx := l.Attrs().Index
	routes, err := retryDump(func() ([]netlink.Route, error) { return o.h.RouteList(l, netlink.FAMILY_V4) })
	if err != nil {
		return st, fmt.Errorf("overlay: routes of %s: %w", o.cfg.Device, err)
	}
	for _, r := range routes {
		if r.Protocol == syscall.RTPROT_KERNEL || r.Dst == nil || r.LinkIndex != idx || r.Table != syscall.RT_TABLE_MAIN {
			continue
		}
		dst, ok1 := toPrefix(r.Dst)
		via, ok2 := netip.AddrFromSlice(r.Gw)
		if ok1 && ok2 {
			st.Routes = append(st.Routes, Route{Dst: dst, Via: via.Unmap()})
		}
	}
	neighs, err := retryDump(func() ([]netlink.Neigh, error) { return o.h.NeighList(idx, netlink.FAMILY_V4) })
	if err != nil {
		return st, fmt.Errorf("overlay: neighbours of %s: %w", o.cfg.Device, err)
	}
	for _, n := range neighs {
		ip, ok := netip.AddrFromSlice(n.IP)
		if ok && n.State&netlink.NUD_PERMANENT != 0 && len(n.HardwareAddr) == 6 {
			st.Neighbors = append(st.Neighbors, Neighbor{IP: ip.Unmap(), MAC: n.HardwareAddr.String()})
		}
	}
	fdb, err := retryDump(func() ([]netlink.Neigh, error) { return o.h.NeighList(idx, syscall.AF_BRIDGE) })
	if err != nil {
		return st, fmt.Errorf("overlay: fdb of %s: %w", o.cfg.Device, err)
	}
	for _, n := range fdb {
		dst, ok := netip.AddrFromSlice(n.IP)
		if ok && len(n.HardwareAddr) == 6 && n.LinkIndex == idx {
			st.FDB = append(st.FDB, FDBEntry{MAC: n.HardwareAddr.String(), Dst: dst.Unmap()})
		}
	}
	st.sort()
	return st, nil
}

// apply removes first (so a changed entry's new value is not removed with the old) and adds FDB
// and ARP entries before the routes that use them.
func (o *Overlay) apply(ctx context.Context, l netlink.Link, add, remove State) error {
	idx := l.Attrs().Index
	var errs []error
	for _, r := range remove.Routes {
		if err := o.h.RouteDel(o.route(idx, r)); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("overlay: delete route %s: %w", r.Dst, err))
		}
	}
	for _, n := range remove.Neighbors {
		if err := o.h.NeighDel(neigh(idx, n)); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("overlay: delete neighbour %s: %w", n.IP, err))
		}
	}
	for _, f := range remove.FDB {
		if err := o.h.NeighDel(fdbEntry(idx, f)); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("overlay: delete fdb %s: %w", f.MAC, err))
		}
	}
	if err := ctx.Err(); err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, f := range add.FDB {
		if err := o.h.NeighAppend(fdbEntry(idx, f)); err != nil && !errors.Is(err, syscall.EEXIST) {
			errs = append(errs, fmt.Errorf("overlay: add fdb %s -> %s: %w", f.MAC, f.Dst, err))
		}
	}
	for _, n := range add.Neighbors {
		if err := o.h.NeighSet(neigh(idx, n)); err != nil {
			errs = append(errs, fmt.Errorf("overlay: add neighbour %s: %w", n.IP, err))
		}
	}
	for _, r := range add.Routes {
		if err := o.h.RouteReplace(o.route(idx, r)); err != nil {
			errs = append(errs, fmt.Errorf("overlay: add route %s via %s: %w", r.Dst, r.Via, err))
		}
	}
	return errors.Join(errs...)
}

// Remove deletes the device; its routes, ARP and FDB entries go with it.
func (o *Overlay) Remove(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l, err := o.h.LinkByName(o.cfg.Device)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("overlay: look up %s: %w", o.cfg.Device, err)
	}
	if err := o.h.LinkDel(l); err != nil {
		return fmt.Errorf("overlay: delete %s: %w", o.cfg.Device, err)
	}
	return nil
}

func (o *Overlay) route(idx int, r Route) *netlink.Route {
	return &netlink.Route{LinkIndex: idx, Dst: ipNet(r.Dst), Gw: r.Via.AsSlice(), Flags: int(netlink.FLAG_ONLINK),
		Protocol: syscall.RTPROT_STATIC}
}

func neigh(idx int, n Neighbor) *netlink.Neigh {
	mac, _ := net.ParseMAC(n.MAC)
	return &netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: n.IP.AsSlice(), HardwareAddr: mac}
}

func fdbEntry(idx int, f FDBEntry) *netlink.Neigh {
	mac, _ := net.ParseMAC(f.MAC)
	return &netlink.Neigh{LinkIndex: idx, Family: syscall.AF_BRIDGE, State: netlink.NUD_PERMANENT,
		Flags: netlink.NTF_SELF, IP: f.Dst.AsSlice(), HardwareAddr: mac}
}

// retryDump repeats a netlink dump that the kernel interrupted because the table changed.
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var (
		out []T
		err error
	)
	for range 5 {
		out, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return out, err
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, syscall.ENODEV)
}

func isGone(err error) bool { return errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT) }

func toPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

package tenant

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/strata-cloud/strata/internal/network/bridge"
)

// Segments programs a node's tenant segments through one netlink handle, which fixes the network
// namespace it works in. It touches only devices named by BridgeName and VXLANName.
type Segments struct {
	h      *netlink.Handle
	nodeIP netip.Addr
	inNS   func(func() error) error
}

// NewSegments returns Segments working through h (the caller keeps it) with nodeIP as the VXLAN
// devices' source address. inNS runs a function with the calling thread in h's namespace, for
// the sysctls netlink cannot set; nil means the caller's namespace is h's.
func NewSegments(h *netlink.Handle, nodeIP netip.Addr, inNS func(func() error) error) (*Segments, error) {
	if h == nil {
		return nil, errors.New("tenant: nil netlink handle")
	}
	if !nodeIP.Is4() {
		return nil, fmt.Errorf("tenant: node IP %v is not IPv4", nodeIP)
	}
	if inNS == nil {
		inNS = func(f func() error) error { return f() }
	}
	return &Segments{h: h, nodeIP: nodeIP, inNS: inNS}, nil
}

// Sync makes the node's tenant devices match st: every segment's bridge and VXLAN device exist
// and flood to exactly st.Peers; devices of other VNIs are deleted, unless something besides
// the VXLAN device is still plugged into their bridge (a pod the API no longer accounts for):
// those are left until it is gone. Errors of one segment do not stop the others.
func (s *Segments) Sync(ctx context.Context, st State) error {
	var errs []error
	for _, seg := range st.Segments {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := s.Ensure(seg, st.Peers); err != nil {
			errs = append(errs, err)
		}
	}
	links, err := s.h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return errors.Join(append(errs, fmt.Errorf("tenant: list links: %w", err))...)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	inUse := map[int32]bool{}
	for _, l := range links {
		if l.Attrs().MasterIndex == 0 {
			continue
		}
		if _, _, own := ParseDeviceName(l.Attrs().Name); own {
			continue
		}
		for _, m := range links {
			if vni, isBridge, ok := ParseDeviceName(m.Attrs().Name); ok && isBridge && m.Attrs().Index == l.Attrs().MasterIndex {
				inUse[vni] = true
			}
		}
	}
	for _, name := range Stale(st, names) {
		if vni, _, _ := ParseDeviceName(name); inUse[vni] {
			continue
		}
		if err := bridge.DelLink(s.h, name); err != nil {
			errs = append(errs, fmt.Errorf("tenant: remove %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Ensure creates or repairs one segment: an address-less bridge without IPv6, the VXLAN device
// (VNI, VXLANPort, node IP as source, learning on, the segment's MTU) enslaved to it, and one
// all-zeros FDB entry per peer so broadcast and unknown unicast reach every other node.
func (s *Segments) Ensure(seg Segment, peers []netip.Addr) error {
	if !ValidVNI(seg.VNI) {
		return fmt.Errorf("tenant: invalid VNI %d", seg.VNI)
	}
	brName, vxName := BridgeName(seg.VNI), VXLANName(seg.VNI)
	br, err := bridge.EnsureL2(s.h, brName, seg.MTU)
	if err != nil {
		return fmt.Errorf("tenant: %w", err)
	}
	if err := s.inNS(func() error { return disableIPv6(brName) }); err != nil {
		return fmt.Errorf("tenant: %w", err)
	}
	vx, err := s.ensureVXLAN(seg)
	if err != nil {
		return err
	}
	if vx.Attrs().MasterIndex != br.Attrs().Index {
		if err := s.h.LinkSetMaster(vx, br); err != nil {
			return fmt.Errorf("tenant: enslave %s to %s: %w", vxName, brName, err)
		}
	}
	if err := s.h.LinkSetUp(vx); err != nil {
		return fmt.Errorf("tenant: set %s up: %w", vxName, err)
	}
	current, err := s.floodEntries(vx)
	if err != nil {
		return err
	}
	add, remove := DiffPeers(current, peers)
	var errs []error
	for _, a := range remove {
		if err := s.h.NeighDel(floodEntry(vx.Attrs().Index, a)); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("tenant: remove flood entry %s from %s: %w", a, vxName, err))
		}
	}
	for _, a := range add {
		if err := s.h.NeighAppend(floodEntry(vx.Attrs().Index, a)); err != nil && !errors.Is(err, syscall.EEXIST) {
			errs = append(errs, fmt.Errorf("tenant: flood entry %s on %s: %w", a, vxName, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Segments) ensureVXLAN(seg Segment) (netlink.Link, error) {
	name := VXLANName(seg.VNI)
	l, err := s.h.LinkByName(name)
	if err == nil {
		if vx, ok := l.(*netlink.Vxlan); !ok || !s.matches(vx, seg) {
			if err := s.h.LinkDel(l); err != nil {
				return nil, fmt.Errorf("tenant: replace %s: %w", name, err)
			}
			l = nil
		}
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("tenant: look up %s: %w", name, err)
	}
	if l == nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU = name, seg.MTU
		vx := &netlink.Vxlan{LinkAttrs: attrs, VxlanId: int(seg.VNI), SrcAddr: s.nodeIP.AsSlice(), Port: VXLANPort, Learning: true}
		if err := s.h.LinkAdd(vx); err != nil && !errors.Is(err, syscall.EEXIST) {
			return nil, fmt.Errorf("tenant: create %s: %w", name, err)
		}
		if l, err = s.h.LinkByName(name); err != nil {
			return nil, fmt.Errorf("tenant: look up %s: %w", name, err)
		}
		// no IPv6 link-local address: the device is a bridge port, never an endpoint
		if err := s.h.LinkSetIP6AddrGenMode(l, 1); err != nil && !errors.Is(err, syscall.EAFNOSUPPORT) {
			return nil, fmt.Errorf("tenant: %s without IPv6: %w", name, err)
		}
	}
	if l.Attrs().MTU != seg.MTU {
		if err := s.h.LinkSetMTU(l, seg.MTU); err != nil {
			return nil, fmt.Errorf("tenant: set MTU of %s: %w", name, err)
		}
	}
	return l, nil
}

func (s *Segments) matches(vx *netlink.Vxlan, seg Segment) bool {
	return vx.VxlanId == int(seg.VNI) && vx.Port == VXLANPort && vx.Learning && net.IP(s.nodeIP.AsSlice()).Equal(vx.SrcAddr)
}

// floodEntries reads the all-zeros FDB entries of a VXLAN device: the peers it floods to.
func (s *Segments) floodEntries(vx netlink.Link) ([]netip.Addr, error) {
	var (
		entries []netlink.Neigh
		err     error
	)
	for range 5 {
		if entries, err = s.h.NeighList(vx.Attrs().Index, syscall.AF_BRIDGE); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("tenant: fdb of %s: %w", vx.Attrs().Name, err)
	}
	var out []netip.Addr
	for _, n := range entries {
		dst, ok := netip.AddrFromSlice(n.IP)
		if ok && n.LinkIndex == vx.Attrs().Index && isZeroMAC(n.HardwareAddr) {
			out = append(out, dst.Unmap())
		}
	}
	return out, nil
}

func floodEntry(idx int, dst netip.Addr) *netlink.Neigh {
	return &netlink.Neigh{LinkIndex: idx, Family: syscall.AF_BRIDGE, State: netlink.NUD_PERMANENT,
		Flags: netlink.NTF_SELF, IP: dst.AsSlice(), HardwareAddr: make(net.HardwareAddr, 6)}
}

func isZeroMAC(m net.HardwareAddr) bool {
	if len(m) != 6 {
		return false
	}
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}

// disableIPv6 switches IPv6 off on a device of the calling thread's namespace; a kernel without
// IPv6 has nothing to switch off.
func disableIPv6(dev string) error {
	err := os.WriteFile("/proc/sys/net/ipv6/conf/"+dev+"/disable_ipv6", []byte("1"), 0o644)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disable IPv6 on %s: %w", dev, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, syscall.ENODEV)
}

func readSysctl(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

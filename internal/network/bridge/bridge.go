// Package bridge owns the node's pod bridge (e.g. strata0) and the host side of pod veth pairs:
// creating the bridge with its gateway address (or, for a tenant network's segment, without any
// address), and creating, enslaving and deleting veths. It
// works through a netlink handle so callers (the CNI plugin, the agent, tests) choose the network
// namespace.
package bridge

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
)

// HostVethName returns the host-side veth name of an attachment: stable for (containerID,
// ifName), at most 15 bytes, and recognisable by its "stv" prefix.
func HostVethName(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + ifName))
	return "stv" + hex.EncodeToString(sum[:])[:11]
}

// Ensure makes sure bridge name exists, carries gateway (address and prefix length of the pod
// subnet, e.g. 10.42.3.1/24) and is up. Safe to race with other processes doing the same.
func Ensure(h *netlink.Handle, name string, gateway netip.Prefix, mtu int) (*netlink.Bridge, error) {
	br, err := ensureLink(h, name, mtu)
	if err != nil {
		return nil, err
	}
	addr := &netlink.Addr{IPNet: prefixToIPNet(gateway)}
	if err := h.AddrAdd(br, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
		return nil, fmt.Errorf("add %s to bridge %s: %w", gateway, name, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("set bridge %s up: %w", name, err)
	}
	return br, nil
}

// EnsureL2 makes sure bridge name exists and is up without any address: a tenant network's
// segment, which the node must never route into. Addresses found on it are removed, and IPv6
// link-local addressing is switched off before the bridge first goes up. Safe to race with other
// processes doing the same.
func EnsureL2(h *netlink.Handle, name string, mtu int) (*netlink.Bridge, error) {
	br, err := ensureLink(h, name, mtu)
	if err != nil {
		return nil, err
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		// the mode only stops new link-local addresses; it must be set while the link is down
		if err := h.LinkSetIP6AddrGenMode(br, addrGenModeNone); err != nil && !errors.Is(err, syscall.EAFNOSUPPORT) {
			return nil, fmt.Errorf("no IPv6 link-local address on bridge %s: %w", name, err)
		}
	}
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		addrs, err := h.AddrList(br, family)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("addresses of bridge %s: %w", name, err)
		}
		for _, a := range addrs {
			if err := h.AddrDel(br, &a); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
				return nil, fmt.Errorf("remove %s from bridge %s: %w", a.IPNet, name, err)
			}
		}
	}
	if mtu > 0 && br.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(br, mtu); err != nil {
			return nil, fmt.Errorf("set MTU of bridge %s: %w", name, err)
		}
	}
	if err := h.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("set bridge %s up: %w", name, err)
	}
	return br, nil
}

// addrGenModeNone is IN6_ADDR_GEN_MODE_NONE: the kernel makes no IPv6 link-local address.
const addrGenModeNone = 1

func ensureLink(h *netlink.Handle, name string, mtu int) (*netlink.Bridge, error) {
	for range 3 {
		l, err := h.LinkByName(name)
		if err == nil {
			br, ok := l.(*netlink.Bridge)
			if !ok {
				return nil, fmt.Errorf("link %s exists and is a %s, not a bridge", name, l.Type())
			}
			return br, nil
		}
		if !isNotFound(err) {
			return nil, fmt.Errorf("look up bridge %s: %w", name, err)
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		if mtu > 0 {
			attrs.MTU = mtu
		}
		// The bridge's MAC would otherwise follow its lowest-numbered port and change as pods
		// come and go, breaking the pods' ARP entries for the gateway.
		attrs.HardwareAddr = stableMAC(name)
		err = h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
		if err != nil && !errors.Is(err, syscall.EEXIST) {
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
	}
	return nil, fmt.Errorf("bridge %s keeps disappearing", name)
}

// Veth describes a pod veth pair to create.
type Veth struct {
	HostName     string           // host side, attached to the bridge
	PeerName     string           // container side, created directly in PeerNS
	PeerNS       int              // fd of the container network namespace
	PeerMAC      net.HardwareAddr // optional
	MTU          int
	Hairpin      bool
	BridgeMaster *netlink.Bridge
}

// AddVeth creates the pair, attaches the host side to the bridge (with hairpin if asked) and sets
// it up. A leftover host link with the same name, from an attempt that died half-way, is removed
// first. On error nothing is left behind.
func AddVeth(h *netlink.Handle, v Veth) (netlink.Link, error) {
	if err := DelLink(h, v.HostName); err != nil {
		return nil, err
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = v.HostName
	if v.MTU > 0 {
		attrs.MTU = v.MTU
	}
	veth := &netlink.Veth{
		LinkAttrs:        attrs,
		PeerName:         v.PeerName,
		PeerNamespace:    netlink.NsFd(v.PeerNS),
		PeerHardwareAddr: v.PeerMAC,
	}
	if v.MTU > 0 {
		veth.PeerMTU = uint32(v.MTU)
	}
	if err := h.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s/%s: %w", v.HostName, v.PeerName, err)
	}
	host, err := h.LinkByName(v.HostName)
	if err == nil {
		err = attach(h, host, v)
	}
	if err != nil {
		_ = DelLink(h, v.HostName)
		return nil, err
	}
	return host, nil
}

func attach(h *netlink.Handle, host netlink.Link, v Veth) error {
	if err := h.LinkSetMaster(host, v.BridgeMaster); err != nil {
		return fmt.Errorf("attach %s to %s: %w", v.HostName, v.BridgeMaster.Name, err)
	}
	if err := h.LinkSetHairpin(host, v.Hairpin); err != nil {
		return fmt.Errorf("set hairpin on %s: %w", v.HostName, err)
	}
	if err := h.LinkSetUp(host); err != nil {
		return fmt.Errorf("set %s up: %w", v.HostName, err)
	}
	return nil
}

// DelLink deletes link name if it exists; deleting one end of a veth deletes both.
func DelLink(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if err := h.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENOENT)
}

// stableMAC derives a locally administered unicast MAC from a name.
func stableMAC(name string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("strata-bridge/" + name))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = (mac[0] | 0x02) &^ 0x01
	return mac
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

package dns

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
)

// LocalDevice is the link that carries the cluster DNS address on each node. It is a bridge
// without ports because the nodes lack the dummy module; a portless bridge that is up still
// makes its addresses local, which is all the server needs to bind them.
const LocalDevice = "strata-dns"

// EnsureLocalAddress makes ip (the cluster DNS service IP) a local /32 (or /128) address of the
// node, on LocalDevice in the caller's network namespace, creating the device if needed. It is
// idempotent and safe to race with itself.
func EnsureLocalAddress(ip net.IP) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("dns: netlink handle: %w", err)
	}
	defer h.Close()
	return ensureLocalAddress(h, ip)
}

func ensureLocalAddress(h *netlink.Handle, ip net.IP) error {
	bits := 128
	if v4 := ip.To4(); v4 != nil {
		ip, bits = v4, 32
	} else if ip.To16() == nil {
		return fmt.Errorf("dns: invalid local address %v", ip)
	}
	link, err := h.LinkByName(LocalDevice)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		la := netlink.NewLinkAttrs()
		la.Name = LocalDevice
		err = h.LinkAdd(&netlink.Bridge{LinkAttrs: la})
		if err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("dns: create %s: %w", LocalDevice, err)
		}
		link, err = h.LinkByName(LocalDevice)
	}
	if err != nil {
		return fmt.Errorf("dns: find %s: %w", LocalDevice, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}}
	if bits == 128 {
		// A portless bridge never completes duplicate address detection; without this the
		// address would stay tentative and unbindable.
		addr.Flags = syscall.IFA_F_NODAD
	}
	if err := h.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("dns: add %s to %s: %w", addr.IPNet, LocalDevice, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("dns: set %s up: %w", LocalDevice, err)
	}
	return nil
}

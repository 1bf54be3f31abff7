package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/strata-cloud/strata/internal/network/lb"
)

// DefaultNetNSDir is where router namespaces are bind-mounted, so that
// `ip netns exec qrouter-…` reaches them.
const DefaultNetNSDir = "/run/netns"

// Node realises routers on one node. It is not for concurrent use.
type Node struct {
	// Host is a netlink handle in the node's namespace, where the tenant
	// bridges and the external networks' interfaces are.
	Host *netlink.Handle
	// NodeIP finds an external network's interface when it names none.
	NodeIP netip.Addr
	// NetNSDir holds the routers' namespaces; DefaultNetNSDir when empty.
	NetNSDir string
	// Owner (the node's name) marks the namespaces this node made, as
	// the alias of their loopback: nodes that share a file system (test
	// nodes in network namespaces of one machine) leave each other's
	// routers alone.
	Owner  string
	Logger *slog.Logger

	// floating is what each namespace's floating IPs forwarded to when
	// last realised, so flows of a floating IP that moved or went are cut.
	floating map[string]map[netip.Addr]netip.Addr
	// applied is each namespace's ruleset as last installed; Forget
	// clears it so the next Ensure reinstalls (repairing outside edits).
	applied map[string]string
}

// Forget makes the next Ensure of every router reinstall its ruleset.
func (n *Node) Forget() { n.applied = nil }

func (n *Node) dir() string {
	if n.NetNSDir == "" {
		return DefaultNetNSDir
	}
	return n.NetNSDir
}

func (n *Node) log() *slog.Logger {
	if n.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return n.Logger
}

// Namespaces lists the router namespaces this node made.
func (n *Node) Namespaces() ([]string, error) {
	ents, err := os.ReadDir(n.dir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("router: list namespaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), NamespacePrefix) && n.owns(filepath.Join(n.dir(), e.Name())) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// owns reports whether path is a network namespace (mounted in this
// mount namespace) that this node made.
func (n *Node) owns(path string) bool {
	h, err := openNetNS(path)
	if err != nil {
		return false
	}
	defer h.Close()
	if n.Owner == "" {
		return true
	}
	rh, err := netlink.NewHandleAt(h)
	if err != nil {
		return false
	}
	defer rh.Close()
	lo, err := rh.LinkByName("lo")
	return err == nil && lo.Attrs().Alias == n.Owner
}

// openNetNS opens path when it is a network namespace, not a file left
// without its mount (a crash between creating and mounting it, or another
// mount namespace's).
func openNetNS(path string) (netns.NsHandle, error) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), err
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(h), &fs); err != nil || fs.Type != unix.NSFS_MAGIC {
		h.Close()
		return netns.None(), fmt.Errorf("%s is no network namespace", path)
	}
	return h, nil
}

// Ensure makes the router's namespace match st. Parts that fail (a tenant
// bridge not there yet) are named in the error after the rest is done.
func (n *Node) Ensure(ctx context.Context, st RouterState) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	nsh, created, err := n.openNS(st.Namespace)
	if err != nil {
		return err
	}
	defer nsh.Close()
	if created {
		delete(n.applied, st.Namespace)
		delete(n.floating, st.Namespace)
	}
	rh, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return fmt.Errorf("router %s: netlink in %s: %w", st.Router, st.Namespace, err)
	}
	defer rh.Close()
	if lo, err := rh.LinkByName("lo"); err == nil {
		if n.Owner != "" && lo.Attrs().Alias != n.Owner {
			if err := rh.LinkSetAlias(lo, n.Owner); err != nil {
				return fmt.Errorf("router %s: mark %s as this node's: %w", st.Router, st.Namespace, err)
			}
		}
		_ = rh.LinkSetUp(lo)
	}
	if err := inNS(nsh, enableForwarding); err != nil {
		return fmt.Errorf("router %s: %w", st.Router, err)
	}

	var errs []error
	want := map[string]bool{}
	for _, ifc := range st.Interfaces {
		want[ifc.Name] = true
		if err := n.ensureInterface(rh, nsh, ifc); err != nil {
			errs = append(errs, fmt.Errorf("router %s: subnet %s: %w", st.Router, ifc.Subnet, err))
		}
	}
	var ext string
	if st.External != nil {
		ext = st.External.Name
	}
	links, err := rh.LinkList()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("router %s: list links: %w", st.Router, err))...)
	}
	for _, l := range links {
		name := l.Attrs().Name
		stale := strings.HasPrefix(name, interfacePrefix) && !want[name] ||
			strings.HasPrefix(name, externalPrefix) && name != ext
		if stale {
			if err := rh.LinkDel(l); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("router %s: remove %s: %w", st.Router, name, err))
			}
		}
	}

	// Rules before addresses: a new floating IP is DNATed from its first
	// packet rather than answered by the router itself.
	rs := Rules(st)
	if text := rs.String(); n.applied[st.Namespace] != text {
		if err := applyRuleset(rs, nftables.WithNetNSFd(int(nsh))); err != nil {
			errs = append(errs, fmt.Errorf("router %s: %w", st.Router, err))
		} else {
			if n.applied == nil {
				n.applied = map[string]string{}
			}
			n.applied[st.Namespace] = text
		}
	}
	if st.External != nil {
		added, err := n.ensureExternal(rh, nsh, st.External, st.Floating)
		if err != nil {
			errs = append(errs, fmt.Errorf("router %s: external gateway: %w", st.Router, err))
		}
		if len(added) > 0 {
			name := st.External.Name
			err := inNS(nsh, func() error {
				iface, err := net.InterfaceByName(name)
				if err != nil {
					return err
				}
				return lb.AnnounceGratuitous(iface, added...)
			})
			if err != nil {
				n.log().Warn("gratuitous ARP", "router", st.Router, "addresses", added, "err", err)
			}
		}
	}
	if err := n.forgetMovedFlows(rh, st); err != nil {
		errs = append(errs, fmt.Errorf("router %s: %w", st.Router, err))
	}
	return errors.Join(errs...)
}

// forgetMovedFlows deletes the connection tracking entries of floating
// IPs that were removed or now forward elsewhere: established flows would
// otherwise keep their old translation for days.
func (n *Node) forgetMovedFlows(rh *netlink.Handle, st RouterState) error {
	cur := map[netip.Addr]netip.Addr{}
	for _, f := range st.Floating {
		cur[f.Floating] = f.Fixed
	}
	if n.floating == nil {
		n.floating = map[string]map[netip.Addr]netip.Addr{}
	}
	prev := n.floating[st.Namespace]
	n.floating[st.Namespace] = cur
	var errs []error
	for fl, fixed := range prev {
		if cur[fl] == fixed {
			continue
		}
		in, out := &netlink.ConntrackFilter{}, &netlink.ConntrackFilter{}
		if err := in.AddIP(netlink.ConntrackOrigDstIP, fl.AsSlice()); err != nil {
			return err
		}
		if err := out.AddIP(netlink.ConntrackReplyDstIP, fl.AsSlice()); err != nil {
			return err
		}
		if _, err := rh.ConntrackDeleteFilters(netlink.ConntrackTable, netlink.FAMILY_V4, in, out); err != nil {
			errs = append(errs, fmt.Errorf("forget flows of floating IP %s: %w", fl, err))
		}
	}
	return errors.Join(errs...)
}

// Delete removes a router's namespace and everything in it.
func (n *Node) Delete(ctx context.Context, namespace string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	delete(n.floating, namespace)
	delete(n.applied, namespace)
	path := filepath.Join(n.dir(), namespace)
	// Devices go first, so floating IPs stop answering even if some
	// process still holds the namespace open.
	if nsh, err := openNetNS(path); err == nil {
		if rh, err := netlink.NewHandleAt(nsh); err == nil {
			links, _ := rh.LinkList()
			for _, l := range links {
				if name := l.Attrs().Name; strings.HasPrefix(name, interfacePrefix) || strings.HasPrefix(name, externalPrefix) {
					_ = rh.LinkDel(l)
				}
			}
			rh.Close()
		}
		nsh.Close()
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("router: unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("router: remove %s: %w", path, err)
	}
	return nil
}

// openNS opens the named namespace, creating it (bind-mounted under the
// namespace directory) when it does not exist.
func (n *Node) openNS(name string) (h netns.NsHandle, created bool, err error) {
	path := filepath.Join(n.dir(), name)
	if h, err := openNetNS(path); err == nil {
		return h, false, nil
	}
	if err := os.MkdirAll(n.dir(), 0o755); err != nil {
		return netns.None(), false, fmt.Errorf("router: %w", err)
	}
	_ = os.Remove(path)
	errc := make(chan error, 1)
	go func() {
		// The thread that unshares never goes back: it ends with this
		// goroutine, still locked, so no other goroutine runs in the new
		// namespace.
		runtime.LockOSThread()
		errc <- createNS(path)
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return netns.None(), false, fmt.Errorf("router: create namespace %s: %w", name, err)
	}
	h, err = netns.GetFromPath(path)
	if err != nil {
		return netns.None(), false, fmt.Errorf("router: open namespace %s: %w", name, err)
	}
	return h, true, nil
}

func createNS(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	self := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
	if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount: %w", err)
	}
	return nil
}

// inNS runs fn on a thread inside h.
func inNS(h netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return // the thread ends locked
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

func enableForwarding() error {
	const p = "/proc/sys/net/ipv4/ip_forward"
	if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enable ip_forward: %w", err)
	}
	return nil
}

// ensureInterface wires one subnet: veth end in the namespace with the
// gateway address and MAC, the other end in the tenant bridge.
func (n *Node) ensureInterface(rh *netlink.Handle, nsh netns.NsHandle, ifc Interface) error {
	br, err := n.Host.LinkByName(ifc.Bridge)
	if err != nil {
		if isNotFound(err) {
			return fmt.Errorf("tenant bridge %s is not on this node yet", ifc.Bridge)
		}
		return fmt.Errorf("look up bridge %s: %w", ifc.Bridge, err)
	}
	in, err := rh.LinkByName(ifc.Name)
	if isNotFound(err) {
		// A host end whose peer is gone cannot be reused.
		if old, err := n.Host.LinkByName(ifc.Name); err == nil {
			_ = n.Host.LinkDel(old)
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU = ifc.Name, ifc.MTU
		veth := &netlink.Veth{LinkAttrs: attrs, PeerName: ifc.Name, PeerHardwareAddr: ifc.MAC, PeerNamespace: netlink.NsFd(int(nsh))}
		if err := n.Host.LinkAdd(veth); err != nil {
			return fmt.Errorf("create veth %s: %w", ifc.Name, err)
		}
		in, err = rh.LinkByName(ifc.Name)
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", ifc.Name, err)
	}
	host, err := n.Host.LinkByName(ifc.Name)
	if err != nil {
		return fmt.Errorf("host end of %s: %w", ifc.Name, err)
	}
	if host.Attrs().MTU != ifc.MTU {
		if err := n.Host.LinkSetMTU(host, ifc.MTU); err != nil {
			return fmt.Errorf("MTU of %s: %w", ifc.Name, err)
		}
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		if err := n.Host.LinkSetMasterByIndex(host, br.Attrs().Index); err != nil {
			return fmt.Errorf("plug %s into %s: %w", ifc.Name, ifc.Bridge, err)
		}
	}
	if err := n.Host.LinkSetUp(host); err != nil {
		return fmt.Errorf("up %s: %w", ifc.Name, err)
	}
	if err := ensureLink(rh, in, ifc.MAC, ifc.MTU); err != nil {
		return err
	}
	_, err = ensureAddrs(rh, in, []netip.Prefix{ifc.Address})
	return err
}

// ensureExternal wires the external gateway and returns the addresses it
// added (to announce).
func (n *Node) ensureExternal(rh *netlink.Handle, nsh netns.NsHandle, ext *External, floating []Floating) ([]netip.Addr, error) {
	parent, err := n.parent(ext.Parent)
	if err != nil {
		return nil, err
	}
	l, err := rh.LinkByName(ext.Name)
	if err == nil {
		if mv, ok := l.(*netlink.Macvlan); !ok || mv.ParentIndex != parent.Attrs().Index || mv.Mode != netlink.MACVLAN_MODE_BRIDGE {
			if err := rh.LinkDel(l); err != nil {
				return nil, fmt.Errorf("replace %s: %w", ext.Name, err)
			}
			err = syscall.ENODEV
		}
	}
	if isNotFound(err) {
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.ParentIndex, attrs.HardwareAddr = ext.Name, parent.Attrs().Index, ext.MAC
		attrs.Namespace = netlink.NsFd(int(nsh))
		if err := n.Host.LinkAdd(&netlink.Macvlan{LinkAttrs: attrs, Mode: netlink.MACVLAN_MODE_BRIDGE}); err != nil {
			return nil, fmt.Errorf("create macvlan %s on %s: %w", ext.Name, parent.Attrs().Name, err)
		}
		l, err = rh.LinkByName(ext.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", ext.Name, err)
	}
	if err := ensureLink(rh, l, ext.MAC, 0); err != nil {
		return nil, err
	}
	want := []netip.Prefix{ext.Address}
	for _, f := range floating {
		want = append(want, netip.PrefixFrom(f.Floating, 32))
	}
	added, err := ensureAddrs(rh, l, want)
	if err != nil {
		return added, err
	}
	return added, ensureDefaultRoute(rh, l, ext.Gateway)
}

// parent is the external network's host interface: the named one, or the
// one holding the node's IP.
func (n *Node) parent(name string) (netlink.Link, error) {
	if name != "" {
		l, err := n.Host.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("external interface %s: %w", name, err)
		}
		return l, nil
	}
	addrs, err := n.Host.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("node addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == n.NodeIP {
			return n.Host.LinkByIndex(a.LinkIndex)
		}
	}
	return nil, fmt.Errorf("no interface holds the node IP %s", n.NodeIP)
}

func ensureLink(h *netlink.Handle, l netlink.Link, mac net.HardwareAddr, mtu int) error {
	name := l.Attrs().Name
	if mac != nil && l.Attrs().HardwareAddr.String() != mac.String() {
		if err := h.LinkSetHardwareAddr(l, mac); err != nil {
			return fmt.Errorf("MAC of %s: %w", name, err)
		}
	}
	if mtu != 0 && l.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("MTU of %s: %w", name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("up %s: %w", name, err)
	}
	return nil
}

// ensureAddrs makes l's IPv4 addresses exactly want, returning those added.
func ensureAddrs(h *netlink.Handle, l netlink.Link, want []netip.Prefix) ([]netip.Addr, error) {
	have, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", l.Attrs().Name, err)
	}
	var errs []error
	present := map[netip.Prefix]bool{}
	for _, a := range have {
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		ones, _ := a.Mask.Size()
		p := netip.PrefixFrom(ip, ones)
		if slices.Contains(want, p) {
			present[p] = true
			continue
		}
		if err := h.AddrDel(l, &a); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("remove %s from %s: %w", p, l.Attrs().Name, err))
		}
	}
	var added []netip.Addr
	for _, p := range want {
		if present[p] {
			continue
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
		if err := h.AddrAdd(l, a); err != nil && !errors.Is(err, syscall.EEXIST) {
			errs = append(errs, fmt.Errorf("add %s to %s: %w", p, l.Attrs().Name, err))
			continue
		}
		added = append(added, p.Addr())
	}
	return added, errors.Join(errs...)
}

// ensureDefaultRoute points the namespace's default route at gw through
// l, or removes it when gw is invalid.
func ensureDefaultRoute(h *netlink.Handle, l netlink.Link, gw netip.Addr) error {
	if !gw.IsValid() {
		routes, err := h.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("routes: %w", err)
		}
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() && r.Gw != nil {
				_ = h.RouteDel(&r)
			}
		}
		return nil
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice(),
		Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, syscall.ENODEV)
}

package launcher

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/strata-cloud/strata/internal/network/cni"

	"github.com/strata-cloud/strata/internal/vm/dhcp"
	"github.com/strata-cloud/strata/internal/vm/metadata"
)

// The pod network binding: the launcher moves the pod interface's address
// to the guest. It makes a bridge in the pod's network namespace, plugs
// the pod interface and the VM's tap into it, takes the address off the
// pod interface and answers the guest's DHCP with it, so the guest owns
// the pod IP: Services, NetworkPolicies and other pods reach the VM as
// they reach any pod. The guest also takes the pod interface's MAC (the
// one the node's neighbour tables know; the CNI plugin sets it from the
// pod's requested MAC) and the pod interface gets a random one.
//
// On a tenant network (the pod's eth0 on a Port) the same holds: the
// gateway is whatever the pod's default route names (a router's, or none
// for an isolated subnet), the subnet's host routes on eth0 go to the
// guest as classless static routes, and the subnet's DNS servers, which
// the CNI plugin leaves in eth0's alias (cni.DNSAlias), replace the
// cluster DNS of the pod's resolv.conf, unreachable from a tenant network.

// DHCPServerAddr is the bridge's link-local address, the DHCP server
// identifier the guest sees (the guest never needs to reach it again: its
// lease does not expire).
var DHCPServerAddr = netip.MustParseAddr("169.254.75.10")

// podNetFile saves a binding's lease in the run directory, so a launcher
// started again in the same pod finds the address it already moved.
const podNetFile = "podnet-%s.json"

// savedLease is podNetFile's content.
type savedLease struct {
	MAC     string       `json:"mac"`
	Addr    netip.Prefix `json:"addr"`
	Gateway netip.Addr   `json:"gateway"`
	MTU     int          `json:"mtu"`
	// Routes and DNS are a tenant subnet's host routes and DNS servers.
	Routes []dhcp.Route `json:"routes,omitempty"`
	DNS    []netip.Addr `json:"dns,omitempty"`
}

// bindPodInterface plugs the pod interface podIf and a new tap into a new
// bridge and returns the lease the guest must get, its MAC being mac when
// given, else the pod interface's.
func bindPodInterface(runDir, podIf, tap string, mac net.HardwareAddr) (dhcp.Lease, string, error) {
	brName := "br-" + podIf
	if len(brName) > 15 {
		brName = brName[:15]
	}
	link, err := netlink.LinkByName(podIf)
	if err != nil {
		return dhcp.Lease{}, "", fmt.Errorf("pod interface %s: %w", podIf, err)
	}
	saveTo := filepath.Join(runDir, fmt.Sprintf(podNetFile, podIf))
	var saved savedLease
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return dhcp.Lease{}, "", err
	}
	var global []netlink.Addr
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() {
			global = append(global, a)
		}
	}
	if len(global) == 0 {
		b, err := os.ReadFile(saveTo)
		if err != nil {
			return dhcp.Lease{}, "", fmt.Errorf("pod interface %s has no IPv4 address to give the VM", podIf)
		}
		if err := json.Unmarshal(b, &saved); err != nil {
			return dhcp.Lease{}, "", err
		}
	} else {
		a := global[0]
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		ones, _ := a.Mask.Size()
		saved.Addr = netip.PrefixFrom(ip, ones)
		saved.MTU = link.Attrs().MTU
		saved.MAC = link.Attrs().HardwareAddr.String()
		routes, err := netlink.RouteList(link, netlink.FAMILY_V4)
		if err != nil {
			return dhcp.Lease{}, "", err
		}
		saved.Gateway, saved.Routes = podRoutes(routes)
		saved.DNS, _ = cni.ParseDNSAlias(link.Attrs().Alias)
		b, _ := json.Marshal(saved)
		if err := os.WriteFile(saveTo, b, 0o644); err != nil {
			return dhcp.Lease{}, "", err
		}
	}
	if mac != nil {
		saved.MAC = mac.String()
	}
	guestMAC, err := net.ParseMAC(saved.MAC)
	if err != nil {
		return dhcp.Lease{}, "", err
	}

	// The pod interface's own MAC goes to the guest; it takes another, or
	// the bridge would keep frames for the guest to itself.
	if link.Attrs().HardwareAddr.String() == guestMAC.String() {
		if err := netlink.LinkSetDown(link); err != nil {
			return dhcp.Lease{}, "", err
		}
		if err := netlink.LinkSetHardwareAddr(link, randomMAC()); err != nil {
			return dhcp.Lease{}, "", fmt.Errorf("new MAC for %s: %w", podIf, err)
		}
	}
	for _, a := range global {
		if err := netlink.AddrDel(link, &a); err != nil {
			return dhcp.Lease{}, "", fmt.Errorf("take %s off %s: %w", a.IPNet, podIf, err)
		}
	}
	br, err := netlink.LinkByName(brName)
	if err != nil {
		br = &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: brName, MTU: saved.MTU}}
		if err := netlink.LinkAdd(br); err != nil {
			return dhcp.Lease{}, "", fmt.Errorf("bridge %s: %w", brName, err)
		}
	}
	if _, err := netlink.LinkByName(tap); err != nil {
		t := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: tap, MTU: saved.MTU}, Mode: netlink.TUNTAP_MODE_TAP,
			Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_ONE_QUEUE}
		if err := netlink.LinkAdd(t); err != nil {
			return dhcp.Lease{}, "", fmt.Errorf("tap %s: %w (does the pod have %s?)", tap, err, "/dev/net/tun")
		}
	}
	tapLink, err := netlink.LinkByName(tap)
	if err != nil {
		return dhcp.Lease{}, "", err
	}
	for _, l := range []netlink.Link{link, tapLink} {
		if err := netlink.LinkSetMaster(l, br); err != nil {
			return dhcp.Lease{}, "", fmt.Errorf("plug %s into %s: %w", l.Attrs().Name, brName, err)
		}
	}
	// The node's bridge sends the guest's broadcasts back up the pod's
	// veth (hairpin mode, for pods that reach themselves through a
	// Service): learning from them would move the guest's MAC to the pod
	// interface's port and cut the guest off. Learn only on the tap.
	if err := netlink.LinkSetLearning(link, false); err != nil {
		return dhcp.Lease{}, "", fmt.Errorf("no learning on %s: %w", podIf, err)
	}
	// The DHCP server's address, and the metadata service's (metadata.go).
	for _, a := range []netip.Addr{DHCPServerAddr, metadata.Addr} {
		if err := netlink.AddrReplace(br, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
			return dhcp.Lease{}, "", fmt.Errorf("address %s on %s: %w", a, brName, err)
		}
	}
	for _, l := range []netlink.Link{br, link, tapLink} {
		if err := netlink.LinkSetUp(l); err != nil {
			return dhcp.Lease{}, "", fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
		}
	}
	lease := dhcp.Lease{MAC: guestMAC, Addr: saved.Addr, Gateway: saved.Gateway, MTU: saved.MTU, Routes: saved.Routes}
	if len(saved.DNS) > 0 {
		lease.DNS = saved.DNS // the cluster's search domains mean nothing to these servers
	} else {
		lease.DNS, lease.Search = readResolvConf("/etc/resolv.conf")
	}
	return lease, brName, nil
}

// podRoutes picks, from the pod interface's IPv4 routes, the default
// route's gateway and the routes via other gateways (a tenant subnet's
// host routes), which the guest gets too.
func podRoutes(routes []netlink.Route) (gw netip.Addr, extra []dhcp.Route) {
	for _, r := range routes {
		via, ok := netip.AddrFromSlice(r.Gw.To4())
		if !ok {
			continue // the subnet's own route, on the link
		}
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			gw = via
			continue
		}
		dst, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if !ok {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		extra = append(extra, dhcp.Route{Dst: netip.PrefixFrom(dst, ones), Via: via})
	}
	return gw, extra
}

// randomMAC is a locally administered unicast MAC.
func randomMAC() net.HardwareAddr {
	m := make(net.HardwareAddr, 6)
	rand.Read(m)
	m[0] = m[0]&0xfe | 0x02
	return m
}

// readResolvConf returns the name servers and search domains of a
// resolv.conf (the pod's, which the kubelet wrote for cluster DNS).
func readResolvConf(path string) (servers []netip.Addr, search []string) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(fields[1]); err == nil && a.Is4() {
				servers = append(servers, a)
			}
		case "search":
			search = fields[1:]
		}
	}
	return servers, search
}

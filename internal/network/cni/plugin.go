package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/strata-cloud/strata/internal/network/bridge"
	"github.com/strata-cloud/strata/internal/network/ipam"
)

// gcGrace protects fresh allocations from a concurrent GC.
const gcGrace = time.Minute

// supportedVersions are the CNI spec versions the plugin speaks.
var supportedVersions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// Plugin runs CNI commands. The zero value attaches every pod to the pod network in the calling
// process's network namespace.
type Plugin struct {
	// Attachments decides network and port on ADD; nil means PodNetwork.
	Attachments Attachment
	// HostNS, when set, is the namespace holding the bridge (tests use it to act as a "node");
	// nil means the calling thread's namespace, which is right for the exec'd plugin.
	HostNS ns.NetNS
}

// Main runs the CNI plugin with the default Plugin. See Plugin.Main.
func Main(ctx context.Context, stdin io.Reader, getenv func(string) string, stdout, stderr io.Writer) error {
	return (&Plugin{}).Main(ctx, stdin, getenv, stdout, stderr)
}

// Main implements the CNI protocol for one invocation: the command and its arguments come from
// getenv (CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS; pass os.Getenv), the
// network config from stdin, the result goes to stdout. On failure the CNI error object has
// already been written to stdout and the returned error (a *types.Error) only tells the caller
// to exit non-zero. Without CNI_COMMAND it prints what it is to stderr and succeeds.
func (p *Plugin) Main(ctx context.Context, stdin io.Reader, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := getenv("CNI_COMMAND")
	if cmd == "" {
		fmt.Fprintf(stderr, "Strata CNI plugin (%s); CNI protocol versions supported: %s\n",
			PluginType, strings.Join(supportedVersions.SupportedVersions(), ", "))
		return nil
	}
	var out bytes.Buffer
	err := p.dispatch(ctx, cmd, stdin, getenv, &out)
	if err != nil {
		var te *types.Error
		if !errors.As(err, &te) {
			te = types.NewError(types.ErrInternal, err.Error(), "")
		}
		b, _ := json.MarshalIndent(te, "", "    ")
		_, _ = stdout.Write(append(b, '\n'))
		return te
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

func (p *Plugin) dispatch(ctx context.Context, cmd string, stdin io.Reader, getenv func(string) string, out io.Writer) error {
	if cmd == "VERSION" {
		return supportedVersions.Encode(out)
	}
	args := &skel.CmdArgs{
		ContainerID: getenv("CNI_CONTAINERID"),
		Netns:       getenv("CNI_NETNS"),
		IfName:      getenv("CNI_IFNAME"),
		Args:        getenv("CNI_ARGS"),
		Path:        getenv("CNI_PATH"),
	}
	required := map[string][]string{
		"ADD":   {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"},
		"CHECK": {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"},
		"DEL":   {"CNI_CONTAINERID", "CNI_IFNAME"},
	}
	minVersion := map[string]string{"ADD": "0.1.0", "DEL": "0.1.0", "CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}
	if _, ok := minVersion[cmd]; !ok {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "unknown CNI_COMMAND: "+cmd, "")
	}
	var missing []string
	for _, name := range required[cmd] {
		if getenv(name) == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("required env variables [%s] missing", strings.Join(missing, ",")), "")
	}
	var err error
	if args.StdinData, err = io.ReadAll(stdin); err != nil {
		return types.NewError(types.ErrIOFailure, "read stdin", err.Error())
	}
	confVersion, err := (&version.ConfigDecoder{}).Decode(args.StdinData)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, err.Error(), "")
	}
	if verr := (&version.Reconciler{}).Check(confVersion, supportedVersions); verr != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, "incompatible CNI versions", verr.Details())
	}
	if ok, err := version.GreaterThanOrEqualTo(confVersion, minVersion[cmd]); err != nil {
		return types.NewError(types.ErrDecodingFailure, err.Error(), "")
	} else if !ok {
		return types.NewError(types.ErrIncompatibleCNIVersion, fmt.Sprintf("config version %s does not allow %s", confVersion, cmd), "")
	}
	nc, conf, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	run := func() error {
		switch cmd {
		case "ADD":
			res, err := p.add(ctx, args, conf)
			if err != nil {
				return err
			}
			return printResult(res, confVersion, out)
		case "DEL":
			return p.del(ctx, args, conf)
		case "CHECK":
			return p.check(ctx, args, conf)
		case "GC":
			return p.gc(ctx, nc, conf)
		default: // STATUS: ready whenever the state dir is usable
			if err := os.MkdirAll(conf.IPAMDir, 0o700); err != nil {
				return types.NewError(types.ErrPluginNotAvailable, "ipam state dir unusable", err.Error())
			}
			return nil
		}
	}
	if p.HostNS != nil {
		return p.HostNS.Do(func(ns.NetNS) error { return run() })
	}
	return run()
}

func printResult(res *current.Result, confVersion string, out io.Writer) error {
	res.CNIVersion = current.ImplementedSpecVersion
	versioned, err := res.GetAsVersion(confVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, "convert result", err.Error())
	}
	return versioned.PrintTo(out)
}

func (p *Plugin) attachments(conf Config) Attachment {
	switch {
	case p.Attachments != nil:
		return p.Attachments
	case conf.TenantDir != "":
		return TenantNetworks{Dir: conf.TenantDir}
	}
	return PodNetwork{}
}

// add wires the interface. Every step after allocating an address is undone if a later one
// fails: the address is released and the veth deleted, so a failed sandbox leaks nothing.
func (p *Plugin) add(ctx context.Context, args *skel.CmdArgs, conf Config) (_ *current.Result, retErr error) {
	pod, err := ParseCNIArgs(args.Args)
	if err != nil {
		return nil, err
	}
	pod.ContainerID, pod.IfName, pod.Annotations = args.ContainerID, args.IfName, conf.Annotations
	att, err := p.attachments(conf).Resolve(ctx, pod, conf.podNetwork())
	if err != nil {
		return nil, fmt.Errorf("resolve network of %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if att, err = att.normalize(); err != nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "invalid network attachment", err.Error())
	}
	want, err := requested(&att, conf.Annotations)
	if err != nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "invalid pod annotation", err.Error())
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()

	var br *netlink.Bridge
	if att.Tenant {
		// the agent made the segment before it wrote the attachment; this only checks it
		br, err = bridge.EnsureL2(h, att.Bridge, att.MTU)
	} else {
		br, err = bridge.Ensure(h, att.Bridge, netip.PrefixFrom(att.Gateway, att.Subnet.Bits()), att.MTU)
	}
	if err != nil {
		return nil, err
	}
	netNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return nil, types.NewError(types.ErrInvalidNetNS, "open netns "+args.Netns, err.Error())
	}
	defer netNS.Close()

	key := ipam.Key{ContainerID: args.ContainerID, IfName: args.IfName}
	ip := att.IP
	bits := att.Subnet.Bits()
	if want.IsValid() && !att.Subnet.Contains(want) && conf.ClusterCIDR.Contains(want) {
		ip, bits = want, 32 // another node's address, which it keeps reserved
	}
	if att.Tenant {
		// The Port owns the address; the record only protects the veth from a racing GC.
		if err := writeTenantRecord(conf, key); err != nil {
			return nil, err
		}
		defer func() {
			if retErr != nil {
				retErr = errors.Join(retErr, removeTenantRecord(conf, key))
			}
		}()
	} else if !ip.IsValid() {
		store, err := ipam.Open(ipamDir(conf, att.Network), att.Subnet)
		if err != nil {
			return nil, err
		}
		var alloc ipam.Allocation
		if want.IsValid() && att.Subnet.Contains(want) {
			alloc, err = store.AllocateAddr(ctx, key, want)
			if errors.Is(err, ipam.ErrUnavailable) {
				return nil, types.NewError(types.ErrTryAgainLater, "requested pod address "+want.String()+" is taken", err.Error())
			}
		} else {
			alloc, err = store.Allocate(ctx, key)
		}
		if errors.Is(err, ipam.ErrExhausted) {
			return nil, types.NewError(types.ErrTryAgainLater, "no free pod address", err.Error())
		}
		if err != nil {
			return nil, err
		}
		defer func() {
			if retErr != nil {
				// a fresh context: the caller's may be what failed us
				if err := store.Release(context.WithoutCancel(ctx), key); err != nil {
					retErr = errors.Join(retErr, fmt.Errorf("release %s after failure: %w", alloc.IP, err))
				}
			}
		}()
		ip = alloc.IP
	}

	hostName := bridge.HostVethName(args.ContainerID, args.IfName)
	host, err := bridge.AddVeth(h, bridge.Veth{
		HostName: hostName, PeerName: args.IfName, PeerNS: int(netNS.Fd()), PeerMAC: att.MAC,
		MTU: att.MTU, Hairpin: att.Hairpin, BridgeMaster: br,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			if err := bridge.DelLink(h, hostName); err != nil {
				retErr = errors.Join(retErr, err)
			}
		}
	}()

	addr := netip.PrefixFrom(ip, bits)
	var podMAC net.HardwareAddr
	err = netNS.Do(func(ns.NetNS) error {
		var err error
		podMAC, err = configurePodInterface(args.IfName, addr, att)
		return err
	})
	if err != nil {
		return nil, err
	}
	return buildResult(br, host, args.IfName, podMAC, args.Netns, addr, att), nil
}

// requested reads the pod's requested address and MAC (AnnotationIP, AnnotationMAC) for the pod
// network; the MAC goes into att, the address is returned for the IPAM.
func requested(att *NetworkAttachment, ann map[string]string) (netip.Addr, error) {
	var want netip.Addr
	if v, ok := ann[AnnotationIP]; ok && !att.IP.IsValid() {
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() || a == att.Gateway {
			return want, fmt.Errorf("%s: %q is not a usable IPv4 address", AnnotationIP, v)
		}
		want = a
	}
	if v, ok := ann[AnnotationMAC]; ok && att.MAC == nil {
		mac, err := net.ParseMAC(v)
		if err != nil || len(mac) != 6 || mac[0]&1 != 0 {
			return want, fmt.Errorf("%s: %q is not a unicast Ethernet address", AnnotationMAC, v)
		}
		att.MAC = mac
	}
	return want, nil
}

// configurePodInterface runs inside the pod's namespace.
func configurePodInterface(ifName string, addr netip.Prefix, att NetworkAttachment) (net.HardwareAddr, error) {
	gw := att.Gateway
	link, err := netlink.LinkByName(ifName)
	if err != nil {
		return nil, fmt.Errorf("pod interface %s: %w", ifName, err)
	}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
		return nil, fmt.Errorf("address %s on %s: %w", addr, ifName, err)
	}
	if len(att.DNS) > 0 {
		// The launcher of a VM reads them here to hand them to the guest by DHCP.
		if err := netlink.LinkSetAlias(link, DNSAlias(att.DNS)); err != nil {
			return nil, fmt.Errorf("alias of %s: %w", ifName, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("set %s up: %w", ifName, err)
	}
	if gw.IsValid() {
		// On-link: a /32 (an address from another node) has no subnet holding the gateway.
		def := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: defaultRoute(), Gw: gw.AsSlice(), Flags: int(netlink.FLAG_ONLINK)}
		if err := netlink.RouteReplace(def); err != nil {
			return nil, fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	for _, r := range att.Routes {
		rt := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(r.Dst.Masked())}
		if r.Via.IsValid() {
			rt.Gw = r.Via.AsSlice()
		} else {
			rt.Scope = netlink.SCOPE_LINK
		}
		if err := netlink.RouteReplace(rt); err != nil {
			return nil, fmt.Errorf("route %s via %s: %w", r.Dst, r.Via, err)
		}
	}
	return link.Attrs().HardwareAddr, nil
}

// DNSAliasPrefix starts the alias of a pod interface whose attachment names DNS servers.
const DNSAliasPrefix = "strata-dns="

// DNSAlias is the pod interface's alias that carries DNS servers: DNSAliasPrefix and the
// addresses, comma-separated.
func DNSAlias(servers []netip.Addr) string {
	list := make([]string, len(servers))
	for i, a := range servers {
		list[i] = a.String()
	}
	return DNSAliasPrefix + strings.Join(list, ",")
}

// ParseDNSAlias reads DNSAlias's servers back; ok is false for any other alias.
func ParseDNSAlias(alias string) (servers []netip.Addr, ok bool) {
	rest, ok := strings.CutPrefix(alias, DNSAliasPrefix)
	if !ok {
		return nil, false
	}
	for f := range strings.SplitSeq(rest, ",") {
		if a, err := netip.ParseAddr(f); err == nil {
			servers = append(servers, a)
		}
	}
	return servers, true
}

// buildResult is the CNI result of an attachment: bridge, host veth and pod interface (the
// address points at the last), plus the default route.
func buildResult(br *netlink.Bridge, host netlink.Link, ifName string, podMAC net.HardwareAddr,
	sandbox string, addr netip.Prefix, att NetworkAttachment) *current.Result {
	podIdx := 2
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: br.Attrs().Name, Mac: br.Attrs().HardwareAddr.String()},
			{Name: host.Attrs().Name, Mac: host.Attrs().HardwareAddr.String()},
			{Name: ifName, Mac: podMAC.String(), Mtu: att.MTU, Sandbox: sandbox},
		},
		IPs: []*current.IPConfig{{Interface: &podIdx, Address: *ipNet(addr)}},
	}
	if gw := att.Gateway; gw.IsValid() {
		res.IPs[0].Gateway = gw.AsSlice()
		res.Routes = append(res.Routes, &types.Route{Dst: *defaultRoute(), GW: gw.AsSlice()})
	}
	for _, r := range att.Routes {
		var via net.IP
		if r.Via.IsValid() {
			via = r.Via.AsSlice()
		}
		res.Routes = append(res.Routes, &types.Route{Dst: *ipNet(r.Dst.Masked()), GW: via})
	}
	for _, a := range att.DNS {
		res.DNS.Nameservers = append(res.DNS.Nameservers, a.String())
	}
	return res
}

// del is idempotent: a missing netns, veth or allocation is success. It needs neither the netns
// nor the API: the host veth name is derived from the key, and deleting it removes the pod end.
func (p *Plugin) del(ctx context.Context, args *skel.CmdArgs, conf Config) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	linkErr := bridge.DelLink(h, bridge.HostVethName(args.ContainerID, args.IfName))
	key := ipam.Key{ContainerID: args.ContainerID, IfName: args.IfName}
	relErr := removeTenantRecord(conf, key)
	for _, dir := range networkDirs(conf) {
		relErr = errors.Join(relErr, ipam.OpenExisting(dir).Release(ctx, key))
	}
	return errors.Join(linkErr, relErr)
}

// check verifies that what ADD reported is still in place.
func (p *Plugin) check(ctx context.Context, args *skel.CmdArgs, conf Config) error {
	pc := types.PluginConf{}
	if err := json.Unmarshal(args.StdinData, &pc); err != nil {
		return types.NewError(types.ErrDecodingFailure, "decode config", err.Error())
	}
	if err := version.ParsePrevResult(&pc); err != nil {
		return types.NewError(types.ErrDecodingFailure, "decode prevResult", err.Error())
	}
	if pc.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "CHECK without prevResult", "")
	}
	prev, err := current.NewResultFromResult(pc.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "convert prevResult", err.Error())
	}
	want, err := expectedFromResult(prev, args.IfName)
	if err != nil {
		return err
	}

	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	hostName := bridge.HostVethName(args.ContainerID, args.IfName)
	host, err := h.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("host veth %s: %w", hostName, err)
	}
	if want.bridge != "" {
		br, err := h.LinkByName(want.bridge)
		if err != nil {
			return fmt.Errorf("bridge %s: %w", want.bridge, err)
		}
		if host.Attrs().MasterIndex != br.Attrs().Index {
			return fmt.Errorf("host veth %s is not attached to %s", hostName, want.bridge)
		}
	}

	key := ipam.Key{ContainerID: args.ContainerID, IfName: args.IfName}
	found := false
	for _, dir := range networkDirs(conf) {
		a, ok, err := ipam.OpenExisting(dir).Get(ctx, key)
		if err != nil {
			return err
		}
		if ok {
			if a.IP != want.addr.Addr() {
				return fmt.Errorf("ipam holds %s for %s/%s, result says %s", a.IP, key.ContainerID, key.IfName, want.addr.Addr())
			}
			found = true
		}
	}
	if _, err := os.Stat(filepath.Join(tenantRecordDir(conf), hostName)); err == nil {
		found = true // a tenant attachment: the Port holds the address, whatever range it is in
	}
	if !found && conf.PodCIDR.Contains(want.addr.Addr()) {
		return fmt.Errorf("no ipam allocation for %s/%s", key.ContainerID, key.IfName)
	}

	netNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, "open netns "+args.Netns, err.Error())
	}
	defer netNS.Close()
	return netNS.Do(func(ns.NetNS) error { return checkPodInterface(args.IfName, want) })
}

type expected struct {
	bridge string
	addr   netip.Prefix
	gw     netip.Addr
}

// expectedFromResult picks what CHECK should find out of a previous result.
func expectedFromResult(r *current.Result, ifName string) (expected, error) {
	var e expected
	if len(r.Interfaces) > 0 {
		e.bridge = r.Interfaces[0].Name
	}
	for _, ipc := range r.IPs {
		if ipc.Interface == nil || *ipc.Interface >= len(r.Interfaces) || r.Interfaces[*ipc.Interface].Name != ifName {
			continue
		}
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			continue
		}
		ones, _ := ipc.Address.Mask.Size()
		e.addr = netip.PrefixFrom(a.Unmap(), ones)
		if g, ok := netip.AddrFromSlice(ipc.Gateway); ok {
			e.gw = g.Unmap()
		}
		return e, nil
	}
	return e, types.NewError(types.ErrInvalidNetworkConfig, "prevResult has no address on "+ifName, "")
}

func checkPodInterface(ifName string, want expected) error {
	link, err := netlink.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("pod interface %s: %w", ifName, err)
	}
	if link.Attrs().OperState == netlink.OperDown {
		return fmt.Errorf("pod interface %s is down", ifName)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("addresses of %s: %w", ifName, err)
	}
	hasAddr := false
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if ip, ok := netip.AddrFromSlice(a.IP); ok && netip.PrefixFrom(ip.Unmap(), ones) == want.addr {
			hasAddr = true
		}
	}
	if !hasAddr {
		return fmt.Errorf("pod interface %s lacks %s", ifName, want.addr)
	}
	if !want.gw.IsValid() {
		return nil
	}
	routes, err := netlink.RouteList(link, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("routes of %s: %w", ifName, err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && net.IP(want.gw.AsSlice()).Equal(r.Gw) {
			return nil
		}
	}
	return fmt.Errorf("pod interface %s has no default route via %s", ifName, want.gw)
}

// gc releases addresses and host veths of attachments the runtime no longer knows (CNI 1.1 GC).
func (p *Plugin) gc(ctx context.Context, nc NetConf, conf Config) error {
	valid := map[ipam.Key]bool{}
	keepVeths := map[string]bool{}
	for _, a := range nc.ValidAttachments {
		valid[ipam.Key{ContainerID: a.ContainerID, IfName: a.IfName}] = true
		keepVeths[bridge.HostVethName(a.ContainerID, a.IfName)] = true
	}
	errs := gcTenantRecords(conf, valid, keepVeths)
	for _, dir := range networkDirs(conf) {
		s := ipam.OpenExisting(dir)
		all, err := s.List(ctx)
		if err != nil {
			errs = errors.Join(errs, err)
			continue
		}
		for _, a := range all {
			// an ADD racing with GC may not be in the runtime's list yet: keep it and its veth
			if !valid[a.Key] && time.Since(a.Created) > gcGrace {
				errs = errors.Join(errs, s.Release(ctx, a.Key))
			} else {
				keepVeths[bridge.HostVethName(a.ContainerID, a.IfName)] = true
			}
		}
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return errors.Join(errs, fmt.Errorf("netlink: %w", err))
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return errors.Join(errs, fmt.Errorf("list links: %w", err))
	}
	for _, l := range links {
		name := l.Attrs().Name
		if _, isVeth := l.(*netlink.Veth); isVeth && strings.HasPrefix(name, "stv") && len(name) == 14 && !keepVeths[name] {
			errs = errors.Join(errs, bridge.DelLink(h, name))
		}
	}
	return errs
}

func ipamDir(conf Config, network string) string { return filepath.Join(conf.IPAMDir, network) }

// networkDirs lists the per-network IPAM directories (DEL and GC do not know the network).
func networkDirs(conf Config) []string {
	entries, err := os.ReadDir(conf.IPAMDir)
	if err != nil {
		return nil
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			dirs = append(dirs, filepath.Join(conf.IPAMDir, e.Name()))
		}
	}
	return dirs
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func defaultRoute() *net.IPNet { return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)} }

// tenantRecordDir holds one file per tenant attachment on the node, named after its host veth:
// tenant attachments use no IPAM store, and GC must still tell a fresh ADD from a leftover.
func tenantRecordDir(conf Config) string { return filepath.Join(conf.IPAMDir, ".tenant") }

func writeTenantRecord(conf Config, key ipam.Key) error {
	dir := tenantRecordDir(conf)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tenant record dir: %w", err)
	}
	b, _ := json.Marshal(key)
	if err := os.WriteFile(filepath.Join(dir, bridge.HostVethName(key.ContainerID, key.IfName)), b, 0o600); err != nil {
		return fmt.Errorf("tenant record: %w", err)
	}
	return nil
}

func removeTenantRecord(conf Config, key ipam.Key) error {
	err := os.Remove(filepath.Join(tenantRecordDir(conf), bridge.HostVethName(key.ContainerID, key.IfName)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("tenant record: %w", err)
	}
	return nil
}

// gcTenantRecords removes the records of tenant attachments the runtime no longer knows, once
// older than gcGrace, and marks the veths of the others to keep.
func gcTenantRecords(conf Config, valid map[ipam.Key]bool, keepVeths map[string]bool) error {
	entries, err := os.ReadDir(tenantRecordDir(conf))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tenant records: %w", err)
	}
	var errs error
	for _, e := range entries {
		path := filepath.Join(tenantRecordDir(conf), e.Name())
		var key ipam.Key
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &key)
		}
		info, ierr := e.Info()
		if err != nil || ierr != nil {
			continue
		}
		if !valid[key] && time.Since(info.ModTime()) > gcGrace {
			errs = errors.Join(errs, removeTenantRecord(conf, key))
		} else {
			keepVeths[e.Name()] = true
		}
	}
	return errs
}

// Package router realises Neutron routers and floating IPs on the node
// that a Router's status names: one network namespace per router, joined
// to each of its tenant networks' bridges by a veth pair that carries the
// subnet's gateway address, and to its external network by a macvlan on
// the node's interface to that network; nftables in the namespace does
// SNAT for the router's subnets and DNAT/SNAT for floating IPs. The
// controllers choose the node and the addresses; this package only makes
// the node match them (desired.go is the pure part, realise.go the
// netlink and nftables side, run.go the node loop).
package router

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/tenant"
)

// Name prefixes of what a router owns on a node: its namespace, the veth
// pairs to its subnets (both ends carry the name) and its external
// gateway (inside the namespace).
const (
	NamespacePrefix = "qrouter-"
	interfacePrefix = "qr-"
	externalPrefix  = "qg-"
)

// defaultVXLANMTU is a vxlan network's MTU when its status has none yet.
const defaultVXLANMTU = 1450

// RouterState is what one router needs on its node.
type RouterState struct {
	Namespace  string // network namespace name
	Router     string // namespace/name, for logs
	Interfaces []Interface
	External   *External // nil: no external gateway
	SNAT       bool
	Floating   []Floating
}

// Interface is the router's leg on one subnet: a veth pair whose host end
// is plugged into Bridge and whose other end holds Address.
type Interface struct {
	Name    string // of both veth ends
	Subnet  string
	Bridge  string
	Address netip.Prefix // the subnet's gateway IP with the subnet's length
	MAC     net.HardwareAddr
	MTU     int
}

// External is the router's leg on its external network: a macvlan on
// Parent (empty: the interface holding the node's IP).
type External struct {
	Name    string
	Parent  string
	Address netip.Prefix
	Gateway netip.Addr // invalid: no default route
	MAC     net.HardwareAddr
}

// Floating forwards Floating (on the external interface) to Fixed.
type Floating struct {
	Floating, Fixed netip.Addr
}

// Inputs are the objects a router's state comes from. Subnets and
// Networks are those of the router's namespace, by name; FloatingIPs may
// hold any, Desired picks those bound to the router.
type Inputs struct {
	Router          *netv1.Router
	Subnets         map[string]*netv1.Subnet
	Networks        map[string]*netv1.Network
	ExternalNetwork *netv1.Network
	ExternalSubnets []*netv1.Subnet
	FloatingIPs     []*netv1.FloatingIP
}

// NamespaceName is the network namespace of the router with this UID.
func NamespaceName(uid string) string { return NamespacePrefix + short(uid) }

func short(uid string) string {
	s := strings.ReplaceAll(uid, "-", "")
	if len(s) > 8 {
		s = s[:8]
	}
	return s
}

// stableMAC derives a locally administered unicast MAC from parts, so a
// router's interfaces keep their MACs across recreation and nodes.
func stableMAC(parts ...string) net.HardwareAddr {
	sum := sha256.Sum256([]byte(strings.Join(parts, "/")))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&0xfe | 0x02
	return mac
}

// InterfaceMAC is the MAC of the router's interface on a subnet unless
// its status names one: controllers may publish it in
// status.interfaces[].macAddress.
func InterfaceMAC(routerUID, subnet string) net.HardwareAddr { return stableMAC(routerUID, subnet) }

func interfaceName(uid, subnet string) string {
	sum := sha256.Sum256([]byte(subnet))
	return fmt.Sprintf("%s%s%02x%02x", interfacePrefix, short(uid), sum[0], sum[1])
}

// Desired is the state of in.Router on its node. Parts that are not ready
// yet (a subnet without its network's VNI, an external subnet not found)
// are left out and named in the error, so the rest can be realised.
func Desired(in Inputs) (RouterState, error) {
	r := in.Router
	if r == nil {
		return RouterState{}, errors.New("router: no router")
	}
	uid := string(r.UID)
	if uid == "" {
		return RouterState{}, fmt.Errorf("router %s/%s: no UID", r.Namespace, r.Name)
	}
	st := RouterState{Namespace: NamespaceName(uid), Router: r.Namespace + "/" + r.Name}
	var errs []error
	for _, is := range r.Status.Interfaces {
		ifc, err := desiredInterface(in, uid, is)
		if err != nil {
			errs = append(errs, fmt.Errorf("router %s: interface on subnet %s: %w", st.Router, is.Subnet, err))
			continue
		}
		st.Interfaces = append(st.Interfaces, ifc)
	}
	slices.SortFunc(st.Interfaces, func(a, b Interface) int { return strings.Compare(a.Name, b.Name) })

	if gw := r.Spec.ExternalGateway; gw != nil {
		ext, err := desiredExternal(in, uid)
		if err != nil {
			errs = append(errs, fmt.Errorf("router %s: external gateway: %w", st.Router, err))
		} else {
			st.External = ext
			st.SNAT = gw.EnableSNAT == nil || *gw.EnableSNAT
			st.Floating = desiredFloating(in, st.Interfaces)
		}
	}
	return st, errors.Join(errs...)
}

func desiredInterface(in Inputs, uid string, is netv1.RouterInterfaceStatus) (Interface, error) {
	sn := in.Subnets[is.Subnet]
	if sn == nil {
		return Interface{}, errors.New("subnet not found")
	}
	cidr, err := netip.ParsePrefix(sn.Spec.CIDR)
	if err != nil || !cidr.Addr().Is4() {
		return Interface{}, fmt.Errorf("subnet CIDR %q is no IPv4 prefix", sn.Spec.CIDR)
	}
	ip, err := netip.ParseAddr(is.IPAddress)
	if err != nil || !cidr.Contains(ip) {
		return Interface{}, fmt.Errorf("address %q is not in %s", is.IPAddress, cidr)
	}
	nw := in.Networks[sn.Spec.Network]
	if nw == nil {
		return Interface{}, fmt.Errorf("network %s not found", sn.Spec.Network)
	}
	if nw.Spec.ProviderType == netv1.ProviderFlat {
		return Interface{}, fmt.Errorf("network %s is flat; routers join vxlan networks", nw.Name)
	}
	if nw.Status.SegmentationID == 0 {
		return Interface{}, fmt.Errorf("network %s has no segmentation ID yet", nw.Name)
	}
	mtu := int(nw.Status.MTU)
	if mtu == 0 {
		mtu = int(nw.Spec.MTU)
	}
	if mtu == 0 {
		mtu = defaultVXLANMTU
	}
	mac := InterfaceMAC(uid, is.Subnet)
	if m, err := net.ParseMAC(is.MACAddress); err == nil && len(m) == 6 {
		mac = m
	}
	return Interface{
		Name:    interfaceName(uid, is.Subnet),
		Subnet:  is.Subnet,
		Bridge:  tenant.BridgeName(nw.Status.SegmentationID),
		Address: netip.PrefixFrom(ip, cidr.Bits()),
		MAC:     mac,
		MTU:     mtu,
	}, nil
}

func desiredExternal(in Inputs, uid string) (*External, error) {
	r := in.Router
	if in.ExternalNetwork == nil {
		return nil, fmt.Errorf("network %s not found", r.Spec.ExternalGateway.Network.Name)
	}
	if !in.ExternalNetwork.Spec.External {
		return nil, fmt.Errorf("network %s is not external", in.ExternalNetwork.Name)
	}
	if t := in.ExternalNetwork.Spec.ProviderType; t != netv1.ProviderFlat {
		return nil, fmt.Errorf("network %s is %q; external networks must be flat", in.ExternalNetwork.Name, t)
	}
	ip, err := netip.ParseAddr(r.Status.ExternalIP)
	if err != nil || !ip.Is4() {
		return nil, fmt.Errorf("no external IP yet (%q)", r.Status.ExternalIP)
	}
	for _, sn := range in.ExternalSubnets {
		cidr, err := netip.ParsePrefix(sn.Spec.CIDR)
		if err != nil || !cidr.Contains(ip) {
			continue
		}
		ext := &External{
			Name:    externalPrefix + short(uid),
			Parent:  in.ExternalNetwork.Spec.PhysicalInterface,
			Address: netip.PrefixFrom(ip, cidr.Bits()),
			MAC:     stableMAC(uid, "external"),
		}
		if !sn.Spec.NoGateway {
			gw := sn.Status.GatewayIP
			if gw == "" {
				gw = sn.Spec.GatewayIP
			}
			if a, err := netip.ParseAddr(gw); err == nil && cidr.Contains(a) && a != ip {
				ext.Gateway = a
			}
		}
		return ext, nil
	}
	return nil, fmt.Errorf("no subnet of network %s holds external IP %s", in.ExternalNetwork.Name, ip)
}

// desiredFloating are the router's active floating IPs whose fixed address
// is on one of its interfaces, one per floating address (the first by
// name wins a conflict).
func desiredFloating(in Inputs, ifcs []Interface) []Floating {
	r := in.Router
	fips := slices.Clone(in.FloatingIPs)
	slices.SortFunc(fips, func(a, b *netv1.FloatingIP) int { return strings.Compare(a.Name, b.Name) })
	seen := map[netip.Addr]bool{}
	var out []Floating
	for _, f := range fips {
		if f.Namespace != r.Namespace || f.Status.Router != r.Name || f.DeletionTimestamp != nil {
			continue
		}
		if f.Status.Status == netv1.StatusDown || f.Status.Status == netv1.StatusError {
			continue
		}
		fl, err1 := netip.ParseAddr(f.Status.FloatingIPAddress)
		fx, err2 := netip.ParseAddr(f.Status.FixedIPAddress)
		if err1 != nil || err2 != nil || !fl.Is4() || !fx.Is4() || seen[fl] {
			continue
		}
		if !slices.ContainsFunc(ifcs, func(i Interface) bool { return i.Address.Masked().Contains(fx) }) {
			continue // not on this router's subnets (yet)
		}
		seen[fl] = true
		out = append(out, Floating{Floating: fl, Fixed: fx})
	}
	slices.SortFunc(out, func(a, b Floating) int { return a.Floating.Compare(b.Floating) })
	return out
}

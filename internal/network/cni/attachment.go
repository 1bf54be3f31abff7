package cni

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// NetworkAttachment is everything the plugin needs to wire one pod interface: which L2 segment
// (bridge) and which address. The pod network is one answer; a tenant network with a Port (fixed
// IP and MAC owned by the Port object) is another.
type NetworkAttachment struct {
	// Network names the network; node-local addresses are allocated under <ipamDir>/<Network>.
	Network string
	// Port is the Port object backing the interface, empty for the pod network.
	Port string
	// Bridge the host side of the veth joins.
	Bridge string
	// Subnet the address belongs to; its first address is the gateway unless Gateway is set.
	Subnet  netip.Prefix
	Gateway netip.Addr
	// IP is a fixed address (a Port's). Zero means: allocate from Subnet with the node IPAM.
	IP netip.Addr
	// MAC is a fixed MAC (a Port's). Nil lets the kernel choose.
	MAC     net.HardwareAddr
	MTU     int
	Hairpin bool
	// Tenant marks a tenant network's segment: its bridge carries no address (the gateway is a
	// router's, elsewhere), the address is the Port's (IP must be set), and without a Gateway
	// the pod gets no default route.
	Tenant bool
	// Routes are extra routes in the pod (a subnet's host routes).
	Routes []Route
	// DNS servers of the attachment, reported in the result and on the pod interface's alias.
	DNS []netip.Addr
}

// Route is a route in the pod; an invalid Via means on-link.
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
}

// Attachment decides which network and port a pod interface gets. podNetwork is the default
// answer, built from the node's network config; PodNetwork returns it unchanged. A later
// resolver can look the pod up (annotations, Port objects) and answer differently. Resolve runs
// on ADD only; DEL and GC work from local state so they succeed when the API is unreachable.
type Attachment interface {
	Resolve(ctx context.Context, pod PodRef, podNetwork NetworkAttachment) (NetworkAttachment, error)
}

// PodNetwork attaches every pod to the pod network.
type PodNetwork struct{}

// Resolve returns the pod network.
func (PodNetwork) Resolve(_ context.Context, _ PodRef, podNetwork NetworkAttachment) (NetworkAttachment, error) {
	return podNetwork, nil
}

// podNetwork is the default attachment of a config.
func (c Config) podNetwork() NetworkAttachment {
	return NetworkAttachment{
		Network: PodNetworkName,
		Bridge:  c.Bridge,
		Subnet:  c.PodCIDR,
		MTU:     c.MTU,
		Hairpin: c.Hairpin,
	}
}

// normalize fills the gateway and checks that the attachment is usable.
func (a NetworkAttachment) normalize() (NetworkAttachment, error) {
	if a.Network == "" || a.Bridge == "" {
		return a, fmt.Errorf("attachment without network or bridge")
	}
	if a.Network == "." || a.Network == ".." || strings.ContainsAny(a.Network, "/\x00") {
		return a, fmt.Errorf("network name %q is not a plain name", a.Network) // it names a directory
	}
	if !a.Subnet.IsValid() {
		return a, fmt.Errorf("attachment %s without subnet", a.Network)
	}
	a.Subnet = a.Subnet.Masked()
	if a.Tenant && !a.IP.IsValid() {
		return a, fmt.Errorf("tenant attachment %s without the Port's address", a.Network)
	}
	if !a.Gateway.IsValid() && !a.Tenant { // a tenant subnet without gateway gets no default route
		a.Gateway = DefaultGateway(a.Subnet)
	}
	if a.Gateway.IsValid() && !a.Subnet.Contains(a.Gateway) {
		return a, fmt.Errorf("gateway %s outside subnet %s", a.Gateway, a.Subnet)
	}
	if a.IP.IsValid() && (!a.Subnet.Contains(a.IP) || a.IP == a.Gateway) {
		return a, fmt.Errorf("fixed address %s unusable in subnet %s", a.IP, a.Subnet)
	}
	for _, r := range a.Routes {
		if !r.Dst.IsValid() || (r.Via.IsValid() && !a.Subnet.Contains(r.Via)) {
			return a, fmt.Errorf("route %v via %v unusable from subnet %s", r.Dst, r.Via, a.Subnet)
		}
	}
	return a, nil
}

// DefaultGateway is the gateway of a subnet whose attachment names none: its first address. The
// node's bridge carries it, so node-local services (cluster DNS) listen there too.
func DefaultGateway(subnet netip.Prefix) netip.Addr {
	return subnet.Masked().Addr().Next()
}

// Package netlab builds Strata's pod network inside throw-away network namespaces: "nodes" joined
// by an underlay veth pair, each set up the way the node agent sets up a host (IP forwarding,
// masquerade, the VXLAN overlay programmed from the peers' Node annotations), and "pods" attached
// through Strata's own CNI plugin with its default MTU. The two-node network test and
// bench/netperf share it, so that both exercise the real data path. Nothing is created in the
// caller's own network namespace.
package netlab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/strata-cloud/strata/internal/network/cni"
	"github.com/strata-cloud/strata/internal/network/masq"
	"github.com/strata-cloud/strata/internal/network/overlay"
)

// ClusterCIDR is the lab's cluster pod CIDR; node i (from 0) gets 10.42.(i+1).0/24 and the
// underlay address 192.168.77.(i+1)/24 on its UnderlayDevice.
const (
	ClusterCIDR    = "10.42.0.0/16"
	UnderlayDevice = "under0"
)

// Node is one lab "host": a network namespace with Strata's node networking in it.
type Node struct {
	Name    string
	NS      ns.NetNS
	Handle  *netlink.Handle // netlink in NS
	IP      netip.Addr      // underlay address
	PodCIDR netip.Prefix
	IPAMDir string
	Plugin  *cni.Plugin // acts in NS
	Overlay *overlay.Overlay
}

// Lab owns namespaces and handles and releases them on Close.
type Lab struct {
	Nodes   []*Node
	closers []func()
}

// New returns an empty lab; add nodes with TwoNodes or namespaces with NewNS.
func New() *Lab { return &Lab{} }

// Close deletes everything the lab created (namespaces take their devices with them). It is
// safe to call twice.
func (l *Lab) Close() {
	for i := len(l.closers) - 1; i >= 0; i-- {
		l.closers[i]()
	}
	l.closers = nil
}

// NewNS returns a fresh bind-mounted network namespace (its Path() works as CNI_NETNS) with
// loopback up, deleted by Close.
func (l *Lab) NewNS() (ns.NetNS, error) {
	n, err := testutils.NewNS()
	if err != nil {
		return nil, fmt.Errorf("create netns: %w", err)
	}
	l.closers = append(l.closers, func() {
		_ = n.Close()
		_ = testutils.UnmountNS(n)
	})
	h, err := l.Handle(n)
	if err != nil {
		return nil, err
	}
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return nil, fmt.Errorf("loopback up in %s: %w", n.Path(), err)
	}
	return n, nil
}

// Handle returns a netlink handle bound to n, closed by Close.
func (l *Lab) Handle(n ns.NetNS) (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(netns.NsHandle(n.Fd()))
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", n.Path(), err)
	}
	l.closers = append(l.closers, h.Close)
	return h, nil
}

// TwoNodes adds "node-a" and "node-b", joined by an underlay veth pair, each with IP forwarding,
// masquerade and the VXLAN overlay (synced from both nodes' annotations, as peers read them from
// the Node objects), and a CNI plugin keeping its IPAM state under dir.
func (l *Lab) TwoNodes(ctx context.Context, dir string) (a, b *Node, err error) {
	for i, name := range []string{"node-a", "node-b"} {
		n := &Node{
			Name:    name,
			IP:      netip.AddrFrom4([4]byte{192, 168, 77, byte(i + 1)}),
			PodCIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 42, byte(i + 1), 0}), 24),
			IPAMDir: filepath.Join(dir, name, "ipam"),
		}
		if n.NS, err = l.NewNS(); err != nil {
			return nil, nil, err
		}
		if n.Handle, err = l.Handle(n.NS); err != nil {
			return nil, nil, err
		}
		if err := os.MkdirAll(n.IPAMDir, 0o700); err != nil {
			return nil, nil, err
		}
		n.Plugin = &cni.Plugin{HostNS: n.NS}
		l.Nodes = append(l.Nodes, n)
	}
	a, b = l.Nodes[len(l.Nodes)-2], l.Nodes[len(l.Nodes)-1]

	attrs := netlink.NewLinkAttrs()
	attrs.Name = UnderlayDevice
	if err := a.Handle.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: UnderlayDevice, PeerNamespace: netlink.NsFd(int(b.NS.Fd()))}); err != nil {
		return nil, nil, fmt.Errorf("underlay veth: %w", err)
	}
	var all []overlay.Node
	for _, n := range []*Node{a, b} {
		u, err := n.Handle.LinkByName(UnderlayDevice)
		if err != nil {
			return nil, nil, err
		}
		if err := n.Handle.AddrAdd(u, &netlink.Addr{IPNet: &net.IPNet{IP: n.IP.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
			return nil, nil, fmt.Errorf("%s: underlay address: %w", n.Name, err)
		}
		if err := n.Handle.LinkSetUp(u); err != nil {
			return nil, nil, err
		}
		// Host setup as the agent does it.
		if err := n.NS.Do(func(ns.NetNS) error { return masq.EnsureIPForward() }); err != nil {
			return nil, nil, fmt.Errorf("%s: ip_forward: %w", n.Name, err)
		}
		if err := masq.EnsureMasquerade(ctx, netip.MustParsePrefix(ClusterCIDR), cni.DefaultBridge, nftables.WithNetNSFd(int(n.NS.Fd()))); err != nil {
			return nil, nil, fmt.Errorf("%s: masquerade: %w", n.Name, err)
		}
		if n.Overlay, err = overlay.New(overlay.Config{NodeName: n.Name, NodeIP: n.IP, PodCIDR: n.PodCIDR}, n.Handle); err != nil {
			return nil, nil, err
		}
		peer, err := overlay.NodeFromObject(n.Name, n.PodCIDR.String(), n.Overlay.Local().Annotations(), "")
		if err != nil {
			return nil, nil, err
		}
		all = append(all, peer)
	}
	for _, n := range []*Node{a, b} {
		if err := n.Overlay.Sync(ctx, all); err != nil {
			return nil, nil, fmt.Errorf("%s: overlay: %w", n.Name, err)
		}
	}
	return a, b, nil
}

// Conf is the plugin configuration a runtime passes on stdin for this node: the node's
// conflist entry with the list's name and version injected.
func (n *Node) Conf() ([]byte, error) {
	list, err := cni.ConfList("strata", cni.NetConf{PodCIDR: n.PodCIDR.String(), ClusterCIDR: ClusterCIDR, IPAMDir: n.IPAMDir})
	if err != nil {
		return nil, err
	}
	var l struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(list, &l); err != nil {
		return nil, err
	}
	if len(l.Plugins) != 1 {
		return nil, fmt.Errorf("conflist has %d plugins, want 1", len(l.Plugins))
	}
	p := l.Plugins[0]
	p["name"], p["cniVersion"] = l.Name, l.CNIVersion
	return json.Marshal(p)
}

// CNI runs the plugin's command (ADD, DEL, CHECK) for pod containerID in namespace pod, as a
// runtime would, with interface eth0. ADD returns the plugin's result.
func (n *Node) CNI(ctx context.Context, cmd, containerID string, pod ns.NetNS) (*current.Result, error) {
	conf, err := n.Conf()
	if err != nil {
		return nil, err
	}
	env := map[string]string{"CNI_COMMAND": cmd, "CNI_CONTAINERID": containerID, "CNI_NETNS": pod.Path(),
		"CNI_IFNAME": "eth0", "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + containerID}
	var out, stderr bytes.Buffer
	if err := n.Plugin.Main(ctx, bytes.NewReader(conf), func(k string) string { return env[k] }, &out, &stderr); err != nil {
		return nil, fmt.Errorf("CNI %s %s on %s: %w: %s %s", cmd, containerID, n.Name, err, out.String(), stderr.String())
	}
	if cmd != "ADD" {
		return nil, nil
	}
	var res current.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("CNI ADD %s on %s: result: %w", containerID, n.Name, err)
	}
	if len(res.IPs) == 0 {
		return nil, errors.New("CNI ADD returned no IP")
	}
	return &res, nil
}

// AddPod creates a pod namespace (deleted by Close) and attaches it to n's pod network through
// the plugin, returning the namespace and the pod's address.
func (l *Lab) AddPod(ctx context.Context, n *Node, containerID string) (ns.NetNS, netip.Addr, error) {
	pod, err := l.NewNS()
	if err != nil {
		return nil, netip.Addr{}, err
	}
	res, err := n.CNI(ctx, "ADD", containerID, pod)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	addr, ok := netip.AddrFromSlice(res.IPs[0].Address.IP.To4())
	if !ok {
		return nil, netip.Addr{}, fmt.Errorf("pod %s: bad address %s", containerID, res.IPs[0].Address.IP)
	}
	return pod, addr, nil
}

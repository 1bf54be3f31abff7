package network_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/strata-cloud/strata/internal/network/bridge"
	"github.com/strata-cloud/strata/internal/network/cni"
	"github.com/strata-cloud/strata/internal/network/ipam"
	"github.com/strata-cloud/strata/internal/network/masq"
	"github.com/strata-cloud/strata/internal/network/netnstest"
	"github.com/strata-cloud/strata/internal/network/overlay"
)

const clusterCIDR = "10.42.0.0/16"

type testNode struct {
	name    string
	host    ns.NetNS
	h       *netlink.Handle
	ip      netip.Addr
	podCIDR netip.Prefix
	ipamDir string
	plugin  *cni.Plugin
	overlay *overlay.Overlay
}

func (n *testNode) conf(t *testing.T) []byte {
	t.Helper()
	list, err := cni.ConfList("strata", cni.NetConf{PodCIDR: n.podCIDR.String(), ClusterCIDR: clusterCIDR, IPAMDir: n.ipamDir})
	if err != nil {
		t.Fatal(err)
	}
	// what a runtime does with a conflist: inject name and version into the plugin's config
	var l struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(list, &l); err != nil {
		t.Fatal(err)
	}
	p := l.Plugins[0]
	p["name"], p["cniVersion"] = l.Name, l.CNIVersion
	b, _ := json.Marshal(p)
	return b
}

func (n *testNode) cni(t *testing.T, cmd, containerID string, pod ns.NetNS) *current.Result {
	t.Helper()
	env := map[string]string{"CNI_COMMAND": cmd, "CNI_CONTAINERID": containerID, "CNI_NETNS": pod.Path(),
		"CNI_IFNAME": "eth0", "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + containerID}
	var out, stderr bytes.Buffer
	err := n.plugin.Main(context.Background(), bytes.NewReader(n.conf(t)), func(k string) string { return env[k] }, &out, &stderr)
	if err != nil {
		t.Fatalf("%s %s on %s: %v\n%s", cmd, containerID, n.name, err, out.String())
	}
	if cmd != "ADD" {
		return nil
	}
	var res current.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	return &res
}

// TestTwoNodes joins two "nodes" (network namespaces wired by an underlay veth) with the VXLAN
// overlay, attaches one pod to each through the CNI plugin, and checks pod-to-pod traffic across
// the overlay (unNATed) and pod-to-outside traffic (masqueraded), then detaches both pods.
func TestTwoNodes(t *testing.T) {
	ctx := context.Background()
	nodes := []*testNode{
		{name: "node-a", ip: netip.MustParseAddr("192.168.77.1"), podCIDR: netip.MustParsePrefix("10.42.1.0/24")},
		{name: "node-b", ip: netip.MustParseAddr("192.168.77.2"), podCIDR: netip.MustParsePrefix("10.42.2.0/24")},
	}
	for _, n := range nodes {
		n.host = netnstest.New(t)
		n.h = netnstest.Handle(t, n.host)
		n.ipamDir = t.TempDir()
		n.plugin = &cni.Plugin{HostNS: n.host}
	}
	a, b := nodes[0], nodes[1]

	// underlay: under0 in node-a <-> under0 in node-b
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "under0"
	if err := a.h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "under0", PeerNamespace: netlink.NsFd(int(b.host.Fd()))}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		l, err := n.h.LinkByName("under0")
		if err != nil {
			t.Fatal(err)
		}
		if err := n.h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: n.ip.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
			t.Fatal(err)
		}
		if err := n.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}

	// node setup as the agent would do it
	var all []overlay.Node
	for _, n := range nodes {
		netnstest.Do(t, n.host, masq.EnsureIPForward)
		if err := masq.EnsureMasquerade(ctx, netip.MustParsePrefix(clusterCIDR), cni.DefaultBridge, nftables.WithNetNSFd(int(n.host.Fd()))); err != nil {
			t.Fatal(err)
		}
		o, err := overlay.New(overlay.Config{NodeName: n.name, NodeIP: n.ip, PodCIDR: n.podCIDR}, n.h)
		if err != nil {
			t.Fatal(err)
		}
		n.overlay = o
		// through the annotations, as peers would read them from the Node object
		peer, err := overlay.NodeFromObject(n.name, n.podCIDR.String(), o.Local().Annotations(), "")
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, peer)
	}
	for _, n := range nodes {
		if err := n.overlay.Sync(ctx, all); err != nil {
			t.Fatal(err)
		}
	}

	podA, podB := netnstest.New(t), netnstest.New(t)
	resA := a.cni(t, "ADD", "pod-a", podA)
	resB := b.cni(t, "ADD", "pod-b", podB)
	ipA, ipB := resA.IPs[0].Address.IP.String(), resB.IPs[0].Address.IP.String()
	if ipA != "10.42.1.2" || ipB != "10.42.2.2" {
		t.Fatalf("pod addresses %s %s", ipA, ipB)
	}

	// pod A -> pod B over VXLAN keeps the pod source address
	if got := roundTrip(t, podB, podA, net.JoinHostPort(ipB, "7000")); got != ipA {
		t.Fatalf("pod B saw %s, want pod A's %s", got, ipA)
	}
	// and back
	if got := roundTrip(t, podA, podB, net.JoinHostPort(ipA, "7000")); got != ipB {
		t.Fatalf("pod A saw %s, want pod B's %s", got, ipB)
	}
	for _, n := range nodes {
		l, err := n.h.LinkByName(overlay.DeviceName)
		if err != nil || l.Attrs().Statistics == nil || l.Attrs().Statistics.TxPackets == 0 || l.Attrs().Statistics.RxPackets == 0 {
			t.Fatalf("%s: no traffic through %s: %v", n.name, overlay.DeviceName, err)
		}
	}
	// pod A -> node B's underlay address leaves the cluster CIDR: masqueraded to node A's address
	if got := roundTrip(t, b.host, podA, net.JoinHostPort(b.ip.String(), "7001")); got != a.ip.String() {
		t.Fatalf("node B saw %s, want node A's %s (masquerade)", got, a.ip)
	}

	// detach
	a.cni(t, "DEL", "pod-a", podA)
	b.cni(t, "DEL", "pod-b", podB)
	for _, tc := range []struct {
		n  *testNode
		id string
	}{{a, "pod-a"}, {b, "pod-b"}} {
		if _, err := tc.n.h.LinkByName(bridge.HostVethName(tc.id, "eth0")); err == nil {
			t.Fatalf("%s: veth left on %s", tc.id, tc.n.name)
		}
		left, err := ipam.OpenExisting(filepath.Join(tc.n.ipamDir, cni.PodNetworkName)).List(ctx)
		if err != nil || len(left) != 0 {
			t.Fatalf("%s: allocations left %v %v", tc.n.name, left, err)
		}
	}
}

// roundTrip listens on addr inside server, connects from inside client, and returns the client
// address the server saw.
func roundTrip(t *testing.T, server, client ns.NetNS, addr string) string {
	t.Helper()
	var ln net.Listener
	netnstest.Do(t, server, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			seen <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		fmt.Fprintf(c, "%s\n", host)
		seen <- host
	}()
	netnstest.Do(t, client, func() error {
		c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
		if err != nil {
			return fmt.Errorf("dial %s: %w", addr, err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			return fmt.Errorf("read from %s: %w", addr, err)
		}
		return nil
	})
	select {
	case s := <-seen:
		return s
	case <-time.After(3 * time.Second):
		t.Fatal("server saw no connection")
		return ""
	}
}

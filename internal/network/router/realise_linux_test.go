package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/netnstest"
	"github.com/strata-cloud/strata/internal/network/tenant"
)

// lab is a "node" namespace with a tenant bridge (VNI 100), instances on
// it, and an "external" namespace behind the node's interface ext0 (a
// veth), 203.0.113.1/24, with no route back to the tenant subnet.
type lab struct {
	node, external ns.NetNS
	hn             *netlink.Handle
	n              *Node
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{node: netnstest.New(t), external: netnstest.New(t)}
	l.hn = netnstest.Handle(t, l.node)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = tenant.BridgeName(100)
	if err := l.hn.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		t.Fatal(err)
	}
	br, _ := l.hn.LinkByName(attrs.Name)
	if err := l.hn.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	l.peer(t, "ext0", l.external, "203.0.113.1/24", "", "")
	l.n = &Node{Host: l.hn, NetNSDir: filepath.Join(t.TempDir(), "netns"), Owner: "n1"}
	t.Cleanup(func() {
		ents, _ := os.ReadDir(l.n.NetNSDir)
		for _, e := range ents {
			_ = l.n.Delete(context.Background(), e.Name())
		}
	})
	return l
}

// peer joins other to the node by a veth pair: hostEnd in the node
// (plugged into bridge when set), eth0 in other with cidr and gateway gw.
func (l *lab) peer(t *testing.T, hostEnd string, other ns.NetNS, cidr, gw, bridge string) {
	t.Helper()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = hostEnd
	if err := l.hn.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(other.Fd()))}); err != nil {
		t.Fatal(err)
	}
	host, _ := l.hn.LinkByName(hostEnd)
	if bridge != "" {
		br, _ := l.hn.LinkByName(bridge)
		if err := l.hn.LinkSetMaster(host, br); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.hn.LinkSetUp(host); err != nil {
		t.Fatal(err)
	}
	ho := netnstest.Handle(t, other)
	eth0, err := ho.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr(cidr)
	if err := ho.AddrAdd(eth0, addr); err != nil {
		t.Fatal(err)
	}
	if err := ho.LinkSetUp(eth0); err != nil {
		t.Fatal(err)
	}
	if gw != "" {
		if err := ho.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
			t.Fatal(err)
		}
	}
}

func (l *lab) instance(t *testing.T, hostEnd, cidr string) ns.NetNS {
	t.Helper()
	inst := netnstest.New(t)
	l.peer(t, hostEnd, inst, cidr, "10.0.0.1", tenant.BridgeName(100))
	return inst
}

// serve answers every TCP connection to addr (in n) with name and the
// address the connection came from.
func serve(t *testing.T, n ns.NetNS, addr, name string) {
	t.Helper()
	var ln net.Listener
	netnstest.Do(t, n, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s %s", name, c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
}

// call connects from n to addr and returns what the server said.
func call(n ns.NetNS, addr string) (string, error) {
	var out string
	err := n.Do(func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp4", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		b, err := io.ReadAll(c)
		out = string(b)
		return err
	})
	return out, err
}

func mustCall(t *testing.T, n ns.NetNS, addr, want string) {
	t.Helper()
	// The first packets may wait for ARP.
	var got string
	var err error
	for range 3 {
		if got, err = call(n, addr); err == nil && got == want {
			return
		}
	}
	t.Fatalf("call %s: got %q, %v; want %q", addr, got, err, want)
}

func ensure(t *testing.T, l *lab, in Inputs) RouterState {
	t.Helper()
	st, err := Desired(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.n.Ensure(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestRouterSNATAndFloatingIPs(t *testing.T) {
	l := newLab(t)
	inst1 := l.instance(t, "inst1", "10.0.0.5/24")
	inst2 := l.instance(t, "inst2", "10.0.0.6/24")
	serve(t, l.external, "203.0.113.1:8080", "ext")
	serve(t, inst1, ":8080", "inst1")
	serve(t, inst2, ":8080", "inst2")

	// (a) out through SNAT: the outside sees the router's external IP.
	st := ensure(t, l, objects())
	mustCall(t, inst1, "203.0.113.1:8080", "ext 203.0.113.10")
	if _, err := call(l.external, "203.0.113.50:8080"); err == nil {
		t.Fatal("floating IP answers before it exists")
	}

	// Ensure is idempotent.
	ensure(t, l, objects())

	// (b) a floating IP makes inst1 reachable, and inst1 goes out as it;
	// its neighbour on the subnet reaches it by the floating IP too.
	st = ensure(t, l, objects(fip("f1", "203.0.113.50", "10.0.0.5")))
	checkTable(t, l, st)
	mustCall(t, l.external, "203.0.113.50:8080", "inst1 203.0.113.1")
	mustCall(t, inst1, "203.0.113.1:8080", "ext 203.0.113.50")
	mustCall(t, inst2, "203.0.113.1:8080", "ext 203.0.113.10")
	mustCall(t, inst2, "203.0.113.50:8080", "inst1 10.0.0.1")
	serveEcho(t, inst1, ":9090")
	held := dialEcho(t, l.external, "203.0.113.50:9090")

	// (c) the floating IP moves to inst2, and the flow held to inst1 is cut.
	ensure(t, l, objects(fip("f1", "203.0.113.50", "10.0.0.6")))
	mustCall(t, l.external, "203.0.113.50:8080", "inst2 203.0.113.1")
	mustCall(t, inst1, "203.0.113.1:8080", "ext 203.0.113.10")
	if err := echo(held); err == nil {
		t.Fatal("a flow to the floating IP's old instance survived the move")
	}

	// (d) without it, nothing answers on the address.
	ensure(t, l, objects())
	if got, err := call(l.external, "203.0.113.50:8080"); err == nil {
		t.Fatalf("floating IP still answers: %q", got)
	}
	mustCall(t, inst2, "203.0.113.1:8080", "ext 203.0.113.10")

	// Deleting the router takes its namespace and its veth on the bridge.
	if err := l.n.Delete(context.Background(), st.Namespace); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.n.NetNSDir, st.Namespace)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("namespace still there: %v", err)
	}
	waitGone(t, l.hn, st.Interfaces[0].Name)
	if _, err := call(inst1, "203.0.113.1:8080"); err == nil {
		t.Fatal("instance still gets out")
	}
}

// checkTable compares the kernel's table in the router's namespace with
// the rendering of the ruleset.
func checkTable(t *testing.T, l *lab, st RouterState) {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+filepath.Join(l.n.NetNSDir, st.Namespace), "nft", "list", "table", "ip", TableName).CombinedOutput()
	if err != nil {
		t.Skipf("nft unavailable: %v %s", err, out)
	}
	got := strings.ReplaceAll(string(out), "\n\n", "\n")
	if want := Rules(st).String(); got != want {
		t.Fatalf("kernel has\n%s\nwant\n%s", got, want)
	}
}

func serveEcho(t *testing.T, n ns.NetNS, addr string) {
	t.Helper()
	var ln net.Listener
	netnstest.Do(t, n, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
}

func dialEcho(t *testing.T, n ns.NetNS, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	netnstest.Do(t, n, func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, 2*time.Second)
		return err
	})
	t.Cleanup(func() { c.Close() })
	if err := echo(c); err != nil {
		t.Fatalf("echo through %s: %v", addr, err)
	}
	return c
}

func echo(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if string(b) != "ping" {
		return fmt.Errorf("echo %q", b)
	}
	return nil
}

func waitGone(t *testing.T, h *netlink.Handle, name string) {
	t.Helper()
	for range 50 {
		if _, err := h.LinkByName(name); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s is still on the node", name)
}

// TestRouterWithoutSNAT: the router routes but does not translate, and
// a missing tenant bridge is reported while the rest is done.
func TestRouterWithoutSNATAndMissingBridge(t *testing.T) {
	l := newLab(t)
	inst1 := l.instance(t, "inst1", "10.0.0.5/24")
	serve(t, l.external, "203.0.113.1:8080", "ext")
	in := objects()
	off := false
	in.Router.Spec.ExternalGateway.EnableSNAT = &off
	in.Router.Status.Interfaces = append(in.Router.Status.Interfaces, netv1.RouterInterfaceStatus{Subnet: "sn2", IPAddress: "10.1.0.1"})
	in.Subnets["sn2"] = &netv1.Subnet{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "sn2"}, Spec: netv1.SubnetSpec{Network: "net2", CIDR: "10.1.0.0/24"}}
	in.Networks["net2"] = &netv1.Network{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "net2"}, Status: netv1.NetworkStatus{SegmentationID: 200}}
	st, err := Desired(in)
	if err != nil {
		t.Fatal(err)
	}
	err = l.n.Ensure(context.Background(), st)
	if err == nil || !strings.Contains(err.Error(), tenant.BridgeName(200)) {
		t.Fatalf("want the missing bridge named, got %v", err)
	}
	// No SNAT, and the outside has no route back: the connection fails.
	if got, err := call(inst1, "203.0.113.1:8080"); err == nil {
		t.Fatalf("connected without SNAT: %q", got)
	}
	// With a route back, the outside sees the instance's own address.
	netnstest.Do(t, l.external, func() error {
		return netlink.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4(10, 0, 0, 0), Mask: net.CIDRMask(24, 32)}, Gw: net.ParseIP("203.0.113.10")})
	})
	mustCall(t, inst1, "203.0.113.1:8080", "ext 10.0.0.5")
}

// TestFloatingIPMovesBetweenRouters: the outside, which has the floating
// IP cached at the first router's MAC, follows it to the second router at
// once thanks to the gratuitous ARP.
func TestFloatingIPMovesBetweenRouters(t *testing.T) {
	l := newLab(t)
	inst1 := l.instance(t, "inst1", "10.0.0.5/24")
	attrs := netlink.NewLinkAttrs()
	attrs.Name = tenant.BridgeName(101)
	if err := l.hn.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		t.Fatal(err)
	}
	br, _ := l.hn.LinkByName(attrs.Name)
	_ = l.hn.LinkSetUp(br)
	inst2 := netnstest.New(t)
	l.peer(t, "inst2", inst2, "10.0.1.5/24", "10.0.1.1", attrs.Name)
	serve(t, inst1, ":8080", "inst1")
	serve(t, inst2, ":8080", "inst2")

	r1 := objects(fip("f1", "203.0.113.50", "10.0.0.5"))
	r2 := objects()
	r2.Router.Name, r2.Router.UID = "r2", "99887766-0000-4000-8000-000000000002"
	r2.Router.Status.ExternalIP = "203.0.113.11"
	r2.Router.Status.Interfaces = []netv1.RouterInterfaceStatus{{Subnet: "sn2", IPAddress: "10.0.1.1"}}
	r2.Subnets = map[string]*netv1.Subnet{"sn2": {ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "sn2"}, Spec: netv1.SubnetSpec{Network: "net2", CIDR: "10.0.1.0/24"}}}
	r2.Networks = map[string]*netv1.Network{"net2": {ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "net2"}, Status: netv1.NetworkStatus{SegmentationID: 101}}}

	ensure(t, l, r1)
	st2 := ensure(t, l, r2)
	mustCall(t, l.external, "203.0.113.50:8080", "inst1 203.0.113.1")

	moved := fip("f1", "203.0.113.50", "10.0.1.5")
	moved.Status.Router = "r2"
	r1.FloatingIPs, r2.FloatingIPs = nil, []*netv1.FloatingIP{moved}
	ensure(t, l, r1)
	ensure(t, l, r2)
	he := netnstest.Handle(t, l.external)
	eth0, _ := he.LinkByName("eth0")
	var mac string
	for range 50 {
		neighs, _ := he.NeighList(eth0.Attrs().Index, netlink.FAMILY_V4)
		for _, n := range neighs {
			if n.IP.Equal(net.ParseIP("203.0.113.50")) {
				mac = n.HardwareAddr.String()
			}
		}
		if mac == st2.External.MAC.String() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if mac != st2.External.MAC.String() {
		t.Fatalf("the outside has 203.0.113.50 at %s, want the second router's %s", mac, st2.External.MAC)
	}
	mustCall(t, l.external, "203.0.113.50:8080", "inst2 203.0.113.1")
}

// TestExternalByNodeIPAndLeftoverFile: an external network that names no
// interface uses the one holding the node's IP; a namespace file left
// without its mount is replaced.
func TestExternalByNodeIPAndLeftoverFile(t *testing.T) {
	l := newLab(t)
	inst1 := l.instance(t, "inst1", "10.0.0.5/24")
	serve(t, l.external, "203.0.113.1:8080", "ext")
	ext0, _ := l.hn.LinkByName("ext0")
	addr, _ := netlink.ParseAddr("203.0.113.2/24")
	if err := l.hn.AddrAdd(ext0, addr); err != nil {
		t.Fatal(err)
	}
	l.n.NodeIP = netip.MustParseAddr("203.0.113.2")
	in := objects()
	in.ExternalNetwork.Spec.PhysicalInterface = ""
	st, err := Desired(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(l.n.NetNSDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.n.NetNSDir, st.Namespace), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := l.n.Ensure(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	mustCall(t, inst1, "203.0.113.1:8080", "ext 203.0.113.10")
}

// TestEastWest: a router without an external gateway routes between its
// subnets, keeping the instances' addresses.
func TestEastWest(t *testing.T) {
	l := newLab(t)
	inst1 := l.instance(t, "inst1", "10.0.0.5/24")
	attrs := netlink.NewLinkAttrs()
	attrs.Name = tenant.BridgeName(101)
	if err := l.hn.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		t.Fatal(err)
	}
	br, _ := l.hn.LinkByName(attrs.Name)
	_ = l.hn.LinkSetUp(br)
	inst2 := netnstest.New(t)
	l.peer(t, "inst2", inst2, "10.0.1.5/24", "10.0.1.1", attrs.Name)
	serve(t, inst1, ":8080", "inst1")
	serve(t, inst2, ":8080", "inst2")

	in := objects()
	in.Router.Spec.ExternalGateway = nil
	in.Router.Status.ExternalIP = ""
	in.Router.Status.Interfaces = append(in.Router.Status.Interfaces, netv1.RouterInterfaceStatus{Subnet: "sn2", IPAddress: "10.0.1.1"})
	in.Subnets["sn2"] = &netv1.Subnet{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "sn2"}, Spec: netv1.SubnetSpec{Network: "net2", CIDR: "10.0.1.0/24"}}
	in.Networks["net2"] = &netv1.Network{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "net2"}, Status: netv1.NetworkStatus{SegmentationID: 101}}
	ensure(t, l, in)
	mustCall(t, inst1, "10.0.1.5:8080", "inst2 10.0.0.5")
	mustCall(t, inst2, "10.0.0.5:8080", "inst1 10.0.1.5")

	// The second subnet leaves the router: its veth goes, the first stays.
	in.Router.Status.Interfaces = in.Router.Status.Interfaces[:1]
	st := ensure(t, l, in)
	waitGone(t, l.hn, interfaceName(string(in.Router.UID), "sn2"))
	if _, err := l.hn.LinkByName(st.Interfaces[0].Name); err != nil {
		t.Fatal(err)
	}
	if got, err := call(inst1, "10.0.1.5:8080"); err == nil {
		t.Fatalf("routed after the interface went: %q", got)
	}
}

// Command router measures what a Neutron router's NAT costs: TCP throughput
// from an instance on a tenant network to an external host through SNAT,
// and from the external host to the instance through a floating IP, each
// against the same router routing without NAT (the external host has a
// route back to the tenant subnet). Everything runs in throw-away network
// namespaces built the way the node agent builds them (package router);
// the traffic is Go TCP streams, one at a time. It needs root; it never
// fails on a figure.
//
//	go run ./bench/router [-runs 3] [-duration 2s]
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/netlab"
	"github.com/strata-cloud/strata/internal/network/router"
	"github.com/strata-cloud/strata/internal/network/tenant"
)

func main() {
	runs := flag.Int("runs", 3, "transfers per path (the median is reported)")
	duration := flag.Duration("duration", 2*time.Second, "length of one transfer")
	flag.Parse()
	if err := run(*runs, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "router:", err)
		os.Exit(1)
	}
}

const (
	vni     = 100
	tenMTU  = 1450
	port    = 5201
	extHost = "203.0.113.1"
	extIP   = "203.0.113.10"
	fipAddr = "203.0.113.50"
	instIP  = "10.0.0.5"
)

type bench struct {
	lab                *netlab.Lab
	node, inst, extern ns.NetNS
	hn                 *netlink.Handle
	rn                 *router.Node
}

func run(runs int, d time.Duration) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces, nftables)")
	}
	dir, err := os.MkdirTemp("", "bench-router-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{lab: netlab.New()}
	defer b.lab.Close()
	if err := b.build(filepath.Join(dir, "netns")); err != nil {
		return err
	}
	ctx := context.Background()
	defer func() {
		names, _ := b.rn.Namespaces()
		for _, n := range names {
			_ = b.rn.Delete(ctx, n)
		}
	}()
	for _, n := range []ns.NetNS{b.inst, b.extern} {
		if err := listen(n, port); err != nil {
			return err
		}
	}

	type path struct {
		name     string
		snat     bool
		fip      bool
		from     ns.NetNS
		to       string
		baseline string
	}
	paths := []path{
		{name: "out, routed", from: b.inst, to: extHost},
		{name: "out, SNAT", snat: true, from: b.inst, to: extHost, baseline: "out, routed"},
		{name: "out, floating IP", fip: true, from: b.inst, to: extHost, baseline: "out, routed"},
		{name: "in, routed", from: b.extern, to: instIP},
		{name: "in, floating IP", fip: true, from: b.extern, to: fipAddr, baseline: "in, routed"},
	}
	fmt.Printf("router NAT throughput: %d x %s TCP transfers per path, interleaved, median; kernel %s, load %s\n", runs, d, kernel(), load())
	// Round-robin over the paths, so a busy host slows them alike.
	rates := make([][]float64, len(paths))
	for range runs {
		for i, p := range paths {
			if err := b.router(ctx, p.snat, p.fip); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			r, err := transfer(p.from, net.JoinHostPort(p.to, fmt.Sprint(port)), d)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			rates[i] = append(rates[i], r)
		}
	}
	fmt.Printf("%-18s %10s %10s\n", "path", "MB/s", "vs routed")
	medians := map[string]float64{}
	for i, p := range paths {
		slices.Sort(rates[i])
		m := rates[i][len(rates[i])/2]
		medians[p.name] = m
		vs := "-"
		if base := medians[p.baseline]; p.baseline != "" && base > 0 {
			vs = fmt.Sprintf("%.2f", m/base)
		}
		fmt.Printf("%-18s %10.0f %10s\n", p.name, m, vs)
	}
	return nil
}

// build makes the node (tenant bridge, ext0 to the external host), the
// instance and the external host.
func (b *bench) build(netnsDir string) error {
	var err error
	if b.node, err = b.lab.NewNS(); err != nil {
		return err
	}
	if b.inst, err = b.lab.NewNS(); err != nil {
		return err
	}
	if b.extern, err = b.lab.NewNS(); err != nil {
		return err
	}
	if b.hn, err = b.lab.Handle(b.node); err != nil {
		return err
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU = tenant.BridgeName(vni), tenMTU
	if err := b.hn.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		return err
	}
	br, err := b.hn.LinkByName(attrs.Name)
	if err == nil {
		err = b.hn.LinkSetUp(br)
	}
	if err != nil {
		return err
	}
	if err := b.peer("inst0", b.inst, instIP+"/24", "10.0.0.1", br, tenMTU); err != nil {
		return err
	}
	if err := b.peer("ext0", b.extern, extHost+"/24", "", nil, 1500); err != nil {
		return err
	}
	he, err := b.lab.Handle(b.extern)
	if err != nil {
		return err
	}
	// The routed baseline: the outside knows the tenant subnet is behind
	// the router.
	if err := he.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4(10, 0, 0, 0), Mask: net.CIDRMask(24, 32)}, Gw: net.ParseIP(extIP)}); err != nil {
		return err
	}
	b.rn = &router.Node{Host: b.hn, NetNSDir: netnsDir}
	return nil
}

func (b *bench) peer(hostEnd string, other ns.NetNS, cidr, gw string, bridge netlink.Link, mtu int) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU = hostEnd, mtu
	if err := b.hn.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(other.Fd()))}); err != nil {
		return err
	}
	host, err := b.hn.LinkByName(hostEnd)
	if err != nil {
		return err
	}
	if bridge != nil {
		if err := b.hn.LinkSetMaster(host, bridge); err != nil {
			return err
		}
	}
	if err := b.hn.LinkSetUp(host); err != nil {
		return err
	}
	ho, err := b.lab.Handle(other)
	if err != nil {
		return err
	}
	eth0, err := ho.LinkByName("eth0")
	if err != nil {
		return err
	}
	addr, _ := netlink.ParseAddr(cidr)
	if err := ho.AddrAdd(eth0, addr); err != nil {
		return err
	}
	if err := ho.LinkSetUp(eth0); err != nil {
		return err
	}
	if gw != "" {
		return ho.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.ParseIP(gw)})
	}
	return nil
}

// router (re)configures the router: SNAT on or off, the floating IP or
// none.
func (b *bench) router(ctx context.Context, snat, fip bool) error {
	in := router.Inputs{
		Router: &netv1.Router{
			ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "r", UID: "be9c0000-0000-4000-8000-000000000001"},
			Spec: netv1.RouterSpec{
				ExternalGateway: &netv1.ExternalGateway{Network: netv1.NetworkRef{Namespace: "admin", Name: "public"}, EnableSNAT: &snat},
				Interfaces:      []netv1.RouterInterface{{Subnet: "sn"}},
			},
			Status: netv1.RouterStatus{NodeName: "n", ExternalIP: extIP,
				Interfaces: []netv1.RouterInterfaceStatus{{Subnet: "sn", IPAddress: "10.0.0.1"}}},
		},
		Subnets: map[string]*netv1.Subnet{"sn": {ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "sn"},
			Spec: netv1.SubnetSpec{Network: "net", CIDR: "10.0.0.0/24"}}},
		Networks: map[string]*netv1.Network{"net": {ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "net"},
			Status: netv1.NetworkStatus{SegmentationID: vni, MTU: tenMTU}}},
		ExternalNetwork: &netv1.Network{ObjectMeta: metav1.ObjectMeta{Namespace: "admin", Name: "public"},
			Spec: netv1.NetworkSpec{External: true, ProviderType: netv1.ProviderFlat, PhysicalInterface: "ext0"}},
		ExternalSubnets: []*netv1.Subnet{{ObjectMeta: metav1.ObjectMeta{Namespace: "admin", Name: "public-v4"},
			Spec: netv1.SubnetSpec{Network: "public", CIDR: "203.0.113.0/24", GatewayIP: extHost}}},
	}
	if fip {
		in.FloatingIPs = []*netv1.FloatingIP{{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "f"},
			Status: netv1.FloatingIPStatus{FloatingIPAddress: fipAddr, FixedIPAddress: instIP, Router: "r", Status: netv1.StatusActive}}}
	}
	st, err := router.Desired(in)
	if err != nil {
		return err
	}
	return b.rn.Ensure(ctx, st)
}

// listen serves the transfers in n: it reads a stream to its end and
// answers with the byte count.
func listen(n ns.NetNS, port int) error {
	var ln net.Listener
	err := n.Do(func(ns.NetNS) (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				got, _ := io.Copy(io.Discard, c)
				_ = binary.Write(c, binary.BigEndian, got)
			}()
		}
	}()
	return nil
}

// transfer sends from n to addr for d and returns the receiver's MB/s.
func transfer(n ns.NetNS, addr string, d time.Duration) (float64, error) {
	var c net.Conn
	err := n.Do(func(ns.NetNS) (err error) {
		c, err = net.DialTimeout("tcp4", addr, 2*time.Second)
		return err
	})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 128<<10)
	began := time.Now()
	for time.Since(began) < d {
		if _, err := c.Write(buf); err != nil {
			return 0, err
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	var got int64
	if err := binary.Read(c, binary.BigEndian, &got); err != nil {
		return 0, err
	}
	return float64(got) / time.Since(began).Seconds() / 1e6, nil
}

func load() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil || len(b) < 4 {
		return "?"
	}
	f := strings.Fields(string(b))
	return f[0] + " on " + fmt.Sprint(runtime.NumCPU()) + " CPUs"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return string(b[:len(b)-1])
}

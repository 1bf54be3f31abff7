package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/strata-cloud/strata/internal/network/bridge"
	"github.com/strata-cloud/strata/internal/network/ipam"
	"github.com/strata-cloud/strata/internal/network/netnstest"
)

type node struct {
	t      *testing.T
	host   ns.NetNS
	h      *netlink.Handle
	plugin *Plugin
	conf   []byte
	ipam   string
}

func newNode(t *testing.T, podCIDR string) *node {
	host := netnstest.New(t)
	dir := t.TempDir()
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"strata","type":"strata-cni","bridge":"strata0",
		"podCIDR":%q,"clusterCIDR":"10.42.0.0/16","mtu":1400,"ipamDir":%q}`, podCIDR, dir)
	return &node{t: t, host: host, h: netnstest.Handle(t, host), plugin: &Plugin{HostNS: host}, conf: []byte(conf), ipam: dir}
}

// run invokes the plugin like a runtime would, returning stdout and the error.
func (n *node) run(cmd, containerID, netnsPath string, conf []byte) ([]byte, error) {
	env := map[string]string{
		"CNI_COMMAND": cmd, "CNI_CONTAINERID": containerID, "CNI_NETNS": netnsPath, "CNI_IFNAME": "eth0",
		"CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p-" + containerID, "CNI_PATH": "/nonexistent",
	}
	if conf == nil {
		conf = n.conf
	}
	var out, stderr bytes.Buffer
	err := n.plugin.Main(context.Background(), bytes.NewReader(conf), func(k string) string { return env[k] }, &out, &stderr)
	return out.Bytes(), err
}

func (n *node) add(containerID string, pod ns.NetNS) *current.Result {
	n.t.Helper()
	out, err := n.run("ADD", containerID, pod.Path(), nil)
	if err != nil {
		n.t.Fatalf("ADD %s: %v\n%s", containerID, err, out)
	}
	var res current.Result
	if err := json.Unmarshal(out, &res); err != nil {
		n.t.Fatalf("ADD result %s: %v", out, err)
	}
	return &res
}

func (n *node) allocations() []ipam.Allocation {
	n.t.Helper()
	all, err := ipam.OpenExisting(filepath.Join(n.ipam, PodNetworkName)).List(context.Background())
	if err != nil {
		n.t.Fatal(err)
	}
	return all
}

func (n *node) linkExists(name string) bool {
	_, err := n.h.LinkByName(name)
	return err == nil
}

func withPrevResult(t *testing.T, conf []byte, res *current.Result) []byte {
	var m map[string]any
	if err := json.Unmarshal(conf, &m); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	var prev map[string]any
	_ = json.Unmarshal(b, &prev)
	m["prevResult"] = prev
	out, _ := json.Marshal(m)
	return out
}

func TestAddCheckDel(t *testing.T) {
	n := newNode(t, "10.42.3.0/24")
	pod := netnstest.New(t)

	res := n.add("c1", pod)
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.42.3.2/24" || res.IPs[0].Gateway.String() != "10.42.3.1" {
		t.Fatalf("unexpected IPs %v", res.IPs)
	}
	if len(res.Interfaces) != 3 || res.Interfaces[2].Sandbox != pod.Path() || res.Interfaces[0].Name != "strata0" {
		t.Fatalf("unexpected interfaces %v", res.Interfaces)
	}

	// host side: bridge with gateway, veth enslaved with hairpin
	br, err := n.h.LinkByName("strata0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := n.h.AddrList(br, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.42.3.1/24" {
		t.Fatalf("bridge addresses %v", addrs)
	}
	vethName := bridge.HostVethName("c1", "eth0")
	veth, err := n.h.LinkByName(vethName)
	if err != nil {
		t.Fatal(err)
	}
	if veth.Attrs().MasterIndex != br.Attrs().Index || veth.Attrs().MTU != 1400 {
		t.Fatalf("veth master %d mtu %d", veth.Attrs().MasterIndex, veth.Attrs().MTU)
	}
	if pi, err := n.h.LinkGetProtinfo(veth); err != nil || !pi.Hairpin {
		t.Fatalf("hairpin not set: %+v %v", pi, err)
	}

	// pod side
	netnstest.Do(t, pod, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		routes, _ := netlink.RouteList(l, netlink.FAMILY_V4)
		for _, r := range routes {
			if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
				if r.Gw.String() == "10.42.3.1" {
					return nil
				}
			}
		}
		return fmt.Errorf("no default route via gateway: %v", routes)
	})

	// CHECK passes, and fails once the pod address is gone
	chk := withPrevResult(t, n.conf, res)
	if out, err := n.run("CHECK", "c1", pod.Path(), chk); err != nil {
		t.Fatalf("CHECK: %v %s", err, out)
	}

	// a second pod gets the next address; ADD again for c1 is idempotent on the address
	pod2 := netnstest.New(t)
	if res2 := n.add("c2", pod2); res2.IPs[0].Address.IP.String() != "10.42.3.3" {
		t.Fatalf("second pod got %v", res2.IPs[0].Address)
	}

	netnstest.Do(t, pod, func() error {
		l, _ := netlink.LinkByName("eth0")
		return netlink.AddrDel(l, &netlink.Addr{IPNet: &res.IPs[0].Address})
	})
	if _, err := n.run("CHECK", "c1", pod.Path(), chk); err == nil {
		t.Fatal("CHECK passed without the pod address")
	}

	// DEL releases and removes, and is idempotent, also without the netns
	if out, err := n.run("DEL", "c1", pod.Path(), nil); err != nil {
		t.Fatalf("DEL: %v %s", err, out)
	}
	if n.linkExists(vethName) {
		t.Fatal("host veth left after DEL")
	}
	if out, err := n.run("DEL", "c1", "", nil); err != nil {
		t.Fatalf("second DEL: %v %s", err, out)
	}
	if out, err := n.run("DEL", "c1", "/var/run/netns/does-not-exist", nil); err != nil {
		t.Fatalf("DEL with missing netns: %v %s", err, out)
	}
	if all := n.allocations(); len(all) != 1 || all[0].ContainerID != "c2" {
		t.Fatalf("allocations after DEL: %+v", all)
	}
}

// TestAddFailureReleases makes ADD fail after the address is allocated (the pod namespace already
// has an eth0) and checks that neither the address nor a veth is left behind.
func TestAddFailureReleases(t *testing.T) {
	n := newNode(t, "10.42.4.0/24")
	pod := netnstest.New(t)
	netnstest.Do(t, pod, func() error {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = "eth0"
		return netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}) // no dummy module on these VMs
	})
	out, err := n.run("ADD", "bad", pod.Path(), nil)
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("ADD err = %v, want *types.Error", err)
	}
	var printed types.Error
	if json.Unmarshal(out, &printed) != nil || printed.Code != te.Code || printed.Msg == "" {
		t.Fatalf("stdout %q is not the CNI error", out)
	}
	if all := n.allocations(); len(all) != 0 {
		t.Fatalf("address leaked: %+v", all)
	}
	if n.linkExists(bridge.HostVethName("bad", "eth0")) {
		t.Fatal("veth leaked")
	}

	// a bad netns fails before allocation, also without leaks
	if _, err := n.run("ADD", "bad2", "/var/run/netns/does-not-exist", nil); err == nil {
		t.Fatal("ADD into a missing netns succeeded")
	}
	if all := n.allocations(); len(all) != 0 {
		t.Fatalf("address leaked: %+v", all)
	}
}

// failingAttachment stands in for a resolver that cannot reach the API.
type failingAttachment struct{}

func (failingAttachment) Resolve(context.Context, PodRef, NetworkAttachment) (NetworkAttachment, error) {
	return NetworkAttachment{}, errors.New("api unreachable")
}

// portAttachment stands in for a resolver that gives the pod a Port with a fixed IP and MAC.
type portAttachment struct{}

func (portAttachment) Resolve(_ context.Context, pod PodRef, def NetworkAttachment) (NetworkAttachment, error) {
	if pod.Namespace != "default" || !strings.HasPrefix(pod.Name, "p-") {
		return def, fmt.Errorf("unexpected pod %+v", pod)
	}
	def.Port = "port-1"
	def.IP = def.Subnet.Addr().Next().Next().Next().Next() // .4
	def.MAC = []byte{0x02, 0, 0, 0, 0, 0x44}
	return def, nil
}

func TestAttachmentHook(t *testing.T) {
	n := newNode(t, "10.42.5.0/24")
	pod := netnstest.New(t)

	n.plugin.Attachments = failingAttachment{}
	if out, err := n.run("ADD", "c1", pod.Path(), nil); err == nil || !strings.Contains(string(out), "api unreachable") {
		t.Fatalf("ADD with failing resolver: %v %s", err, out)
	}

	n.plugin.Attachments = portAttachment{}
	res := n.add("c1", pod)
	if res.IPs[0].Address.IP.String() != "10.42.5.4" || res.Interfaces[2].Mac != "02:00:00:00:00:44" {
		t.Fatalf("port attachment ignored: %v %v", res.IPs[0], res.Interfaces[2])
	}
	if all := n.allocations(); len(all) != 0 {
		t.Fatalf("fixed address must not use node IPAM: %+v", all)
	}
}

func TestVersionAndGC(t *testing.T) {
	n := newNode(t, "10.42.6.0/24")
	out, err := n.run("VERSION", "", "", nil)
	if err != nil || !strings.Contains(string(out), `"1.1.0"`) {
		t.Fatalf("VERSION: %v %s", err, out)
	}
	if out, err := n.run("BOGUS", "", "", nil); err == nil {
		t.Fatalf("unknown command accepted: %s", out)
	}
	old := []byte(strings.Replace(string(n.conf), `"1.0.0"`, `"0.3.1"`, 1))
	if out, err := n.run("CHECK", "x", "/x", old); err == nil {
		t.Fatalf("CHECK with 0.3.1 config accepted: %s", out)
	}

	podA, podB := netnstest.New(t), netnstest.New(t)
	n.add("keep", podA)
	n.add("drop", podB)
	// pretend both are old enough to collect
	for _, a := range n.allocations() {
		p := filepath.Join(n.ipam, PodNetworkName, a.IP.String())
		a.Created = a.Created.Add(-2 * gcGrace)
		b, _ := json.Marshal(a)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var m map[string]any
	_ = json.Unmarshal(n.conf, &m)
	m["cniVersion"] = "1.1.0"
	m["cni.dev/valid-attachments"] = []map[string]string{{"containerID": "keep", "ifname": "eth0"}}
	gcConf, _ := json.Marshal(m)
	if out, err := n.run("GC", "", "", gcConf); err != nil {
		t.Fatalf("GC: %v %s", err, out)
	}
	if all := n.allocations(); len(all) != 1 || all[0].ContainerID != "keep" {
		t.Fatalf("after GC: %+v", all)
	}
	if n.linkExists(bridge.HostVethName("drop", "eth0")) || !n.linkExists(bridge.HostVethName("keep", "eth0")) {
		t.Fatal("GC removed the wrong veths")
	}
}

// TestConcurrentAdds races several ADDs on a node without a bridge yet, as a runtime starting
// several pods at once does.
func TestConcurrentAdds(t *testing.T) {
	n := newNode(t, "10.42.7.0/24")
	const pods = 6
	netnses := make([]ns.NetNS, pods)
	for i := range netnses {
		netnses[i] = netnstest.New(t)
	}
	errs := make(chan error, pods)
	for i := range pods {
		go func() {
			out, err := n.run("ADD", fmt.Sprint("c", i), netnses[i].Path(), nil)
			if err != nil {
				err = fmt.Errorf("%w: %s", err, out)
			}
			errs <- err
		}()
	}
	for range pods {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, a := range n.allocations() {
		seen[a.IP.String()] = true
	}
	if len(seen) != pods {
		t.Fatalf("%d distinct addresses for %d pods", len(seen), pods)
	}
}

// TestTenantAttachment attaches pods annotated for a tenant network to their Port's segment, from
// the agent's attachment file: the Port's address and MAC, an address-less bridge, no node IPAM,
// no hairpin, the subnet's gateway and host routes; DEL and GC clean up without the file.
func TestTenantAttachment(t *testing.T) {
	n := newNode(t, "10.42.8.0/24")
	tenantDir := t.TempDir()
	var m map[string]any
	_ = json.Unmarshal(n.conf, &m)
	m["tenantAttachmentDir"] = tenantDir
	m["runtimeConfig"] = map[string]any{PodAnnotationsCapability: map[string]string{"networking.strata.io/network": "net1"}}
	conf, _ := json.Marshal(m)
	n.conf = conf

	a := sampleTenantAttachment()
	a.Pod = "p-t1"
	a.Namespace = "default"
	if err := WriteTenantAttachment(tenantDir, a); err != nil {
		t.Fatal(err)
	}
	pod := netnstest.New(t)
	res := n.add("t1", pod)
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.0.0.5/24" || res.IPs[0].Gateway.String() != "10.0.0.1" ||
		res.Interfaces[0].Name != a.Bridge || res.Interfaces[2].Mac != a.MAC || len(res.DNS.Nameservers) != 1 {
		t.Fatalf("result %+v", res)
	}
	br, err := n.h.LinkByName(a.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if addrs, _ := n.h.AddrList(br, fam); len(addrs) != 0 {
			t.Fatalf("tenant bridge has addresses %v", addrs)
		}
	}
	veth, err := n.h.LinkByName(bridge.HostVethName("t1", "eth0"))
	if err != nil {
		t.Fatal(err)
	}
	if veth.Attrs().MasterIndex != br.Attrs().Index || veth.Attrs().MTU != 1450 {
		t.Fatalf("veth master %d mtu %d", veth.Attrs().MasterIndex, veth.Attrs().MTU)
	}
	if pi, err := n.h.LinkGetProtinfo(veth); err != nil || pi.Hairpin {
		t.Fatalf("hairpin on a tenant port: %+v %v", pi, err)
	}
	if _, err := n.h.LinkByName("strata0"); err == nil {
		t.Fatal("the pod bridge was made for a tenant attachment")
	}
	if all := n.allocations(); len(all) != 0 {
		t.Fatalf("node IPAM used: %+v", all)
	}
	netnstest.Do(t, pod, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if l.Attrs().HardwareAddr.String() != a.MAC || l.Attrs().Alias != "strata-dns=10.0.0.2" {
			return fmt.Errorf("eth0 MAC %s alias %q", l.Attrs().HardwareAddr, l.Attrs().Alias)
		}
		routes, _ := netlink.RouteList(l, netlink.FAMILY_V4)
		var def, host bool
		for _, r := range routes {
			def = def || (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == "10.0.0.1"
			host = host || r.Dst != nil && r.Dst.String() == "192.168.50.0/24" && r.Gw.String() == "10.0.0.254"
		}
		if !def || !host {
			return fmt.Errorf("routes %v: default %v host route %v", routes, def, host)
		}
		return nil
	})
	if out, err := n.run("CHECK", "t1", pod.Path(), withPrevResult(t, n.conf, res)); err != nil {
		t.Fatalf("CHECK: %v %s", err, out)
	}

	// GC keeps a fresh tenant attachment the runtime has not listed yet, drops an old one
	gc := func(valid ...string) {
		t.Helper()
		var m map[string]any
		_ = json.Unmarshal(n.conf, &m)
		m["cniVersion"] = "1.1.0"
		var list []map[string]string
		for _, c := range valid {
			list = append(list, map[string]string{"containerID": c, "ifname": "eth0"})
		}
		m["cni.dev/valid-attachments"] = list
		b, _ := json.Marshal(m)
		if out, err := n.run("GC", "", "", b); err != nil {
			t.Fatalf("GC: %v %s", err, out)
		}
	}
	gc()
	if !n.linkExists(veth.Attrs().Name) {
		t.Fatal("GC removed a fresh tenant attachment")
	}
	record := filepath.Join(n.ipam, ".tenant", veth.Attrs().Name)
	old := time.Now().Add(-2 * gcGrace)
	if err := os.Chtimes(record, old, old); err != nil {
		t.Fatal(err)
	}
	gc("t1")
	if !n.linkExists(veth.Attrs().Name) {
		t.Fatal("GC removed a valid tenant attachment")
	}
	gc()
	if n.linkExists(veth.Attrs().Name) {
		t.Fatal("GC kept a tenant attachment the runtime does not know")
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Fatalf("record left: %v", err)
	}

	// an isolated subnet (no gateway): no default route; DEL removes everything, also twice
	a.Pod, a.Gateway, a.HostRoutes, a.DNSServers = "p-t2", netip.Addr{}, nil, nil
	if err := WriteTenantAttachment(tenantDir, a); err != nil {
		t.Fatal(err)
	}
	pod2 := netnstest.New(t)
	res2 := n.add("t2", pod2)
	if res2.IPs[0].Gateway != nil || len(res2.Routes) != 0 {
		t.Fatalf("isolated subnet result %+v", res2)
	}
	netnstest.Do(t, pod2, func() error {
		routes, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
		for _, r := range routes {
			if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
				return fmt.Errorf("default route %v without a gateway", r)
			}
		}
		return nil
	})
	for range 2 {
		if out, err := n.run("DEL", "t2", pod2.Path(), nil); err != nil {
			t.Fatalf("DEL: %v %s", err, out)
		}
	}
	if n.linkExists(bridge.HostVethName("t2", "eth0")) {
		t.Fatal("veth left after DEL")
	}
	if entries, _ := os.ReadDir(filepath.Join(n.ipam, ".tenant")); len(entries) != 0 {
		t.Fatalf("records left after DEL: %v", entries)
	}

	// a tenant subnet may use the node's pod range: CHECK does not look for a node allocation
	a.Pod, a.Address, a.Gateway = "p-t3", netip.MustParsePrefix("10.42.8.50/24"), netip.MustParseAddr("10.42.8.1")
	if err := WriteTenantAttachment(tenantDir, a); err != nil {
		t.Fatal(err)
	}
	pod3 := netnstest.New(t)
	res3 := n.add("t3", pod3)
	if out, err := n.run("CHECK", "t3", pod3.Path(), withPrevResult(t, n.conf, res3)); err != nil {
		t.Fatalf("CHECK of a tenant address inside the pod range: %v %s", err, out)
	}
	if all := n.allocations(); len(all) != 0 {
		t.Fatalf("node IPAM used: %+v", all)
	}

	// a pod without the annotations stays on the pod network
	delete(m, "runtimeConfig")
	n.conf, _ = json.Marshal(m)
	if res := n.add("plain", netnstest.New(t)); res.Interfaces[0].Name != "strata0" {
		t.Fatalf("unannotated pod on %s", res.Interfaces[0].Name)
	}
}

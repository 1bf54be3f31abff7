package launcher

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/strata-cloud/strata/internal/network/netnstest"
	"github.com/strata-cloud/strata/internal/vm/metadata"
)

// TestMetadataInPodNetwork builds a launcher pod's network with veths in
// place of the node and the guest's tap (a tap without QEMU has no
// carrier): node netns [node0] -- [eth0] pod netns [tap0] -- [geth0] guest
// netns. The pod's address 10.42.0.57/24 moves to the guest, which reads
// its metadata over the route its lease gives; the node, on the same
// link, gets no ARP answer for the metadata address.
func TestMetadataInPodNetwork(t *testing.T) {
	node, pod, guest := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	veth := func(a string, aNS ns.NetNS, b string, bNS ns.NetNS) {
		h := netnstest.Handle(t, aNS)
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a, MTU: 1450}, PeerName: b, PeerNamespace: netlink.NsFd(bNS.Fd())}
		if err := h.LinkAdd(v); err != nil {
			t.Fatalf("veth %s-%s: %v", a, b, err)
		}
	}
	veth("node0", node, "eth0", pod)
	veth("geth0", guest, "tap0", pod)
	ipIn := func(n ns.NetNS, cmds ...func() error) {
		t.Helper()
		netnstest.Do(t, n, func() error {
			for _, c := range cmds {
				if err := c(); err != nil {
					return err
				}
			}
			return nil
		})
	}
	addr := func(dev, cidr string) func() error {
		return func() error {
			l, err := netlink.LinkByName(dev)
			if err != nil {
				return err
			}
			a, _ := netlink.ParseAddr(cidr)
			if err := netlink.AddrAdd(l, a); err != nil {
				return err
			}
			return netlink.LinkSetUp(l)
		}
	}
	// Route dst on dev's link, or via gw.
	route := func(dev, dst, gw string) func() error {
		return func() error {
			l, err := netlink.LinkByName(dev)
			if err != nil {
				return err
			}
			_, n, _ := net.ParseCIDR(dst)
			r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: n, Scope: netlink.SCOPE_LINK}
			if gw != "" {
				r.Gw, r.Scope = net.ParseIP(gw), netlink.SCOPE_UNIVERSE
			}
			return netlink.RouteAdd(r)
		}
	}
	ipIn(node, addr("node0", "10.42.0.1/24"))
	ipIn(pod, addr("eth0", "10.42.0.57/24"), route("eth0", "0.0.0.0/0", "10.42.0.1"))

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// The launcher's log, which the server's goroutine writes (a file: no
	// lock needed to read it meanwhile).
	logFile, err := os.Create(filepath.Join(t.TempDir(), "launcher.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	r := &runner{cfg: Config{Stdout: logFile, RunDir: t.TempDir(), Spec: Spec{
		Name: "web1", NICs: []NIC{{Tap: "tap0", PodInterface: "eth0"}},
		CloudInit: &CloudInit{InstanceID: "uid-1234", Hostname: "web1", PublicKeys: []string{"ssh-ed25519 AAAA alice"}, UserData: "#!/bin/sh\n"},
	}}}
	var br string
	var guestMAC net.HardwareAddr
	netnstest.Do(t, pod, func() error {
		lease, b, err := bindPodInterface(r.cfg.RunDir, "eth0", "tap0", nil)
		if err != nil {
			return err
		}
		br = b
		lease = r.startMetadata(ctx, b, "eth0", lease)
		if len(lease.Routes) != 1 || lease.Routes[0].Dst != netip.MustParsePrefix("169.254.169.254/32") || lease.Routes[0].Via.IsValid() {
			return fmt.Errorf("lease routes %v, want 169.254.169.254/32 on the link; launcher said:\n%s", lease.Routes, launcherLog(logFile))
		}
		guestMAC = lease.MAC
		return nil
	})
	if br != "br-eth0" {
		t.Fatalf("bridge %q", br)
	}
	// The guest configures what the lease says.
	ipIn(guest, func() error {
		l, err := netlink.LinkByName("geth0")
		if err != nil {
			return err
		}
		return netlink.LinkSetHardwareAddr(l, guestMAC)
	}, addr("geth0", "10.42.0.57/24"), route("geth0", "169.254.169.254/32", ""))
	ipIn(node, route("node0", "169.254.169.254/32", ""))

	var body string
	ipIn(guest, func() (err error) {
		body, err = httpGet("/openstack/latest/meta_data.json", 5*time.Second)
		return err
	})
	if !strings.Contains(body, `"uuid":"uid-1234"`) || !strings.Contains(body, `"name":"web1"`) {
		t.Errorf("the guest read meta_data.json = %q", body)
	}
	ipIn(guest, func() (err error) {
		body, err = httpGet("/latest/meta-data/public-keys/0/openssh-key", 5*time.Second)
		return err
	})
	if body != "ssh-ed25519 AAAA alice\n" {
		t.Errorf("the guest read its key = %q", body)
	}

	// The node (anything beyond the pod interface) gets nothing: its ARP
	// request for the metadata address goes unanswered.
	ipIn(node, func() error {
		if body, err := httpGet("/latest/meta-data/instance-id", 2*time.Second); err == nil {
			return fmt.Errorf("the node read the metadata: %q", body)
		}
		neighs, err := netlink.NeighList(0, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if n.IP.Equal(metadata.Addr.AsSlice()) && n.HardwareAddr != nil && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0 {
				return fmt.Errorf("the node learned %s at %s: the pod answered its ARP", metadata.Addr, n.HardwareAddr)
			}
		}
		return nil
	})
	if s := launcherLog(logFile); !strings.Contains(s, "metadata service on http://169.254.169.254/ for 10.42.0.57") ||
		!strings.Contains(s, "GET /openstack/latest/meta_data.json from 10.42.0.57:") {
		t.Errorf("launcher log:\n%s", s)
	}
}

// httpGet fetches path from the metadata address on the calling thread
// (http.Client dials on other threads, maybe in other namespaces).
func httpGet(path string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(metadata.Addr, metadata.Port).String(), timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: 169.254.169.254\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(b), err
}

func launcherLog(f *os.File) string {
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return err.Error()
	}
	return string(b)
}

package network_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/strata-cloud/strata/internal/network/bridge"
	"github.com/strata-cloud/strata/internal/network/cni"
	"github.com/strata-cloud/strata/internal/network/ipam"
	"github.com/strata-cloud/strata/internal/network/netlab"
	"github.com/strata-cloud/strata/internal/network/netnstest"
	"github.com/strata-cloud/strata/internal/network/overlay"
)

// TestTwoNodes joins two "nodes" (network namespaces wired by an underlay veth) with the VXLAN
// overlay, attaches one pod to each through the CNI plugin, and checks pod-to-pod traffic across
// the overlay (unNATed) and pod-to-outside traffic (masqueraded), then detaches both pods.
func TestTwoNodes(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	lab := netlab.New()
	t.Cleanup(lab.Close)
	a, b, err := lab.TwoNodes(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	nodes := []*netlab.Node{a, b}

	podA, podB := netnstest.New(t), netnstest.New(t)
	resA := cniRun(t, a, "ADD", "pod-a", podA)
	resB := cniRun(t, b, "ADD", "pod-b", podB)
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
		l, err := n.Handle.LinkByName(overlay.DeviceName)
		if err != nil || l.Attrs().Statistics == nil || l.Attrs().Statistics.TxPackets == 0 || l.Attrs().Statistics.RxPackets == 0 {
			t.Fatalf("%s: no traffic through %s: %v", n.Name, overlay.DeviceName, err)
		}
	}
	// pod A -> node B's underlay address leaves the cluster CIDR: masqueraded to node A's address
	if got := roundTrip(t, b.NS, podA, net.JoinHostPort(b.IP.String(), "7001")); got != a.IP.String() {
		t.Fatalf("node B saw %s, want node A's %s (masquerade)", got, a.IP)
	}

	// detach
	cniRun(t, a, "DEL", "pod-a", podA)
	cniRun(t, b, "DEL", "pod-b", podB)
	for _, tc := range []struct {
		n  *netlab.Node
		id string
	}{{a, "pod-a"}, {b, "pod-b"}} {
		if _, err := tc.n.Handle.LinkByName(bridge.HostVethName(tc.id, "eth0")); err == nil {
			t.Fatalf("%s: veth left on %s", tc.id, tc.n.Name)
		}
		left, err := ipam.OpenExisting(filepath.Join(tc.n.IPAMDir, cni.PodNetworkName)).List(ctx)
		if err != nil || len(left) != 0 {
			t.Fatalf("%s: allocations left %v %v", tc.n.Name, left, err)
		}
	}
}

func cniRun(t *testing.T, n *netlab.Node, cmd, containerID string, pod ns.NetNS) *current.Result {
	t.Helper()
	res, err := n.CNI(context.Background(), cmd, containerID, pod)
	if err != nil {
		t.Fatal(err)
	}
	return res
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

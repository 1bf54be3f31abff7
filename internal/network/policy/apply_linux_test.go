package policy

import (
	"context"
	"net/netip"
	"os"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/strata-cloud/strata/internal/network/netlab"
	"github.com/strata-cloud/strata/internal/network/netnstest"
)

// TestApplyEnforces builds two lab nodes with Strata's real pod network (bridge, veths from the
// CNI plugin, VXLAN overlay), applies compiled policies on node A and checks real TCP
// connections: bridged pod-to-pod on node A (br_netfilter), routed from node B's pod over the
// overlay, and from a pod to node A itself (input hook), before and after each change.
func TestApplyEnforces(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	lab := netlab.New()
	t.Cleanup(lab.Close)
	a, b, err := lab.TwoNodes(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	netnstest.Do(t, a.NS, func() error {
		return os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-iptables", []byte("1"), 0o644)
	})
	addPod := func(n *netlab.Node, id string) (ns.NetNS, netip.Addr) {
		p, ip, err := lab.AddPod(ctx, n, id)
		if err != nil {
			t.Fatal(err)
		}
		return p, ip
	}
	web, webIP := addPod(a, "web")
	friend, friendIP := addPod(a, "friend")
	stranger, strangerIP := addPod(a, "stranger")
	remote, remoteIP := addPod(b, "remote")
	gateway := a.PodCIDR.Addr().Next() // the bridge's address: where cluster DNS listens
	netnstest.ServeLine(t, web, netip.AddrPortFrom(webIP, 80))
	netnstest.ServeLine(t, web, netip.AddrPortFrom(webIP, 81))
	netnstest.ServeLine(t, a.NS, netip.AddrPortFrom(gateway, 53))
	netnstest.ServeLine(t, friend, netip.AddrPortFrom(friendIP, 80))

	mkPod := func(name string, ip netip.Addr, node string, role string) *corev1.Pod {
		return pod("prod", name, ip.String(), node, map[string]string{"role": role})
	}
	c := Cluster{
		Node:       a.Name,
		Namespaces: []*corev1.Namespace{namespace("prod", nil)},
		Pods: []*corev1.Pod{
			mkPod("web", webIP, a.Name, "web"), mkPod("friend", friendIP, a.Name, "friend"),
			mkPod("stranger", strangerIP, a.Name, "stranger"), mkPod("remote", remoteIP, b.Name, "friend"),
		},
	}
	opt := nftables.WithNetNSFd(int(a.NS.Fd()))
	apply := func(policies ...*networkingv1.NetworkPolicy) {
		t.Helper()
		c.Policies = policies
		if err := Apply(ctx, Render(Compile(c)), opt); err != nil {
			t.Fatal(err)
		}
	}
	type check struct {
		name  string
		from  ns.NetNS
		to    netip.AddrPort
		reach bool
	}
	webPort := netip.AddrPortFrom(webIP, 80)
	expect := func(step string, checks ...check) {
		t.Helper()
		for _, ch := range checks {
			err := netnstest.DialLine(ch.from, ch.to)
			if ch.reach && err != nil {
				t.Errorf("%s: %s -> %s: %v, want reachable", step, ch.name, ch.to, err)
			}
			if !ch.reach && err == nil {
				t.Errorf("%s: %s -> %s reachable, want blocked", step, ch.name, ch.to)
			}
		}
	}

	apply() // no policy: an empty table
	expect("no policy",
		check{"friend", friend, webPort, true}, check{"stranger", stranger, webPort, true},
		check{"remote", remote, webPort, true}, check{"stranger to DNS", stranger, netip.AddrPortFrom(gateway, 53), true})

	apply(np("prod", "deny", sel("role", "web"), ingressOnly, nil, nil))
	expect("deny all ingress",
		check{"friend", friend, webPort, false}, check{"stranger", stranger, webPort, false},
		check{"remote", remote, webPort, false}, check{"web to friend", web, netip.AddrPortFrom(friendIP, 80), true})

	// Allowed peers on port 80 only; web may not open connections itself, but its replies pass.
	apply(np("prod", "allow", sel("role", "web"), both, []networkingv1.NetworkPolicyIngressRule{{
		From:  []networkingv1.NetworkPolicyPeer{{PodSelector: sel("role", "friend")}},
		Ports: []networkingv1.NetworkPolicyPort{tcp(80)},
	}}, nil))
	expect("allow friends on 80",
		check{"friend", friend, webPort, true}, check{"remote friend", remote, webPort, true},
		check{"stranger", stranger, webPort, false}, check{"friend on 81", friend, netip.AddrPortFrom(webIP, 81), false},
		check{"web to friend (egress isolated)", web, netip.AddrPortFrom(friendIP, 80), false})

	apply(np("prod", "no-egress", sel("role", "stranger"), egressOnly, nil, nil))
	expect("deny egress",
		check{"stranger to DNS on the node", stranger, netip.AddrPortFrom(gateway, 53), false},
		check{"stranger to web", stranger, webPort, false},
		check{"friend to DNS on the node", friend, netip.AddrPortFrom(gateway, 53), true})

	if err := Remove(ctx, opt); err != nil {
		t.Fatal(err)
	}
	expect("table removed", check{"stranger", stranger, webPort, true}, check{"stranger to DNS", stranger, netip.AddrPortFrom(gateway, 53), true})
	conn, err := nftables.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if tables, _ := conn.ListTablesOfFamily(nftables.TableFamilyINet); len(tables) != 0 {
		t.Errorf("inet tables left: %v", tables)
	}
}

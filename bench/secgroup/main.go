// Command secgroup measures security group enforcement on a node at the size the issue sets
// (1,000 rules, 100 ports on the node; target: rule change to enforcement ≤ 1 s): how long
// package secgroup takes to compile groups and ports into the node's nftables ruleset and to
// replace the table in one transaction, and how long its node loop (Run, fed by a fake API
// client in-process, so without the API server's watch latency) takes from a SecurityGroup
// update to the new table being installed. The table goes into a throw-away network namespace,
// never the host's. It needs root; it never fails on a figure.
//
//	go run ./bench/secgroup [-ports 100] [-rules 1000] [-groups 20] [-per-port 2] [-remote 400] [-changes 20]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/netlab"
	"github.com/strata-cloud/strata/internal/network/policy"
	"github.com/strata-cloud/strata/internal/network/secgroup"
	"github.com/strata-cloud/strata/internal/network/tenant"
)

const (
	nodeName  = "bench-node"
	namespace = "proj"
	nNetworks = 4
)

func main() {
	ports := flag.Int("ports", 100, "ports on the node")
	rules := flag.Int("rules", 1000, "rules over all groups")
	groups := flag.Int("groups", 20, "security groups")
	perPort := flag.Int("per-port", 2, "groups of each port")
	remote := flag.Int("remote", 400, "ports on other nodes (remote group members)")
	changes := flag.Int("changes", 20, "single-rule changes to time")
	flag.Parse()
	if err := run(*ports, *rules, *groups, *perPort, *remote, *changes); err != nil {
		fmt.Fprintln(os.Stderr, "secgroup:", err)
		os.Exit(1)
	}
}

func run(nPorts, nRules, nGroups, perPort, nRemote, nChanges int) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (a network namespace and nftables)")
	}
	ctx := context.Background()
	lab := netlab.New()
	defer lab.Close()
	netns, err := lab.NewNS()
	if err != nil {
		return err
	}
	opt := nftables.WithNetNSFd(int(netns.Fd()))
	in := input(nPorts, nRules, nGroups, perPort, nRemote)

	// 1. The pure stages and one apply, called directly.
	began := time.Now()
	eps := secgroup.Compile(in)
	compiled := time.Since(began)
	rs := secgroup.Render(eps)
	rendered := time.Since(began) - compiled
	began = time.Now()
	if err := policy.Apply(ctx, rs, opt); err != nil {
		return err
	}
	firstApply := time.Since(began)
	nftRules, elems := rs.Size()
	fmt.Printf("input: %d ports on the node (+%d remote) on %d networks, %d groups with %d rules, %d groups per port\n",
		nPorts, nRemote, nNetworks, nGroups, nRules, perPort)
	fmt.Printf("ruleset: %d endpoints, %d chains, %d nft rules, %d sets/maps with %d elements\n",
		len(eps), len(rs.Chains), nftRules, len(rs.Sets), elems)
	fmt.Printf("first install: compile %s, render %s, nft apply %s\n", ms(compiled), ms(rendered), ms(firstApply))

	var compile, apply, total []time.Duration
	for i := range nChanges {
		g := in.Groups[i%len(in.Groups)]
		g.Spec.Rules[0].RemoteIPPrefix = fmt.Sprintf("198.18.%d.0/24", i%256)
		began := time.Now()
		rs := secgroup.Render(secgroup.Compile(in))
		mid := time.Since(began)
		if err := policy.Apply(ctx, rs, opt); err != nil {
			return err
		}
		compile, apply, total = append(compile, mid), append(apply, time.Since(began)-mid), append(total, time.Since(began))
	}
	fmt.Printf("direct, rule change -> enforced (%d changes): compile+render median %s, nft apply median %s max %s, total median %s max %s\n",
		nChanges, ms(median(compile)), ms(median(apply)), ms(slices.Max(apply)), ms(median(total)), ms(slices.Max(total)))

	// 2. The node loop: update a SecurityGroup through the (fake) API and wait for the table
	// that enforces it.
	client, err := fakeClient(in)
	if err != nil {
		return err
	}
	type applied struct {
		text  string
		apply time.Duration
		at    time.Time
	}
	results := make(chan applied, 64)
	loopCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- secgroup.Run(loopCtx, secgroup.Config{NodeName: nodeName, Client: client,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), NFT: []nftables.ConnOption{opt},
			Applied: func(text string, d time.Duration) { results <- applied{text, d, time.Now()} }})
	}()
	defer func() {
		cancel()
		<-done
	}()
	wait := func(marker string) (applied, error) {
		timeout := time.After(30 * time.Second)
		for {
			select {
			case r := <-results:
				if strings.Contains(r.text, marker) {
					return r, nil
				}
			case <-timeout:
				return applied{}, fmt.Errorf("no ruleset with %q applied", marker)
			}
		}
	}
	if _, err := wait("table inet"); err != nil {
		return err
	}
	var e2e, loopApply []time.Duration
	res := client.Resource(netv1.GroupVersion.WithResource("securitygroups")).Namespace(namespace)
	for i := range nChanges {
		g := in.Groups[i%len(in.Groups)].DeepCopy()
		// A remote no other rule has: its own nft rule, which the ruleset text shows.
		g.Spec.Rules[0].RemoteIPPrefix = fmt.Sprintf("198.19.%d.0/24", i%256)
		u, err := unstruct(g, "SecurityGroup")
		if err != nil {
			return err
		}
		began := time.Now()
		if _, err := res.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
			return err
		}
		r, err := wait(fmt.Sprintf("ip saddr 198.19.%d.0-198.19.%d.255 ", i%256, i%256))
		if err != nil {
			return err
		}
		e2e, loopApply = append(e2e, r.at.Sub(began)), append(loopApply, r.apply)
	}
	fmt.Printf("node loop, SecurityGroup update -> table installed (%d changes, 20 ms debounce included): median %s max %s; nft apply median %s max %s (target ≤ 1000 ms)\n",
		nChanges, ms(median(e2e)), ms(slices.Max(e2e)), ms(median(loopApply)), ms(slices.Max(loopApply)))
	return policy.RemoveTable(ctx, secgroup.TableName, opt)
}

// input makes nNetworks networks, nGroups groups sharing nRules rules (each a mix of: ingress from prefixes,
// ingress port ranges from another group, icmp, egress to prefixes), nPorts ports on the node
// and nRemote elsewhere, each in perPort consecutive groups, round-robin over the networks.
func input(nPorts, nRules, nGroups, perPort, nRemote int) secgroup.Input {
	in := secgroup.Input{Node: nodeName, Networks: map[string]secgroup.Network{}}
	for i := range nNetworks {
		in.Networks[fmt.Sprintf("%s/net-%d", namespace, i)] = secgroup.Network{Bridge: tenant.BridgeName(int32(100 + i)), Zone: secgroup.ZoneFor(int32(100 + i))}
	}
	for g := range nGroups {
		in.Groups = append(in.Groups, &netv1.SecurityGroup{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: fmt.Sprintf("g-%d", g)}})
	}
	for r := range nRules {
		g := in.Groups[r%nGroups]
		k := int32(r / nGroups)
		var rule netv1.SecurityGroupRule
		switch k % 4 { // rule 0 of each group is an ingress one from a prefix: the change loops edit it
		case 0:
			rule = netv1.SecurityGroupRule{Direction: "ingress", Protocol: "tcp", PortRangeMin: ptr(1000 + k),
				RemoteIPPrefix: fmt.Sprintf("172.%d.%d.0/24", 16+r%16, k%256)}
		case 1:
			rule = netv1.SecurityGroupRule{Direction: "ingress", Protocol: "tcp", PortRangeMin: ptr(2000 + 10*k), PortRangeMax: ptr(2009 + 10*k),
				RemoteGroup: fmt.Sprintf("g-%d", (r+1)%nGroups)}
		case 2:
			rule = netv1.SecurityGroupRule{Direction: "ingress", Protocol: "icmp", PortRangeMin: ptr(k % 16)}
		default:
			rule = netv1.SecurityGroupRule{Direction: "egress", Protocol: "udp", PortRangeMin: ptr(3000 + k),
				RemoteIPPrefix: fmt.Sprintf("10.%d.%d.0/24", r%256, k%256)}
		}
		g.Spec.Rules = append(g.Spec.Rules, rule)
	}
	for i := range nPorts + nRemote {
		node := nodeName
		if i >= nPorts {
			node = "elsewhere"
		}
		var names []string
		for j := range perPort {
			names = append(names, fmt.Sprintf("g-%d", (i+j)%nGroups))
		}
		in.Ports = append(in.Ports, &netv1.Port{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: fmt.Sprintf("port-%d", i)},
			Spec:       netv1.PortSpec{Network: fmt.Sprintf("net-%d", i%nNetworks), SecurityGroups: names},
			Status: netv1.PortStatus{NodeName: node, MACAddress: fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256),
				FixedIPs: []netv1.FixedIP{{IPAddress: fmt.Sprintf("192.168.%d.%d", i/250, 2+i%250)}}},
		})
	}
	return in
}

// fakeClient serves the input's objects (and its networks, with their VNIs) as the API would.
func fakeClient(in secgroup.Input) (*dynamicfake.FakeDynamicClient, error) {
	var objs []runtime.Object
	for i := range nNetworks {
		n := &netv1.Network{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: fmt.Sprintf("net-%d", i)},
			Spec: netv1.NetworkSpec{ProviderType: netv1.ProviderVXLAN}, Status: netv1.NetworkStatus{SegmentationID: int32(100 + i)}}
		u, err := unstruct(n, "Network")
		if err != nil {
			return nil, err
		}
		objs = append(objs, u)
	}
	for _, g := range in.Groups {
		u, err := unstruct(g, "SecurityGroup")
		if err != nil {
			return nil, err
		}
		objs = append(objs, u)
	}
	for _, p := range in.Ports {
		u, err := unstruct(p, "Port")
		if err != nil {
			return nil, err
		}
		objs = append(objs, u)
	}
	gvr := netv1.GroupVersion.WithResource
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		gvr("securitygroups"): "SecurityGroupList", gvr("ports"): "PortList", gvr("networks"): "NetworkList",
	}, objs...), nil
}

func unstruct(o any, kind string) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(netv1.GroupVersion.WithKind(kind))
	return u, nil
}

func ptr(v int32) *int32 { return &v }

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

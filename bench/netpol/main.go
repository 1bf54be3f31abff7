// Command netpol measures NetworkPolicy enforcement on a node: how long package policy takes to
// compile a cluster's policies into the node's nftables ruleset, and to replace the table in one
// transaction, at the size the issue sets (1,000 rules, 100 ports — pods — on the node; target:
// rule change to enforcement ≤ 1 s). The table is installed in a throw-away network namespace,
// never the host's. It needs root; it never fails on a figure.
//
//	go run ./bench/netpol [-pods 100] [-rules 1000] [-remote 400] [-changes 20]
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/strata-cloud/strata/internal/network/netlab"
	"github.com/strata-cloud/strata/internal/network/policy"
)

const nodeName = "bench-node"

func main() {
	pods := flag.Int("pods", 100, "pods on the node, each selected by one policy")
	rules := flag.Int("rules", 1000, "ingress and egress rules over all policies")
	remote := flag.Int("remote", 400, "pods on other nodes (peers)")
	changes := flag.Int("changes", 20, "single-rule changes to time")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "netpol:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*pods, *rules, *remote, *changes); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "netpol:", err)
		os.Exit(1)
	}
}

func run(nPods, nRules, nRemote, nChanges int) error {
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
	c := cluster(nPods, nRules, nRemote)

	began := time.Now()
	eps := policy.Compile(c)
	compiled := time.Since(began)
	rs := policy.Render(eps)
	rendered := time.Since(began) - compiled
	began = time.Now()
	if err := policy.Apply(ctx, rs, opt); err != nil {
		return err
	}
	firstApply := time.Since(began)
	nftRules, elems := rs.Size()
	fmt.Printf("cluster: %d pods on the node, %d remote, %d policies with %d rules\n", nPods, nRemote, len(c.Policies), nRules)
	fmt.Printf("ruleset: %d endpoints, %d chains, %d nft rules, %d sets/maps with %d elements\n",
		len(eps), len(rs.Chains), nftRules, len(rs.Sets), elems)
	fmt.Printf("first install: compile %s, render %s, nft apply %s\n", ms(compiled), ms(rendered), ms(firstApply))

	// A rule change: one port of one policy, then recompile everything and replace the table,
	// as the node's syncer does.
	var compile, apply, total []time.Duration
	for i := range nChanges {
		port := intstr.FromInt32(int32(20000 + i))
		c.Policies[i%len(c.Policies)].Spec.Ingress[0].Ports[0].Port = &port
		began := time.Now()
		rs := policy.Render(policy.Compile(c))
		mid := time.Since(began)
		if err := policy.Apply(ctx, rs, opt); err != nil {
			return err
		}
		compile, apply, total = append(compile, mid), append(apply, time.Since(began)-mid), append(total, time.Since(began))
	}
	fmt.Printf("rule change -> enforced (%d changes): compile+render median %s, nft apply median %s max %s, total median %s max %s (target ≤ 1000 ms)\n",
		nChanges, ms(median(compile)), ms(median(apply)), ms(slices.Max(apply)), ms(median(total)), ms(slices.Max(total)))
	return policy.Remove(ctx, opt)
}

// cluster makes nPods local pods (10.42.1.0/24 upwards) and nRemote remote ones in 10
// namespaces, and one policy per local pod; the rules are spread over the policies, alternating
// ingress from pod/namespace selectors and ipBlocks with port ranges, and egress to selected pods
// on a named port.
func cluster(nPods, nRules, nRemote int) policy.Cluster {
	c := policy.Cluster{Node: nodeName}
	for i := range 10 {
		c.Namespaces = append(c.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("ns-%d", i), Labels: map[string]string{"tier": fmt.Sprint(i % 3)}}})
	}
	base := netip.MustParseAddr("10.42.1.2")
	addPod := func(i int, node string) {
		ip := base
		for range i {
			ip = ip.Next()
		}
		c.Pods = append(c.Pods, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Namespace: fmt.Sprintf("ns-%d", i%10),
				Labels: map[string]string{"app": fmt.Sprintf("app-%d", i%25), "pod": fmt.Sprint(i)}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c",
				Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: int32(9000 + i%50)}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: ip.String()}}},
		})
	}
	for i := range nPods {
		addPod(i, nodeName)
	}
	for i := range nRemote {
		addPod(nPods+i, "elsewhere")
	}
	tcp := func(p, end int32) networkingv1.NetworkPolicyPort {
		port := intstr.FromInt32(p)
		np := networkingv1.NetworkPolicyPort{Port: &port}
		if end > p {
			np.EndPort = &end
		}
		return np
	}
	for i := range nPods {
		c.Policies = append(c.Policies, &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("np-%d", i), Namespace: fmt.Sprintf("ns-%d", i%10)},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": fmt.Sprint(i)}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			},
		})
	}
	for r := range nRules {
		np := c.Policies[r%nPods]
		k := int32(r / nPods)
		switch r % 4 {
		case 0, 1:
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", (r+int(k))%25)}}}},
				Ports: []networkingv1.NetworkPolicyPort{tcp(1000+k, 0), tcp(2000+10*k, 2009+10*k)},
			})
		case 2:
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{
				From: []networkingv1.NetworkPolicyPeer{
					{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": fmt.Sprint(r % 3)}}},
					{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("172.%d.0.0/16", 16+r%16), Except: []string{fmt.Sprintf("172.%d.%d.0/24", 16+r%16, k)}}},
				},
				Ports: []networkingv1.NetworkPolicyPort{tcp(443, 0)},
			})
		default:
			metrics := intstr.FromString("metrics")
			np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{
				To:    []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", r%25)}}, NamespaceSelector: &metav1.LabelSelector{}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &metrics}},
			})
		}
	}
	// Every policy needs an ingress rule for the change loop to edit.
	for _, np := range c.Policies {
		if len(np.Spec.Ingress) == 0 {
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{Ports: []networkingv1.NetworkPolicyPort{tcp(80, 0)}})
		}
	}
	return c
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

package policy

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

const node = "node-a"

func pod(ns, name, ip, nodeName string, lbls map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls},
		Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Ports: ports}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

func namespace(name string, lbls map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}
}

func sel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

func tcp(port int) networkingv1.NetworkPolicyPort {
	p := intstr.FromInt32(int32(port))
	return networkingv1.NetworkPolicyPort{Port: &p}
}

func proto(pr corev1.Protocol, port int) networkingv1.NetworkPolicyPort {
	p := tcp(port)
	p.Protocol = &pr
	return p
}

func named(name string) networkingv1.NetworkPolicyPort {
	p := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Port: &p}
}

func portRange(first, last int32) networkingv1.NetworkPolicyPort {
	p := tcp(int(first))
	p.EndPort = &last
	return p
}

func np(ns, name string, podSel *metav1.LabelSelector, types []networkingv1.PolicyType, in []networkingv1.NetworkPolicyIngressRule, out []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: *podSel, PolicyTypes: types, Ingress: in, Egress: out},
	}
}

var (
	ingressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egressOnly  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	both        = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
)

// The cluster: namespaces prod (team=a) and dev (team=b); web (local, prod, app=web, port
// "http" 8080), db (local, prod, app=db, port "pg" 5432), client (remote, prod, role=client),
// devpod (remote, dev, role=client), outside (an address of no pod).
const (
	webIP     = "10.42.1.10"
	dbIP      = "10.42.1.11"
	clientIP  = "10.42.2.20"
	devIP     = "10.42.2.21"
	outsideIP = "192.0.2.7"
	dnsIP     = "10.42.1.1" // the node's bridge address: cluster DNS
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func cluster(policies ...*networkingv1.NetworkPolicy) Cluster {
	return Cluster{
		Node: node,
		Namespaces: []*corev1.Namespace{
			namespace("prod", map[string]string{"team": "a"}),
			namespace("dev", map[string]string{"team": "b"}),
		},
		Pods: []*corev1.Pod{
			pod("prod", "web", webIP, node, map[string]string{"app": "web"}, corev1.ContainerPort{Name: "http", ContainerPort: 8080}),
			pod("prod", "db", dbIP, node, map[string]string{"app": "db"}, corev1.ContainerPort{Name: "pg", ContainerPort: 5432}),
			pod("prod", "client", clientIP, "node-b", map[string]string{"role": "client"}),
			pod("dev", "devpod", devIP, "node-b", map[string]string{"role": "client"}),
		},
		Policies: policies,
	}
}

type flow struct {
	src, dst string
	proto    uint8
	port     uint16
	want     bool
}

func conn(src, dst string, port uint16, want bool) flow {
	return flow{src: src, dst: dst, proto: ProtoTCP, port: port, want: want}
}

func TestCompileSemantics(t *testing.T) {
	udp, sctp := corev1.ProtocolUDP, corev1.ProtocolSCTP
	tests := []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		mutate   func(*Cluster)
		flows    []flow
	}{{
		name: "no policy: everything passes",
		flows: []flow{
			conn(clientIP, webIP, 80, true), conn(webIP, outsideIP, 443, true), conn(devIP, dbIP, 5432, true),
		},
	}, {
		name:     "deny all ingress isolates the selected pod only",
		policies: []*networkingv1.NetworkPolicy{np("prod", "deny", sel("app", "web"), ingressOnly, nil, nil)},
		flows: []flow{
			conn(clientIP, webIP, 80, false), conn(dbIP, webIP, 80, false),
			conn(webIP, outsideIP, 80, true), // egress not isolated
			conn(clientIP, dbIP, 5432, true), // db not selected
			{src: clientIP, dst: webIP, proto: ProtoUDP, port: 53, want: false},
		},
	}, {
		name:     "empty podSelector selects every pod of the namespace only",
		policies: []*networkingv1.NetworkPolicy{np("dev", "deny", sel(), ingressOnly, nil, nil)},
		flows:    []flow{conn(clientIP, webIP, 80, true), conn(clientIP, dbIP, 5432, true)},
	}, {
		name: "allow from a pod label in the policy's namespace",
		policies: []*networkingv1.NetworkPolicy{np("prod", "allow", sel("app", "web"), ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("role", "client")}}}}, nil)},
		flows: []flow{
			conn(clientIP, webIP, 80, true), {src: clientIP, dst: webIP, proto: 1, want: true}, // any protocol
			conn(devIP, webIP, 80, false), // same label, other namespace
			conn(dbIP, webIP, 80, false), conn(outsideIP, webIP, 80, false),
		},
	}, {
		name: "namespaceSelector alone: every pod of matching namespaces",
		policies: []*networkingv1.NetworkPolicy{np("prod", "allow", sel("app", "web"), ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", "b")}}}}, nil)},
		flows: []flow{conn(devIP, webIP, 80, true), conn(clientIP, webIP, 80, false)},
	}, {
		name: "namespaceSelector and podSelector in one peer: both must match",
		policies: []*networkingv1.NetworkPolicy{np("prod", "allow", sel("app", "web"), ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel(), PodSelector: sel("role", "client")}}}}, nil)},
		flows: []flow{conn(devIP, webIP, 80, true), conn(clientIP, webIP, 80, true), conn(dbIP, webIP, 80, false)},
	}, {
		name: "ipBlock with except",
		policies: []*networkingv1.NetworkPolicy{np("prod", "allow", sel("app", "web"), ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.42.0.0/16", Except: []string{"10.42.2.21/32"}}}}}}, nil)},
		flows: []flow{conn(clientIP, webIP, 80, true), conn(devIP, webIP, 80, false), conn(outsideIP, webIP, 80, false)},
	}, {
		name: "ports: number, protocol, endPort, named port on the selected pod",
		policies: []*networkingv1.NetworkPolicy{np("prod", "allow", sel("app", "web"), ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{tcp(80), proto(udp, 53), portRange(9000, 9010), named("http"), named("pg")}}}, nil)},
		flows: []flow{
			conn(clientIP, webIP, 80, true), conn(clientIP, webIP, 81, false),
			{src: clientIP, dst: webIP, proto: ProtoUDP, port: 53, want: true},
			{src: clientIP, dst: webIP, proto: ProtoUDP, port: 80, want: false},
			conn(clientIP, webIP, 9000, true), conn(clientIP, webIP, 9010, true), conn(clientIP, webIP, 9011, false),
			conn(clientIP, webIP, 8080, true),  // web's "http"
			conn(clientIP, webIP, 5432, false), // "pg" is db's, not web's
		},
	}, {
		name: "port without number: every port of the protocol",
		policies: []*networkingv1.NetworkPolicy{np("prod", "allow", sel("app", "web"), ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &sctp}}}}, nil)},
		flows: []flow{
			{src: clientIP, dst: webIP, proto: ProtoSCTP, port: 7, want: true}, conn(clientIP, webIP, 7, false),
		},
	}, {
		name: "peers and ports in one rule: both must match",
		policies: []*networkingv1.NetworkPolicy{np("prod", "allow", sel("app", "web"), ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("role", "client")}}, Ports: []networkingv1.NetworkPolicyPort{tcp(80)}}}, nil)},
		flows: []flow{conn(clientIP, webIP, 80, true), conn(clientIP, webIP, 22, false), conn(dbIP, webIP, 80, false)},
	}, {
		name: "several policies: union of their rules",
		policies: []*networkingv1.NetworkPolicy{
			np("prod", "a", sel("app", "web"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{tcp(80)}}}, nil),
			np("prod", "b", sel(), ingressOnly, []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: outsideIP + "/32"}}}}}, nil),
		},
		flows: []flow{conn(clientIP, webIP, 80, true), conn(outsideIP, webIP, 22, true), conn(clientIP, webIP, 22, false), conn(outsideIP, dbIP, 1, true), conn(clientIP, dbIP, 5432, false)},
	}, {
		name:     "deny all egress, DNS on the node included",
		policies: []*networkingv1.NetworkPolicy{np("prod", "deny", sel("app", "web"), egressOnly, nil, nil)},
		flows: []flow{
			{src: webIP, dst: dnsIP, proto: ProtoUDP, port: 53, want: false},
			conn(webIP, clientIP, 80, false), conn(clientIP, webIP, 80, true),
		},
	}, {
		name: "egress allow DNS and one CIDR",
		policies: []*networkingv1.NetworkPolicy{np("prod", "egress", sel("app", "web"), egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{
			{Ports: []networkingv1.NetworkPolicyPort{proto(udp, 53), tcp(53)}},
			{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.0.2.0/24"}}}},
		})},
		flows: []flow{
			{src: webIP, dst: dnsIP, proto: ProtoUDP, port: 53, want: true},
			conn(webIP, outsideIP, 443, true), conn(webIP, clientIP, 80, false),
		},
	}, {
		name: "egress named port resolves on each destination pod",
		policies: []*networkingv1.NetworkPolicy{np("prod", "egress", sel("role", "client"), egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{
			{Ports: []networkingv1.NetworkPolicyPort{named("pg")}},
		})},
		mutate: func(c *Cluster) { c.Node = "node-b" }, // client is local now
		flows: []flow{
			conn(clientIP, dbIP, 5432, true), conn(clientIP, webIP, 5432, false), conn(clientIP, outsideIP, 5432, false),
			conn(devIP, webIP, 80, true), // dev has no policy
		},
	}, {
		name: "policyTypes defaulted: egress rules imply Egress",
		policies: []*networkingv1.NetworkPolicy{np("prod", "both", sel("app", "web"), nil, nil, []networkingv1.NetworkPolicyEgressRule{
			{To: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "db")}}},
		})},
		flows: []flow{conn(clientIP, webIP, 80, false), conn(webIP, dbIP, 5432, true), conn(webIP, clientIP, 80, false)},
	}, {
		name: "egress of one pod and ingress of another both apply on one node",
		policies: []*networkingv1.NetworkPolicy{
			np("prod", "web-out", sel("app", "web"), egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{tcp(5432)}}}),
			np("prod", "db-in", sel("app", "db"), both, []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "web")}}}}, nil),
		},
		flows: []flow{conn(webIP, dbIP, 5432, true), conn(webIP, dbIP, 80, false), conn(clientIP, dbIP, 5432, false), conn(dbIP, outsideIP, 80, false)},
	}, {
		name: "peer selecting nothing allows nothing",
		policies: []*networkingv1.NetworkPolicy{np("prod", "allow", sel("app", "web"), ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "nope")}}}}, nil)},
		flows: []flow{conn(clientIP, webIP, 80, false), conn(dbIP, webIP, 80, false)},
	}, {
		name: "finished and host-network pods are neither endpoints nor peers",
		policies: []*networkingv1.NetworkPolicy{np("prod", "allow", sel(), ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("role", "client")}}}}, nil)},
		mutate: func(c *Cluster) {
			c.Pods[2].Status.Phase = corev1.PodSucceeded // client
			c.Pods[1].Spec.HostNetwork = true            // db
		},
		flows: []flow{conn(clientIP, webIP, 80, false), conn(clientIP, dbIP, 80, true)},
	}, {
		name:     "pods on other nodes are not enforced here",
		policies: []*networkingv1.NetworkPolicy{np("prod", "deny", sel(), both, nil, nil)},
		flows:    []flow{conn(devIP, clientIP, 80, true), conn(clientIP, webIP, 80, false)},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cluster(tt.policies...)
			if tt.mutate != nil {
				tt.mutate(&c)
			}
			eps := Compile(c)
			for _, f := range tt.flows {
				p := Packet{Src: netip.MustParseAddr(f.src), Dst: netip.MustParseAddr(f.dst), Proto: f.proto, DstPort: f.port}
				if got := Allowed(eps, p); got != f.want {
					t.Errorf("%s -> %s proto %d port %d: allowed = %v, want %v\nruleset:\n%s", f.src, f.dst, f.proto, f.port, got, f.want, Render(eps))
				}
			}
		})
	}
}

func TestAddrSet(t *testing.T) {
	tests := []struct {
		name   string
		add    []string
		remove []string
		want   string
	}{
		{name: "merge overlap and adjacent", add: []string{"10.0.0.0/25", "10.0.0.128/25", "10.0.0.64/26"}, want: "10.0.0.0-10.0.0.255"},
		{name: "except in the middle", add: []string{"10.0.0.0/24"}, remove: []string{"10.0.0.16/28"}, want: "10.0.0.0-10.0.0.15, 10.0.0.32-10.0.0.255"},
		{name: "except at both ends", add: []string{"10.0.0.0/24"}, remove: []string{"10.0.0.0/32", "10.0.0.255/32"}, want: "10.0.0.1-10.0.0.254"},
		{name: "everything", add: []string{"0.0.0.0/0", "10.0.0.0/8"}, want: "0.0.0.0-255.255.255.255"},
		{name: "top of the space", add: []string{"255.255.255.255/32", "255.255.255.254/32"}, want: "255.255.255.254-255.255.255.255"},
		{name: "ipv6 ignored", add: []string{"fd00::/8", "10.0.0.1/32"}, want: "10.0.0.1"},
		{name: "unmasked", add: []string{"10.0.0.77/24"}, want: "10.0.0.0-10.0.0.255"},
		{name: "disjoint kept in order", add: []string{"10.0.0.9/32", "10.0.0.1/32", "10.0.0.5/32"}, want: "10.0.0.1, 10.0.0.5, 10.0.0.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &AddrSet{}
			for _, p := range tt.add {
				s.AddPrefix(netip.MustParsePrefix(p))
			}
			for _, p := range tt.remove {
				s.RemovePrefix(netip.MustParsePrefix(p))
			}
			if got := s.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

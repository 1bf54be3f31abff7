package policy

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Cluster is what Compile reads: every NetworkPolicy, Pod and Namespace of the cluster (pods on
// other nodes are peers), and the node whose pods are enforced here.
type Cluster struct {
	Node       string
	Policies   []*networkingv1.NetworkPolicy
	Pods       []*corev1.Pod
	Namespaces []*corev1.Namespace
}

// Compile returns the endpoints of the node's pods that some NetworkPolicy isolates, sorted by
// address, with upstream semantics:
//
//   - a pod is isolated for ingress (egress) when a policy in its namespace selects it and lists
//     Ingress (Egress) in policyTypes (defaulted as the API server does: Ingress, plus Egress
//     when egress rules exist); a pod no policy selects is not an endpoint (all traffic passes);
//   - an isolated direction lets through what any rule of any selecting policy allows (union);
//   - a rule with no from/to peers matches every remote, with no ports every protocol and port;
//   - peers: podSelector (in the policy's namespace), namespaceSelector (all pods of the
//     matching namespaces), both (matching pods in matching namespaces), ipBlock (cidr minus
//     except);
//   - ports: protocol (TCP by default), a number with optional endPort, or a container port
//     name, resolved on the policy's pod for ingress and on each destination pod for egress (a
//     name matches nothing elsewhere);
//   - replies to allowed connections pass (the renderer accepts conntrack established/related).
//
// Pods without an IPv4 address, in host network, or finished (Succeeded, Failed) are neither
// endpoints nor peers. A selector that does not parse selects nothing.
func Compile(c Cluster) []Endpoint {
	nsLabels := map[string]labels.Set{}
	for _, ns := range c.Namespaces {
		nsLabels[ns.Name] = ns.Labels
	}
	var pods []*corev1.Pod
	addrs := map[*corev1.Pod][]netip.Addr{}
	for _, p := range c.Pods {
		if a := podAddrs(p); a != nil {
			pods = append(pods, p)
			addrs[p] = a
		}
	}
	byNS := map[string][]*networkingv1.NetworkPolicy{}
	for _, np := range c.Policies {
		byNS[np.Namespace] = append(byNS[np.Namespace], np)
	}
	cc := compiler{pods: pods, addrs: addrs, nsLabels: nsLabels, selectors: map[*metav1.LabelSelector]labels.Selector{}}

	var eps []Endpoint
	for _, pod := range pods {
		if pod.Spec.NodeName != c.Node {
			continue
		}
		var in, out []*networkingv1.NetworkPolicy
		for _, np := range byNS[pod.Namespace] {
			if !cc.matches(&np.Spec.PodSelector, pod.Labels) {
				continue
			}
			ingress, egress := policyTypes(np)
			if ingress {
				in = append(in, np)
			}
			if egress {
				out = append(out, np)
			}
		}
		if in == nil && out == nil {
			continue
		}
		for _, a := range addrs[pod] {
			ep := Endpoint{Addr: a, Name: pod.Namespace + "/" + pod.Name}
			if in != nil {
				ep.Ingress = []Filter{cc.filter(pod, in, Ingress)}
			}
			if out != nil {
				ep.Egress = []Filter{cc.filter(pod, out, Egress)}
			}
			eps = append(eps, ep)
		}
	}
	slices.SortFunc(eps, func(a, b Endpoint) int { return a.Addr.Compare(b.Addr) })
	return eps
}

// FilterSource names the Filters Compile makes.
const FilterSource = "networkpolicy"

type compiler struct {
	pods      []*corev1.Pod
	addrs     map[*corev1.Pod][]netip.Addr // of every pod in pods
	nsLabels  map[string]labels.Set
	selectors map[*metav1.LabelSelector]labels.Selector // parsed once per compile
}

// matches reports whether sel selects set; a selector that does not parse selects nothing.
func (cc compiler) matches(sel *metav1.LabelSelector, set labels.Set) bool {
	s, ok := cc.selectors[sel]
	if !ok {
		var err error
		if s, err = metav1.LabelSelectorAsSelector(sel); err != nil {
			s = labels.Nothing()
		}
		cc.selectors[sel] = s
	}
	return s.Matches(set)
}

func (cc compiler) filter(pod *corev1.Pod, nps []*networkingv1.NetworkPolicy, d Direction) Filter {
	f := Filter{Source: FilterSource, Allows: []Allow{}}
	for _, np := range nps {
		if d == Ingress {
			for _, r := range np.Spec.Ingress {
				f.Allows = append(f.Allows, cc.rule(np.Namespace, pod, r.From, r.Ports, d)...)
			}
		} else {
			for _, r := range np.Spec.Egress {
				f.Allows = append(f.Allows, cc.rule(np.Namespace, pod, r.To, r.Ports, d)...)
			}
		}
	}
	return f
}

// rule compiles one ingress or egress rule of a policy in namespace ns selecting pod.
func (cc compiler) rule(ns string, pod *corev1.Pod, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, d Direction) []Allow {
	var remote *AddrSet // nil: any
	if len(peers) > 0 {
		remote = &AddrSet{}
		for _, peer := range peers {
			remote.Union(cc.peer(ns, peer))
		}
		if remote.Empty() {
			return nil
		}
	}
	if len(ports) == 0 {
		return []Allow{{Remote: remote}}
	}
	var numeric []PortRange
	var named []networkingv1.NetworkPolicyPort
	for _, p := range ports {
		proto := protocol(p.Protocol)
		switch {
		case p.Port == nil:
			numeric = append(numeric, PortRange{Proto: proto, First: 0, Last: 65535})
		case p.Port.Type == intstr.String:
			named = append(named, p)
		case p.Port.IntVal < 1 || p.Port.IntVal > 65535:
			// rejected by validation
		default:
			last := p.Port.IntVal
			if p.EndPort != nil && *p.EndPort > last && *p.EndPort <= 65535 {
				last = *p.EndPort
			}
			numeric = append(numeric, PortRange{Proto: proto, First: uint16(p.Port.IntVal), Last: uint16(last)})
		}
	}
	var allows []Allow
	if d == Ingress {
		// Named ports are the selected pod's own.
		for _, p := range named {
			numeric = append(numeric, namedPorts(pod, p.Port.StrVal, protocol(p.Protocol))...)
		}
		named = nil
	}
	if numeric != nil {
		allows = append(allows, Allow{Remote: remote, Ports: numeric})
	}
	// Egress to a named port: each destination pod in the peers that has the port.
	for _, p := range named {
		proto := protocol(p.Protocol)
		byPort := map[PortRange]*AddrSet{}
		var order []PortRange
		for _, dst := range cc.pods {
			for _, a := range cc.addrs[dst] {
				if remote != nil && !remote.Contains(a) {
					continue
				}
				for _, r := range namedPorts(dst, p.Port.StrVal, proto) {
					if byPort[r] == nil {
						byPort[r] = &AddrSet{}
						order = append(order, r)
					}
					byPort[r].Add(a)
				}
			}
		}
		for _, r := range order {
			allows = append(allows, Allow{Remote: byPort[r], Ports: []PortRange{r}})
		}
	}
	return allows
}

// peer returns the addresses one peer of a policy in namespace ns matches.
func (cc compiler) peer(ns string, peer networkingv1.NetworkPolicyPeer) *AddrSet {
	s := &AddrSet{}
	if b := peer.IPBlock; b != nil {
		cidr, err := netip.ParsePrefix(b.CIDR)
		if err != nil {
			return s
		}
		s.AddPrefix(cidr)
		for _, e := range b.Except {
			if p, err := netip.ParsePrefix(e); err == nil {
				s.RemovePrefix(p)
			}
		}
		return s
	}
	if peer.PodSelector == nil && peer.NamespaceSelector == nil {
		return s // rejected by validation
	}
	for _, p := range cc.pods {
		if peer.NamespaceSelector == nil {
			if p.Namespace != ns {
				continue
			}
		} else if !cc.matches(peer.NamespaceSelector, cc.nsLabels[p.Namespace]) {
			continue
		}
		if peer.PodSelector != nil && !cc.matches(peer.PodSelector, p.Labels) {
			continue
		}
		for _, a := range cc.addrs[p] {
			s.Add(a)
		}
	}
	return s
}

// policyTypes defaults spec.policyTypes as the API server does for objects written before the
// field existed.
func policyTypes(np *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(np.Spec.PolicyTypes) == 0 {
		return true, len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

func protocol(p *corev1.Protocol) uint8 {
	if p == nil {
		return ProtoTCP
	}
	switch *p {
	case corev1.ProtocolUDP:
		return ProtoUDP
	case corev1.ProtocolSCTP:
		return ProtoSCTP
	}
	return ProtoTCP
}

// namedPorts returns the ports of pod's containers (and sidecars) called name with protocol proto.
func namedPorts(pod *corev1.Pod, name string, proto uint8) []PortRange {
	var out []PortRange
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, p := range c.Ports {
				if p.Name == name && protocol(&p.Protocol) == proto && p.ContainerPort > 0 {
					r := PortRange{Proto: proto, First: uint16(p.ContainerPort), Last: uint16(p.ContainerPort)}
					if !slices.Contains(out, r) {
						out = append(out, r)
					}
				}
			}
		}
	}
	return out
}

// podAddrs returns the IPv4 addresses of a pod that takes part in policy, or nil.
func podAddrs(p *corev1.Pod) []netip.Addr {
	if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return nil
	}
	ips := p.Status.PodIPs
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	var out []netip.Addr
	for _, ip := range ips {
		if a, err := netip.ParseAddr(strings.TrimSpace(ip.IP)); err == nil && a.Is4() && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

package tenant

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/cni"
	"github.com/strata-cloud/strata/internal/network/overlay"
)

// labelMigrationTarget marks a VM's launcher pod that is the target of a live migration in
// progress (internal/controller/vmmigration.LabelMigration): its Port stays bound to the source
// node until that one lets it go.
const labelMigrationTarget = "compute.strata.io/migration"

// Objects is what the agent sees: the pods of its node and the networking objects and Nodes of
// the cluster.
type Objects struct {
	Node     string
	NodeIP   netip.Addr
	Pods     []*corev1.Pod
	Nodes    []*corev1.Node
	Networks []*networkingv1alpha1.Network
	Subnets  []*networkingv1alpha1.Subnet
	Ports    []*networkingv1alpha1.Port
	Routers  []*networkingv1alpha1.Router
}

// Ref names a namespaced object.
type Ref struct{ Namespace, Name string }

func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// Plan is what the node must do for its tenant networks.
type Plan struct {
	State State
	// Attachments are the files to have, one per local pod whose Port is ready.
	Attachments []cni.TenantAttachment
	// Claims are the Ports to mark bound here (status.nodeName, ACTIVE): those of Attachments
	// whose pod runs. The agent claims only after their file is written.
	Claims []Claim
	// Releases are Ports bound here (ACTIVE) that no local pod uses any more: back to DOWN.
	Releases []Ref
	// Waiting says, per pod, why it has no attachment yet.
	Waiting map[Ref]string
}

// Claim binds a Port to the node once the pod's attachment file is in place.
type Claim struct {
	Port Ref
	Pod  Ref
}

// MakePlan computes the node's tenant network plan from objects. It is pure: the same objects
// give the same plan, whatever order they come in.
func MakePlan(o Objects) Plan {
	p := Plan{Waiting: map[Ref]string{}}
	networks := map[Ref]*networkingv1alpha1.Network{}
	for _, n := range o.Networks {
		networks[Ref{n.Namespace, n.Name}] = n
	}
	subnets := map[Ref]*networkingv1alpha1.Subnet{}
	for _, s := range o.Subnets {
		subnets[Ref{s.Namespace, s.Name}] = s
	}
	ports := map[Ref]*networkingv1alpha1.Port{}
	for _, pt := range o.Ports {
		ports[Ref{pt.Namespace, pt.Name}] = pt
	}

	var segments []Segment
	used := map[Ref]bool{}
	pods := slices.Clone(o.Pods)
	slices.SortFunc(pods, func(a, b *corev1.Pod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for _, pod := range pods {
		portName, ok := PodPort(pod)
		if !ok || pod.Spec.NodeName != o.Node || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		podRef := Ref{pod.Namespace, pod.Name}
		portRef := Ref{pod.Namespace, portName}
		used[portRef] = true
		port := ports[portRef]
		if port == nil {
			p.Waiting[podRef] = "port " + portRef.String() + " does not exist yet"
			continue
		}
		if want := pod.Annotations[networkingv1alpha1.AnnotationNetwork]; want != "" && port.Spec.Network != want {
			p.Waiting[podRef] = fmt.Sprintf("port %s is on network %s, the pod asks for %s", portRef, port.Spec.Network, want)
			continue
		}
		net := networks[Ref{pod.Namespace, port.Spec.Network}]
		seg, why := segmentOf(net)
		if why != "" {
			p.Waiting[podRef] = fmt.Sprintf("network %s/%s %s", pod.Namespace, port.Spec.Network, why)
			continue
		}
		// the segment stays while the pod does, even before its Port is complete
		segments = append(segments, seg)
		att, why := attachment(pod, port, seg, o.Subnets, subnets)
		if why != "" {
			p.Waiting[podRef] = why
			continue
		}
		p.Attachments = append(p.Attachments, att)
		if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning {
			continue
		}
		if _, target := pod.Labels[labelMigrationTarget]; target && port.Status.NodeName != "" && port.Status.NodeName != o.Node {
			continue // the source node still holds it
		}
		if port.Status.NodeName != o.Node || port.Status.Status != networkingv1alpha1.StatusActive {
			p.Claims = append(p.Claims, Claim{Port: portRef, Pod: podRef})
		}
	}

	for _, r := range o.Routers {
		if r.Status.NodeName != o.Node || o.Node == "" {
			continue
		}
		var nets []Ref
		for _, ifc := range r.Spec.Interfaces {
			if s := subnets[Ref{r.Namespace, ifc.Subnet}]; s != nil {
				nets = append(nets, Ref{r.Namespace, s.Spec.Network})
			}
		}
		if gw := r.Spec.ExternalGateway; gw != nil {
			nets = append(nets, Ref{cmp.Or(gw.Network.Namespace, r.Namespace), gw.Network.Name})
		}
		for _, n := range nets {
			if seg, why := segmentOf(networks[n]); why == "" {
				segments = append(segments, seg)
			}
		}
	}

	for _, pt := range o.Ports {
		ref := Ref{pt.Namespace, pt.Name}
		if pt.Status.NodeName == o.Node && o.Node != "" && pt.Status.Status == networkingv1alpha1.StatusActive && !used[ref] &&
			(pt.Spec.Device == nil || pt.Spec.Device.Kind != networkingv1alpha1.DeviceRouterInterface) {
			p.Releases = append(p.Releases, ref)
		}
	}
	slices.SortFunc(p.Releases, func(a, b Ref) int { return cmp.Compare(a.String(), b.String()) })

	var nodeIPs []netip.Addr
	for _, n := range o.Nodes {
		if n.Name == o.Node {
			continue
		}
		ip := n.Annotations[overlay.AnnotationNodeIP]
		if ip == "" {
			ip = internalIP(n)
		}
		if a, err := netip.ParseAddr(ip); err == nil {
			nodeIPs = append(nodeIPs, a)
		}
	}
	p.State = Desired(o.NodeIP, segments, nodeIPs)
	return p
}

// PodPort returns the name of the Port a pod's eth0 uses, if it is on a tenant network: the
// one it names (AnnotationPort, a VM's launcher), else, with AnnotationNetwork, the Port named
// after the pod.
func PodPort(pod *corev1.Pod) (string, bool) {
	if name := pod.Annotations[networkingv1alpha1.AnnotationPort]; name != "" {
		return name, true
	}
	if pod.Annotations[networkingv1alpha1.AnnotationNetwork] != "" {
		return pod.Name, true
	}
	return "", false
}

// segmentOf is a network's segment, or why it has none (yet).
func segmentOf(n *networkingv1alpha1.Network) (Segment, string) {
	switch {
	case n == nil:
		return Segment{}, "does not exist"
	case n.Spec.ProviderType != "" && n.Spec.ProviderType != networkingv1alpha1.ProviderVXLAN:
		return Segment{}, "is a " + n.Spec.ProviderType + " network; only vxlan networks reach pods so far"
	case !ValidVNI(n.Status.SegmentationID):
		return Segment{}, "has no segmentation ID yet"
	}
	mtu := int(cmp.Or(n.Status.MTU, n.Spec.MTU))
	return Segment{VNI: n.Status.SegmentationID, MTU: cmp.Or(mtu, DefaultMTU)}, ""
}

// attachment is a pod's attachment file content, or why it cannot be written yet.
func attachment(pod *corev1.Pod, port *networkingv1alpha1.Port, seg Segment, all []*networkingv1alpha1.Subnet,
	byName map[Ref]*networkingv1alpha1.Subnet) (cni.TenantAttachment, string) {
	ref := Ref{port.Namespace, port.Name}
	if len(port.Status.FixedIPs) == 0 || port.Status.MACAddress == "" {
		return cni.TenantAttachment{}, "port " + ref.String() + " has no address or MAC yet"
	}
	fixed := port.Status.FixedIPs[0]
	ip, err := netip.ParseAddr(fixed.IPAddress)
	if err != nil || !ip.Is4() {
		return cni.TenantAttachment{}, fmt.Sprintf("port %s has no IPv4 address (%q)", ref, fixed.IPAddress)
	}
	var subnet *networkingv1alpha1.Subnet
	var cidr netip.Prefix
	if fixed.Subnet != "" {
		subnet = byName[Ref{port.Namespace, fixed.Subnet}]
		if subnet != nil {
			cidr, _ = netip.ParsePrefix(subnet.Spec.CIDR)
		}
	} else {
		for _, s := range all { // the subnet of the port's network holding the address
			c, err := netip.ParsePrefix(s.Spec.CIDR)
			if err == nil && s.Namespace == port.Namespace && s.Spec.Network == port.Spec.Network && c.Contains(ip) {
				subnet, cidr = s, c
				break
			}
		}
	}
	if subnet == nil || !cidr.IsValid() || !cidr.Contains(ip) {
		return cni.TenantAttachment{}, fmt.Sprintf("port %s: no subnet of network %s holds %s", ref, port.Spec.Network, ip)
	}
	a := cni.TenantAttachment{
		Namespace: pod.Namespace, Pod: pod.Name, Network: port.Spec.Network, Port: port.Name,
		VNI: seg.VNI, Bridge: BridgeName(seg.VNI), Address: netip.PrefixFrom(ip, cidr.Bits()),
		MAC: port.Status.MACAddress, MTU: seg.MTU,
	}
	if gw, err := netip.ParseAddr(subnet.Status.GatewayIP); err == nil && gw != ip && cidr.Contains(gw) {
		a.Gateway = gw
	}
	for _, r := range subnet.Spec.HostRoutes {
		dst, err1 := netip.ParsePrefix(r.Destination)
		via, err2 := netip.ParseAddr(r.NextHop)
		if err1 == nil && err2 == nil && cidr.Contains(via) && dst.Addr().Is4() {
			a.HostRoutes = append(a.HostRoutes, cni.TenantRoute{Destination: dst.Masked(), NextHop: via})
		}
	}
	for _, d := range subnet.Spec.DNSNameservers {
		if s, err := netip.ParseAddr(d); err == nil {
			a.DNSServers = append(a.DNSServers, s)
		}
	}
	if err := a.Validate(); err != nil {
		return cni.TenantAttachment{}, err.Error()
	}
	return a, ""
}

func internalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

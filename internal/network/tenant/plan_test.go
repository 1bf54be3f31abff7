package tenant

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/vmmigration"
	"github.com/strata-cloud/strata/internal/network/cni"
	"github.com/strata-cloud/strata/internal/network/overlay"
)

const self = "node-a"

var selfIP = netip.MustParseAddr("192.168.1.1")

func mkPod(ns, name string, ann map[string]string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: ann},
		Spec: corev1.PodSpec{NodeName: self}, Status: corev1.PodStatus{Phase: phase}}
}

func mkNetwork(ns, name string, vni int32) *v1.Network {
	return &v1.Network{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.NetworkSpec{ProviderType: v1.ProviderVXLAN},
		Status: v1.NetworkStatus{SegmentationID: vni, MTU: 1450}}
}

func mkSubnet(ns, name, network, cidr, gw string) *v1.Subnet {
	return &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.SubnetSpec{Network: network, CIDR: cidr},
		Status: v1.SubnetStatus{GatewayIP: gw}}
}

func mkPort(ns, name, network, ip, mac string) *v1.Port {
	p := &v1.Port{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.PortSpec{Network: network}}
	if ip != "" {
		p.Status.FixedIPs = []v1.FixedIP{{IPAddress: ip}}
	}
	p.Status.MACAddress = mac
	p.Status.Status = v1.StatusDown
	return p
}

func mkNode(name, ip string, annotated bool) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if annotated {
		n.Annotations = map[string]string{overlay.AnnotationNodeIP: ip}
	} else {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	}
	return n
}

func byNetwork(net string) map[string]string { return map[string]string{v1.AnnotationNetwork: net} }

func TestMakePlan(t *testing.T) {
	nodes := []*corev1.Node{mkNode(self, "192.168.1.1", false), mkNode("node-b", "192.168.1.2", true), mkNode("node-c", "192.168.1.3", false)}
	peers := []netip.Addr{netip.MustParseAddr("192.168.1.2"), netip.MustParseAddr("192.168.1.3")}
	// two projects' networks with the same CIDR
	netA, netB := mkNetwork("p1", "net", 100), mkNetwork("p2", "net", 200)
	snA := mkSubnet("p1", "sn", "net", "10.0.0.0/24", "10.0.0.1")
	snA.Spec.DNSNameservers = []string{"10.0.0.2"}
	snA.Spec.HostRoutes = []v1.HostRoute{{Destination: "192.168.50.0/24", NextHop: "10.0.0.254"}, {Destination: "10.9.0.0/16", NextHop: "172.16.0.1"}}
	snB := mkSubnet("p2", "sn", "net", "10.0.0.0/24", "")
	web := mkPort("p1", "web", "net", "10.0.0.5", "fa:16:3e:00:00:05")
	webAtt := cni.TenantAttachment{Namespace: "p1", Pod: "web", Network: "net", Port: "web", VNI: 100, Bridge: BridgeName(100),
		Address: netip.MustParsePrefix("10.0.0.5/24"), Gateway: netip.MustParseAddr("10.0.0.1"), MAC: "fa:16:3e:00:00:05", MTU: 1450,
		HostRoutes: []cni.TenantRoute{{Destination: netip.MustParsePrefix("192.168.50.0/24"), NextHop: netip.MustParseAddr("10.0.0.254")}},
		DNSServers: []netip.Addr{netip.MustParseAddr("10.0.0.2")}}

	tests := []struct {
		name string
		o    Objects
		want Plan
	}{
		{
			name: "running pod with a ready port: segment, file, claim",
			o: Objects{Pods: []*corev1.Pod{mkPod("p1", "web", byNetwork("net"), corev1.PodRunning)}, Nodes: nodes,
				Networks: []*v1.Network{netA, netB}, Subnets: []*v1.Subnet{snB, snA}, Ports: []*v1.Port{web}},
			want: Plan{State: State{Segments: []Segment{{VNI: 100, MTU: 1450}}, Peers: peers}, Attachments: []cni.TenantAttachment{webAtt},
				Claims: []Claim{{Port: Ref{"p1", "web"}, Pod: Ref{"p1", "web"}}}},
		},
		{
			name: "pending pod: file, no claim yet; same CIDR in another project picks that project's subnet",
			o: Objects{Pods: []*corev1.Pod{mkPod("p2", "db", byNetwork("net"), corev1.PodPending)},
				Networks: []*v1.Network{netA, netB}, Subnets: []*v1.Subnet{snA, snB}, Ports: []*v1.Port{mkPort("p2", "db", "net", "10.0.0.5", "fa:16:3e:00:00:06")}},
			want: Plan{State: State{Segments: []Segment{{VNI: 200, MTU: 1450}}}, Attachments: []cni.TenantAttachment{{Namespace: "p2", Pod: "db",
				Network: "net", Port: "db", VNI: 200, Bridge: BridgeName(200), Address: netip.MustParsePrefix("10.0.0.5/24"),
				MAC: "fa:16:3e:00:00:06", MTU: 1450}}},
		},
		{
			name: "port without address: the segment is made, the pod waits",
			o: Objects{Pods: []*corev1.Pod{mkPod("p1", "web", byNetwork("net"), corev1.PodPending)},
				Networks: []*v1.Network{netA}, Subnets: []*v1.Subnet{snA}, Ports: []*v1.Port{mkPort("p1", "web", "net", "", "")}},
			want: Plan{State: State{Segments: []Segment{{VNI: 100, MTU: 1450}}},
				Waiting: map[Ref]string{{"p1", "web"}: "port p1/web has no address or MAC yet"}},
		},
		{
			name: "missing port, network without VNI, flat network: all wait, no segment",
			o: Objects{Pods: []*corev1.Pod{mkPod("p1", "a", byNetwork("net"), corev1.PodPending), mkPod("p1", "b", byNetwork("new"), corev1.PodPending),
				mkPod("p1", "c", byNetwork("lan"), corev1.PodPending)},
				Networks: []*v1.Network{mkNetwork("p1", "new", 0), {ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "lan"}, Spec: v1.NetworkSpec{ProviderType: v1.ProviderFlat}}},
				Ports:    []*v1.Port{mkPort("p1", "b", "new", "10.0.0.9", "fa:16:3e:00:00:09"), mkPort("p1", "c", "lan", "10.0.0.9", "fa:16:3e:00:00:09")}},
			want: Plan{Waiting: map[Ref]string{
				{"p1", "a"}: "port p1/a does not exist yet",
				{"p1", "b"}: "network p1/new has no segmentation ID yet",
				{"p1", "c"}: "network p1/lan is a flat network; only vxlan networks reach pods so far"}},
		},
		{
			name: "port on another network than the pod asks for",
			o: Objects{Pods: []*corev1.Pod{mkPod("p1", "web", byNetwork("other"), corev1.PodRunning)}, Networks: []*v1.Network{netA},
				Subnets: []*v1.Subnet{snA}, Ports: []*v1.Port{web}},
			want: Plan{Waiting: map[Ref]string{{"p1", "web"}: "port p1/web is on network net, the pod asks for other"}},
		},
		{
			name: "a VM's launcher names its port; a migration target does not take it from the source node",
			o: Objects{Pods: []*corev1.Pod{
				func() *corev1.Pod {
					p := mkPod("p1", "launcher-x", map[string]string{v1.AnnotationPort: "web"}, corev1.PodRunning)
					p.Labels = map[string]string{labelMigrationTarget: "m1"}
					return p
				}()},
				Networks: []*v1.Network{netA}, Subnets: []*v1.Subnet{snA},
				Ports: []*v1.Port{func() *v1.Port {
					p := web.DeepCopy()
					p.Status.NodeName, p.Status.Status = "node-b", v1.StatusActive
					return p
				}()}},
			want: Plan{State: State{Segments: []Segment{{VNI: 100, MTU: 1450}}},
				Attachments: []cni.TenantAttachment{func() cni.TenantAttachment { a := webAtt; a.Pod = "launcher-x"; return a }()}},
		},
		{
			name: "already bound here: nothing to claim; pods elsewhere, finished or deleted ports ignored",
			o: Objects{Pods: []*corev1.Pod{mkPod("p1", "web", byNetwork("net"), corev1.PodRunning),
				func() *corev1.Pod {
					p := mkPod("p1", "far", byNetwork("net"), corev1.PodRunning)
					p.Spec.NodeName = "node-b"
					return p
				}(),
				mkPod("p1", "done", byNetwork("net"), corev1.PodSucceeded), mkPod("p1", "plain", nil, corev1.PodRunning)},
				Networks: []*v1.Network{netA}, Subnets: []*v1.Subnet{snA},
				Ports: []*v1.Port{func() *v1.Port {
					p := web.DeepCopy()
					p.Status.NodeName, p.Status.Status = self, v1.StatusActive
					return p
				}()}},
			want: Plan{State: State{Segments: []Segment{{VNI: 100, MTU: 1450}}}, Attachments: []cni.TenantAttachment{webAtt}},
		},
		{
			name: "ports bound here without a pod go down, router interfaces excepted; routers here get their segments",
			o: Objects{Networks: []*v1.Network{netA, netB, mkNetwork("ext", "public", 300)}, Subnets: []*v1.Subnet{snA, snB},
				Ports: []*v1.Port{
					func() *v1.Port {
						p := web.DeepCopy()
						p.Status.NodeName, p.Status.Status = self, v1.StatusActive
						return p
					}(),
					func() *v1.Port {
						p := mkPort("p1", "rtr-if", "net", "10.0.0.1", "fa:16:3e:00:00:01")
						p.Spec.Device = &v1.PortDevice{Kind: v1.DeviceRouterInterface, Name: "r1"}
						p.Status.NodeName, p.Status.Status = self, v1.StatusActive
						return p
					}()},
				Routers: []*v1.Router{
					{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "r1"}, Spec: v1.RouterSpec{Interfaces: []v1.RouterInterface{{Subnet: "sn"}},
						ExternalGateway: &v1.ExternalGateway{Network: v1.NetworkRef{Namespace: "ext", Name: "public"}}}, Status: v1.RouterStatus{NodeName: self}},
					{ObjectMeta: metav1.ObjectMeta{Namespace: "p2", Name: "r2"}, Spec: v1.RouterSpec{Interfaces: []v1.RouterInterface{{Subnet: "sn"}}},
						Status: v1.RouterStatus{NodeName: "node-b"}}}},
			want: Plan{State: State{Segments: []Segment{{VNI: 100, MTU: 1450}, {VNI: 300, MTU: 1450}}}, Releases: []Ref{{"p1", "web"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Node, tt.o.NodeIP = self, selfIP
			if tt.want.Waiting == nil {
				tt.want.Waiting = map[Ref]string{}
			}
			got := MakePlan(tt.o)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestMigrationLabel(t *testing.T) {
	if labelMigrationTarget != vmmigration.LabelMigration {
		t.Fatalf("label %q, the migration controller's is %q", labelMigrationTarget, vmmigration.LabelMigration)
	}
}

func TestPodPort(t *testing.T) {
	tests := []struct {
		ann  map[string]string
		want string
		ok   bool
	}{
		{nil, "", false},
		{byNetwork("net"), "pod", true},
		{map[string]string{v1.AnnotationPort: "p7"}, "p7", true},
		{map[string]string{v1.AnnotationPort: "p7", v1.AnnotationNetwork: "net"}, "p7", true},
		{map[string]string{v1.AnnotationNetwork: ""}, "", false},
	}
	for _, tt := range tests {
		got, ok := PodPort(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod", Annotations: tt.ann}})
		if got != tt.want || ok != tt.ok {
			t.Errorf("%v: got %q %v", tt.ann, got, ok)
		}
	}
}

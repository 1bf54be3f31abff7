package router

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
)

func TestDesired(t *testing.T) {
	base := objects()
	uid := string(base.Router.UID)
	ifc := Interface{Name: interfaceName(uid, "sn"), Subnet: "sn", Bridge: "tnbr-000064",
		Address: netip.MustParsePrefix("10.0.0.1/24"), MAC: stableMAC(uid, "sn"), MTU: 1450}
	ext := &External{Name: "qg-0a1b2c3d", Parent: "ext0", Address: netip.MustParsePrefix("203.0.113.10/24"),
		Gateway: netip.MustParseAddr("203.0.113.1"), MAC: stableMAC(uid, "external")}
	want := func(edit func(*RouterState)) RouterState {
		st := RouterState{Namespace: "qrouter-0a1b2c3d", Router: "p/r1", Interfaces: []Interface{ifc}, External: ext, SNAT: true}
		if edit != nil {
			edit(&st)
		}
		return st
	}
	tests := []struct {
		name    string
		edit    func(*Inputs)
		want    RouterState
		wantErr string
	}{
		{name: "router with SNAT", want: want(nil)},
		{name: "SNAT off", edit: func(in *Inputs) {
			off := false
			in.Router.Spec.ExternalGateway.EnableSNAT = &off
		}, want: want(func(st *RouterState) { st.SNAT = false })},
		{name: "no external gateway", edit: func(in *Inputs) { in.Router.Spec.ExternalGateway = nil },
			want: want(func(st *RouterState) { st.External, st.SNAT = nil, false })},
		{name: "network MTU and MAC from status", edit: func(in *Inputs) {
			in.Networks["net"].Status.MTU = 1400
			in.Router.Status.Interfaces[0].MACAddress = "fa:16:3e:00:00:01"
		}, want: want(func(st *RouterState) {
			i := ifc
			i.MTU, i.MAC = 1400, []byte{0xfa, 0x16, 0x3e, 0, 0, 1}
			st.Interfaces = []Interface{i}
		})},
		{name: "external subnet without gateway", edit: func(in *Inputs) {
			in.ExternalSubnets[0].Status.GatewayIP = ""
			in.ExternalSubnets[0].Spec.NoGateway = true
		}, want: want(func(st *RouterState) {
			e := *ext
			e.Gateway = netip.Addr{}
			st.External = &e
		})},
		{name: "external interface unnamed", edit: func(in *Inputs) { in.ExternalNetwork.Spec.PhysicalInterface = "" },
			want: want(func(st *RouterState) {
				e := *ext
				e.Parent = ""
				st.External = &e
			})},
		{name: "floating IPs: bound, foreign, down, off-subnet, duplicate", edit: func(in *Inputs) {
			other := fip("f2", "203.0.113.51", "10.0.0.6")
			other.Status.Router = "r9"
			down := fip("f3", "203.0.113.52", "10.0.0.7")
			down.Status.Status = netv1.StatusDown
			elsewhere := fip("f4", "203.0.113.53", "10.9.0.7")
			otherNS := fip("f5", "203.0.113.54", "10.0.0.8")
			otherNS.Namespace = "q"
			in.FloatingIPs = []*netv1.FloatingIP{fip("f1", "203.0.113.50", "10.0.0.5"), other, down, elsewhere, otherNS,
				fip("f0", "203.0.113.55", "10.0.0.9"), fip("f9", "203.0.113.50", "10.0.0.10")}
		}, want: want(func(st *RouterState) {
			st.Floating = []Floating{
				{Floating: netip.MustParseAddr("203.0.113.50"), Fixed: netip.MustParseAddr("10.0.0.5")},
				{Floating: netip.MustParseAddr("203.0.113.55"), Fixed: netip.MustParseAddr("10.0.0.9")},
			}
		})},
		{name: "network without VNI yet", edit: func(in *Inputs) { in.Networks["net"].Status.SegmentationID = 0 },
			want:    want(func(st *RouterState) { st.Interfaces = nil }),
			wantErr: "no segmentation ID"},
		{name: "subnet missing", edit: func(in *Inputs) { delete(in.Subnets, "sn") },
			want: want(func(st *RouterState) { st.Interfaces = nil }), wantErr: "subnet not found"},
		{name: "gateway outside the subnet", edit: func(in *Inputs) { in.Router.Status.Interfaces[0].IPAddress = "10.1.0.1" },
			want: want(func(st *RouterState) { st.Interfaces = nil }), wantErr: "not in 10.0.0.0/24"},
		{name: "no external IP yet", edit: func(in *Inputs) { in.Router.Status.ExternalIP = "" },
			want: want(func(st *RouterState) { st.External, st.SNAT = nil, false }), wantErr: "no external IP yet"},
		{name: "external network missing", edit: func(in *Inputs) { in.ExternalNetwork = nil },
			want: want(func(st *RouterState) { st.External, st.SNAT = nil, false }), wantErr: "network public not found"},
		{name: "external network is vxlan", edit: func(in *Inputs) { in.ExternalNetwork.Spec.ProviderType = netv1.ProviderVXLAN },
			want: want(func(st *RouterState) { st.External, st.SNAT = nil, false }), wantErr: "must be flat"},
		{name: "external IP outside every subnet", edit: func(in *Inputs) { in.Router.Status.ExternalIP = "198.51.100.7" },
			want: want(func(st *RouterState) { st.External, st.SNAT = nil, false }), wantErr: "no subnet of network public"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := objects()
			if tt.edit != nil {
				tt.edit(&in)
			}
			got, err := Desired(in)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestNames(t *testing.T) {
	uid := "0a1b2c3d-0000-4000-8000-000000000001"
	if got := NamespaceName(uid); got != "qrouter-0a1b2c3d" {
		t.Fatalf("namespace %q", got)
	}
	a, b := interfaceName(uid, "sn"), interfaceName(uid, "sn2")
	if len(a) > 15 || a == b || !strings.HasPrefix(a, "qr-0a1b2c3d") {
		t.Fatalf("interface names %q %q", a, b)
	}
	m1, m2 := stableMAC(uid, "sn"), stableMAC(uid, "sn")
	if m1.String() != m2.String() || m1[0]&1 != 0 || m1[0]&2 == 0 {
		t.Fatalf("MAC %s is not stable, unicast and locally administered", m1)
	}
	if stableMAC(uid, "sn").String() == stableMAC(uid, "sn2").String() {
		t.Fatal("two subnets share a MAC")
	}
}

func TestDesiredNeedsRouter(t *testing.T) {
	if _, err := Desired(Inputs{}); err == nil {
		t.Fatal("no router: want an error")
	}
	if _, err := Desired(Inputs{Router: &netv1.Router{ObjectMeta: metav1.ObjectMeta{Name: "r"}}}); err == nil {
		t.Fatal("no UID: want an error")
	}
}

// objects is a router on subnet 10.0.0.0/24 (VNI 100) with external IP
// 203.0.113.10 on network "public" through ext0.
func objects(fips ...*netv1.FloatingIP) Inputs {
	return Inputs{
		Router: &netv1.Router{
			ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "r1", UID: types.UID("0a1b2c3d-0000-4000-8000-000000000001")},
			Spec: netv1.RouterSpec{
				ExternalGateway: &netv1.ExternalGateway{Network: netv1.NetworkRef{Namespace: "admin", Name: "public"}},
				Interfaces:      []netv1.RouterInterface{{Subnet: "sn"}},
			},
			Status: netv1.RouterStatus{NodeName: "n1", ExternalIP: "203.0.113.10",
				Interfaces: []netv1.RouterInterfaceStatus{{Subnet: "sn", IPAddress: "10.0.0.1"}}},
		},
		Subnets: map[string]*netv1.Subnet{"sn": {ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "sn"},
			Spec: netv1.SubnetSpec{Network: "net", CIDR: "10.0.0.0/24"}}},
		Networks: map[string]*netv1.Network{"net": {ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "net"},
			Spec: netv1.NetworkSpec{ProviderType: netv1.ProviderVXLAN}, Status: netv1.NetworkStatus{SegmentationID: 100}}},
		ExternalNetwork: &netv1.Network{ObjectMeta: metav1.ObjectMeta{Namespace: "admin", Name: "public"},
			Spec: netv1.NetworkSpec{External: true, ProviderType: netv1.ProviderFlat, PhysicalInterface: "ext0"}},
		ExternalSubnets: []*netv1.Subnet{{ObjectMeta: metav1.ObjectMeta{Namespace: "admin", Name: "public-v4"},
			Spec:   netv1.SubnetSpec{Network: "public", CIDR: "203.0.113.0/24"},
			Status: netv1.SubnetStatus{GatewayIP: "203.0.113.1"}}},
		FloatingIPs: fips,
	}
}

func fip(name, floating, fixed string) *netv1.FloatingIP {
	return &netv1.FloatingIP{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: name},
		Status: netv1.FloatingIPStatus{FloatingIPAddress: floating, FixedIPAddress: fixed, Router: "r1", NodeName: "n1", Status: netv1.StatusActive}}
}

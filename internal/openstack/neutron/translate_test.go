package neutron

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
)

func ptr[T any](v T) *T { return &v }

func objMeta(ns, name, uid string, annotations ...string) metav1.ObjectMeta {
	m := metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)}
	for i := 0; i+1 < len(annotations); i += 2 {
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[annotations[i]] = annotations[i+1]
	}
	return m
}

// testIndex: project p1 (namespace "p1") with net1/sub1 (10.0.0.0/24),
// port1, router1, groups default and web, VM vm1; "public" an external
// network of namespace "infra" with subnet pubsub (192.0.2.0/24).
func testIndex() *Index {
	ix := NewIndex()
	ix.Add(kindNetwork, "p1", "net1", "net1-id")
	ix.addSubnet(&netv1.Subnet{ObjectMeta: objMeta("p1", "sub1", "sub1-id"), Spec: netv1.SubnetSpec{Network: "net1", CIDR: "10.0.0.0/24"}})
	ix.Add(kindPort, "p1", "port1", "port1-id")
	ix.Add(kindRouter, "p1", "router1", "router1-id")
	ix.Add(kindSecurityGroup, "p1", "default", "default-id")
	ix.Add(kindSecurityGroup, "p1", "web", "web-id")
	ix.Add(kindVM, "p1", "vm1", "vm1-id")
	ix.Add(kindNetwork, "infra", "public", "public-id")
	ix.addSubnet(&netv1.Subnet{ObjectMeta: objMeta("infra", "pubsub", "pubsub-id"), Spec: netv1.SubnetSpec{Network: "public", CIDR: "192.0.2.0/24"}})
	ix.Add(kindNetwork, "p2", "other", "other-id")
	ix.Add(kindSubnet, "p2", "othersub", "othersub-id")
	return ix
}

func check[T any](t *testing.T, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Errorf("got  %s\nwant %s", g, w)
	}
}

func errType(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Type
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

func TestKubeName(t *testing.T) {
	taken := func(n string) bool { return n == "used" }
	for _, tc := range []struct{ name, want string }{
		{"net1", "net1"},
		{"used", "net-abcd1234"},
		{"My Network", "net-abcd1234"},
		{"", "net-abcd1234"},
		{"a.b", "net-abcd1234"}, // a DNS subdomain, not a label
	} {
		if got := KubeName(tc.name, "net", "abcd1234", taken); got != tc.want {
			t.Errorf("KubeName(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestNetworkToNeutron(t *testing.T) {
	ix := testIndex()
	base := Network{AdminStateUp: true, PortSecurityEnabled: true, Tags: []string{}, Subnets: []string{}}
	for _, tc := range []struct {
		name string
		in   netv1.Network
		want func(Network) Network
	}{{
		name: "vxlan made through the API",
		in: netv1.Network{ObjectMeta: objMeta("p1", "net1", "net1-id", AnnotationName, "My net", AnnotationDescription, "d"),
			Status: netv1.NetworkStatus{SegmentationID: 42, MTU: 1450, Status: "ACTIVE"}},
		want: func(n Network) Network {
			n.ID, n.Name, n.Description, n.ProjectID, n.TenantID = "net1-id", "My net", "d", "proj", "proj"
			n.Status, n.NetworkType, n.SegmentationID, n.MTU = "ACTIVE", "vxlan", ptr(int32(42)), 1450
			n.Subnets = []string{"sub1-id"}
			return n
		},
	}, {
		name: "flat external made with kubectl, not reconciled yet",
		in: netv1.Network{ObjectMeta: objMeta("infra", "public", "public-id"),
			Spec: netv1.NetworkSpec{External: true, ProviderType: "flat", PhysicalInterface: "eth1", MTU: 1500}},
		want: func(n Network) Network {
			n.ID, n.Name, n.ProjectID, n.TenantID = "public-id", "public", "proj", "proj"
			n.Status, n.External, n.NetworkType, n.PhysicalNetwork, n.MTU = "BUILD", true, "flat", ptr("eth1"), 1500
			n.Subnets = []string{"pubsub-id"}
			return n
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			check(t, NetworkToNeutron(&tc.in, ix, "proj"), tc.want(base))
		})
	}
}

func TestApplyNetwork(t *testing.T) {
	for _, tc := range []struct {
		name    string
		req     string
		create  bool
		want    netv1.NetworkSpec
		wantErr string
	}{
		{"defaults", `{"name":"n"}`, true, netv1.NetworkSpec{}, ""},
		{"provider and external", `{"router:external":true,"provider:network_type":"flat","provider:physical_network":"eth1","mtu":1500}`, true,
			netv1.NetworkSpec{External: true, ProviderType: "flat", PhysicalInterface: "eth1", MTU: 1500}, ""},
		{"vni", `{"provider:network_type":"vxlan","provider:segmentation_id":7}`, true, netv1.NetworkSpec{ProviderType: "vxlan", SegmentationID: ptr(int32(7))}, ""},
		{"admin down", `{"admin_state_up":false}`, true, netv1.NetworkSpec{}, "HTTPBadRequest"},
		{"shared", `{"shared":true}`, false, netv1.NetworkSpec{}, "HTTPBadRequest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req NetworkRequest
			if err := json.Unmarshal([]byte(tc.req), &req); err != nil {
				t.Fatal(err)
			}
			n := &netv1.Network{}
			err := ApplyNetwork(n, req, tc.create)
			if errType(err) != tc.wantErr {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if err == nil {
				check(t, n.Spec, tc.want)
			}
		})
	}
}

func TestSubnetToNeutron(t *testing.T) {
	ix := testIndex()
	for _, tc := range []struct {
		name   string
		in     netv1.Subnet
		gw     *string
		pools  []AllocationPool
		dhcp   bool
		routes []HostRoute
	}{
		{"defaults", netv1.Subnet{Spec: netv1.SubnetSpec{Network: "net1", CIDR: "10.0.0.0/24"}},
			ptr("10.0.0.1"), []AllocationPool{{"10.0.0.2", "10.0.0.254"}}, true, []HostRoute{}},
		{"no gateway, no dhcp", netv1.Subnet{Spec: netv1.SubnetSpec{Network: "net1", CIDR: "10.0.0.0/24", NoGateway: true, EnableDHCP: ptr(false)}},
			nil, []AllocationPool{{"10.0.0.1", "10.0.0.254"}}, false, []HostRoute{}},
		{"gateway in the middle", netv1.Subnet{Spec: netv1.SubnetSpec{Network: "net1", CIDR: "10.0.0.0/24", GatewayIP: "10.0.0.100",
			HostRoutes: []netv1.HostRoute{{Destination: "10.9.0.0/16", NextHop: "10.0.0.9"}}}},
			ptr("10.0.0.100"), []AllocationPool{{"10.0.0.1", "10.0.0.99"}, {"10.0.0.101", "10.0.0.254"}}, true, []HostRoute{{"10.9.0.0/16", "10.0.0.9"}}},
		{"status wins", netv1.Subnet{Spec: netv1.SubnetSpec{Network: "net1", CIDR: "10.0.0.0/24"},
			Status: netv1.SubnetStatus{GatewayIP: "10.0.0.1", AllocationPools: []netv1.AllocationPool{{Start: "10.0.0.10", End: "10.0.0.20"}}}},
			ptr("10.0.0.1"), []AllocationPool{{"10.0.0.10", "10.0.0.20"}}, true, []HostRoute{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.ObjectMeta = objMeta("p1", "sub1", "sub1-id")
			got := SubnetToNeutron(&tc.in, ix, "proj")
			if got.ID != "sub1-id" || got.NetworkID != "net1-id" || got.IPVersion != 4 || got.CIDR != "10.0.0.0/24" || got.Name != "sub1" {
				t.Errorf("got %+v", got)
			}
			check(t, got.GatewayIP, tc.gw)
			check(t, got.AllocationPools, tc.pools)
			check(t, got.EnableDHCP, tc.dhcp)
			check(t, got.HostRoutes, tc.routes)
		})
	}
}

func TestApplySubnet(t *testing.T) {
	ix := testIndex()
	for _, tc := range []struct {
		name    string
		req     string
		create  bool
		want    netv1.SubnetSpec
		wantErr string
	}{
		{"create", `{"network_id":"net1-id","cidr":"10.1.0.0/24","ip_version":4,"gateway_ip":"10.1.0.254","allocation_pools":[{"start":"10.1.0.10","end":"10.1.0.20"}],"dns_nameservers":["1.1.1.1"],"host_routes":[{"destination":"0.0.0.0/0","nexthop":"10.1.0.1"}],"enable_dhcp":false}`, true,
			netv1.SubnetSpec{Network: "net1", CIDR: "10.1.0.0/24", GatewayIP: "10.1.0.254", AllocationPools: []netv1.AllocationPool{{Start: "10.1.0.10", End: "10.1.0.20"}},
				DNSNameservers: []string{"1.1.1.1"}, HostRoutes: []netv1.HostRoute{{Destination: "0.0.0.0/0", NextHop: "10.1.0.1"}}, EnableDHCP: ptr(false)}, ""},
		{"no gateway", `{"network_id":"net1-id","cidr":"10.1.0.0/24","gateway_ip":null}`, true, netv1.SubnetSpec{Network: "net1", CIDR: "10.1.0.0/24", NoGateway: true}, ""},
		{"another project's network", `{"network_id":"other-id","cidr":"10.1.0.0/24"}`, true, netv1.SubnetSpec{}, "NetworkNotFound"},
		{"an external network of another project", `{"network_id":"public-id","cidr":"10.1.0.0/24"}`, true, netv1.SubnetSpec{}, "NetworkNotFound"},
		{"ipv6", `{"network_id":"net1-id","cidr":"fd00::/64","ip_version":6}`, true, netv1.SubnetSpec{}, "HTTPBadRequest"},
		{"no cidr", `{"network_id":"net1-id"}`, true, netv1.SubnetSpec{}, "HTTPBadRequest"},
		{"update cidr", `{"cidr":"10.2.0.0/24"}`, false, netv1.SubnetSpec{}, "HTTPBadRequest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req SubnetRequest
			if err := json.Unmarshal([]byte(tc.req), &req); err != nil {
				t.Fatal(err)
			}
			sn := &netv1.Subnet{}
			err := ApplySubnet(sn, req, "p1", ix, tc.create)
			if errType(err) != tc.wantErr {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if err == nil {
				check(t, sn.Spec, tc.want)
			}
		})
	}
}

func TestPortToNeutron(t *testing.T) {
	ix := testIndex()
	for _, tc := range []struct {
		name  string
		in    netv1.Port
		check func(t *testing.T, p Port)
	}{{
		name: "a VM's port, bound",
		in: netv1.Port{Spec: netv1.PortSpec{Network: "net1", Device: &netv1.PortDevice{Kind: netv1.DeviceVirtualMachine, Name: "vm1"}},
			Status: netv1.PortStatus{FixedIPs: []netv1.FixedIP{{Subnet: "sub1", IPAddress: "10.0.0.5"}}, MACAddress: "fa:16:3e:00:00:01", NodeName: "node1", Status: "ACTIVE"}},
		check: func(t *testing.T, p Port) {
			check(t, p.FixedIPs, []FixedIP{{"sub1-id", "10.0.0.5"}})
			check(t, []string{p.DeviceOwner, p.DeviceID, p.HostID, p.MACAddress, p.Status, p.NetworkID}, []string{"compute:nova", "vm1-id", "node1", "fa:16:3e:00:00:01", "ACTIVE", "net1-id"})
			check(t, p.SecurityGroups, []string{"default-id"})
		},
	}, {
		name: "unallocated, asked-for address, own groups",
		in:   netv1.Port{Spec: netv1.PortSpec{Network: "net1", FixedIPs: []netv1.FixedIP{{IPAddress: "10.0.0.9"}}, SecurityGroups: []string{"web"}}},
		check: func(t *testing.T, p Port) {
			check(t, p.FixedIPs, []FixedIP{{"sub1-id", "10.0.0.9"}})
			check(t, []string{p.DeviceOwner, p.DeviceID, p.Status}, []string{"", "", "DOWN"})
			check(t, p.SecurityGroups, []string{"web-id"})
		},
	}, {
		name: "router interface without port security",
		in:   netv1.Port{Spec: netv1.PortSpec{Network: "net1", PortSecurityEnabled: ptr(false), Device: &netv1.PortDevice{Kind: netv1.DeviceRouterInterface, Name: "router1"}}},
		check: func(t *testing.T, p Port) {
			check(t, []string{p.DeviceOwner, p.DeviceID}, []string{"network:router_interface", "router1-id"})
			check(t, p.SecurityGroups, []string{})
			check(t, p.PortSecurityEnabled, false)
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.ObjectMeta = objMeta("p1", "port1", "port1-id")
			tc.check(t, PortToNeutron(&tc.in, ix, "proj"))
		})
	}
}

func TestApplyPort(t *testing.T) {
	ix := testIndex()
	for _, tc := range []struct {
		name    string
		req     string
		create  bool
		want    netv1.PortSpec
		wantErr string
	}{
		{"create", `{"network_id":"net1-id","fixed_ips":[{"subnet_id":"sub1-id","ip_address":"10.0.0.7"}],"mac_address":"fa:16:3e:00:00:02","security_groups":["web-id"],"binding:host_id":"x"}`, true,
			netv1.PortSpec{Network: "net1", FixedIPs: []netv1.FixedIP{{Subnet: "sub1", IPAddress: "10.0.0.7"}}, MACAddress: "fa:16:3e:00:00:02", SecurityGroups: []string{"web"}}, ""},
		{"port security off", `{"network_id":"net1-id","port_security_enabled":false}`, true, netv1.PortSpec{Network: "net1", PortSecurityEnabled: ptr(false)}, ""},
		{"another project's subnet", `{"network_id":"net1-id","fixed_ips":[{"subnet_id":"othersub-id"}]}`, true, netv1.PortSpec{}, "SubnetNotFound"},
		{"unknown group", `{"network_id":"net1-id","security_groups":["nope"]}`, true, netv1.PortSpec{}, "SecurityGroupNotFound"},
		{"update network", `{"network_id":"net1-id"}`, false, netv1.PortSpec{}, "HTTPBadRequest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req PortRequest
			if err := json.Unmarshal([]byte(tc.req), &req); err != nil {
				t.Fatal(err)
			}
			p := &netv1.Port{}
			err := ApplyPort(p, req, "p1", ix, tc.create)
			if errType(err) != tc.wantErr {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if err == nil {
				check(t, p.Spec, tc.want)
			}
		})
	}
}

func TestRouter(t *testing.T) {
	ix := testIndex()
	rt := netv1.Router{ObjectMeta: objMeta("p1", "router1", "router1-id"),
		Spec:   netv1.RouterSpec{ExternalGateway: &netv1.ExternalGateway{Network: netv1.NetworkRef{Namespace: "infra", Name: "public"}}, Interfaces: []netv1.RouterInterface{{Subnet: "sub1"}}},
		Status: netv1.RouterStatus{ExternalIP: "192.0.2.10", Status: "ACTIVE"}}
	got := RouterToNeutron(&rt, ix, "proj")
	check(t, got.ExternalGatewayInfo, &GatewayInfo{NetworkID: "public-id", EnableSNAT: ptr(true), ExternalFixedIPs: []FixedIP{{"pubsub-id", "192.0.2.10"}}})
	check(t, got.Status, "ACTIVE")
	rt.Spec.ExternalGateway = nil
	check(t, RouterToNeutron(&rt, ix, "proj").ExternalGatewayInfo, nil)

	for _, tc := range []struct {
		name    string
		req     string
		want    *netv1.ExternalGateway
		wantErr string
	}{
		{"gateway on another project's external network", `{"external_gateway_info":{"network_id":"public-id","enable_snat":false,"external_fixed_ips":[{"ip_address":"192.0.2.7"}]}}`,
			&netv1.ExternalGateway{Network: netv1.NetworkRef{Namespace: "infra", Name: "public"}, EnableSNAT: ptr(false), ExternalIP: "192.0.2.7"}, ""},
		{"gateway on own network", `{"external_gateway_info":{"network_id":"net1-id"}}`, &netv1.ExternalGateway{Network: netv1.NetworkRef{Name: "net1"}}, ""},
		{"clear with null", `{"external_gateway_info":null}`, nil, ""},
		{"clear with {}", `{"external_gateway_info":{}}`, nil, ""},
		{"invisible network", `{"external_gateway_info":{"network_id":"nope"}}`, nil, "ExternalNetworkNotFound"},
		{"extra routes", `{"routes":[{"destination":"0.0.0.0/0","nexthop":"10.0.0.1"}]}`, nil, "HTTPBadRequest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req RouterRequest
			if err := json.Unmarshal([]byte(tc.req), &req); err != nil {
				t.Fatal(err)
			}
			r := &netv1.Router{Spec: netv1.RouterSpec{ExternalGateway: &netv1.ExternalGateway{Network: netv1.NetworkRef{Name: "old"}}}}
			err := ApplyRouter(r, req, "p1", ix)
			if errType(err) != tc.wantErr {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if err == nil {
				check(t, r.Spec.ExternalGateway, tc.want)
			}
		})
	}
}

func TestFloatingIP(t *testing.T) {
	ix := testIndex()
	f := netv1.FloatingIP{ObjectMeta: objMeta("p1", "fip-1", "fip-id"),
		Spec:   netv1.FloatingIPSpec{Network: netv1.NetworkRef{Namespace: "infra", Name: "public"}, Port: "port1"},
		Status: netv1.FloatingIPStatus{FloatingIPAddress: "192.0.2.20", FixedIPAddress: "10.0.0.5", Router: "router1", Status: "ACTIVE"}}
	got := FloatingIPToNeutron(&f, ix, "proj")
	check(t, got, FloatingIP{ID: "fip-id", ProjectID: "proj", TenantID: "proj", FloatingIPAddress: "192.0.2.20", FloatingNetworkID: "public-id",
		RouterID: ptr("router1-id"), PortID: ptr("port1-id"), FixedIPAddress: ptr("10.0.0.5"), Status: "ACTIVE", Tags: []string{}})
	un := netv1.FloatingIP{ObjectMeta: objMeta("p1", "fip-2", "fip2-id"), Spec: netv1.FloatingIPSpec{Network: netv1.NetworkRef{Namespace: "infra", Name: "public"}}}
	got = FloatingIPToNeutron(&un, ix, "proj")
	if got.PortID != nil || got.RouterID != nil || got.FixedIPAddress != nil || got.Status != "DOWN" {
		t.Errorf("unassociated: %+v", got)
	}

	for _, tc := range []struct {
		name    string
		req     string
		create  bool
		want    netv1.FloatingIPSpec
		wantErr string
	}{
		{"create associated", `{"floating_network_id":"public-id","port_id":"port1-id","fixed_ip_address":"10.0.0.5","floating_ip_address":"192.0.2.30"}`, true,
			netv1.FloatingIPSpec{Network: netv1.NetworkRef{Namespace: "infra", Name: "public"}, Port: "port1", FixedIPAddress: "10.0.0.5", FloatingIPAddress: "192.0.2.30"}, ""},
		{"disassociate", `{"port_id":null}`, false, netv1.FloatingIPSpec{Network: netv1.NetworkRef{Namespace: "infra", Name: "public"}}, ""},
		{"unknown port", `{"port_id":"nope"}`, false, netv1.FloatingIPSpec{}, "PortNotFound"},
		{"no network", `{}`, true, netv1.FloatingIPSpec{}, "HTTPBadRequest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req FloatingIPRequest
			if err := json.Unmarshal([]byte(tc.req), &req); err != nil {
				t.Fatal(err)
			}
			f := &netv1.FloatingIP{}
			if !tc.create {
				f.Spec = netv1.FloatingIPSpec{Network: netv1.NetworkRef{Namespace: "infra", Name: "public"}, Port: "port1", FixedIPAddress: "10.0.0.5"}
			}
			err := ApplyFloatingIP(f, req, "p1", ix, tc.create)
			if errType(err) != tc.wantErr {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if err == nil {
				check(t, f.Spec, tc.want)
			}
		})
	}
}

func TestSecurityGroup(t *testing.T) {
	ix := testIndex()
	g := netv1.SecurityGroup{ObjectMeta: objMeta("p1", "web", "web-id", AnnotationName, "Web servers"),
		Spec: netv1.SecurityGroupSpec{Description: "http", Rules: []netv1.SecurityGroupRule{
			{ID: "r1", Direction: "ingress", Protocol: "tcp", PortRangeMin: ptr(int32(80)), PortRangeMax: ptr(int32(80)), RemoteIPPrefix: "0.0.0.0/0"},
			{Direction: "ingress", RemoteGroup: "default"},
			{Direction: "ingress", RemoteGroup: "default"},
		}}}
	got := SecurityGroupToNeutron(&g, ix, "proj")
	if got.Name != "Web servers" || got.Description != "http" || got.ID != "web-id" || len(got.Rules) != 3 {
		t.Fatalf("got %+v", got)
	}
	check(t, got.Rules[0], SecurityGroupRule{ID: "r1", SecurityGroupID: "web-id", Direction: "ingress", Ethertype: "IPv4", Protocol: ptr("tcp"),
		PortRangeMin: ptr(int32(80)), PortRangeMax: ptr(int32(80)), RemoteIPPrefix: ptr("0.0.0.0/0"), ProjectID: "proj", TenantID: "proj"})
	check(t, got.Rules[1].RemoteGroupID, ptr("default-id"))
	check(t, got.Rules[1].Protocol, nil)
	// Derived IDs: stable, distinct for identical rules, unchanged when
	// another rule goes.
	ids := RuleIDs(&g)
	if ids[1] == ids[2] || len(ids[1]) != 36 {
		t.Errorf("derived ids %v", ids)
	}
	g.Spec.Rules = g.Spec.Rules[1:]
	check(t, RuleIDs(&g)[0], ids[1])

	for _, tc := range []struct {
		name    string
		req     string
		want    netv1.SecurityGroupRule
		wantErr string
	}{
		{"tcp 22 from anywhere", `{"security_group_id":"web-id","direction":"ingress","protocol":"tcp","port_range_min":22,"port_range_max":22,"remote_ip_prefix":"0.0.0.0/0"}`,
			netv1.SecurityGroupRule{Direction: "ingress", Ethertype: "IPv4", Protocol: "tcp", PortRangeMin: ptr(int32(22)), PortRangeMax: ptr(int32(22)), RemoteIPPrefix: "0.0.0.0/0"}, ""},
		{"protocol by number", `{"security_group_id":"web-id","direction":"ingress","protocol":"17"}`, netv1.SecurityGroupRule{Direction: "ingress", Ethertype: "IPv4", Protocol: "udp"}, ""},
		{"protocol number as JSON number", `{"security_group_id":"web-id","direction":"ingress","protocol":1}`, netv1.SecurityGroupRule{Direction: "ingress", Ethertype: "IPv4", Protocol: "icmp"}, ""},
		{"any protocol, remote group", `{"security_group_id":"web-id","direction":"egress","protocol":null,"remote_group_id":"default-id"}`,
			netv1.SecurityGroupRule{Direction: "egress", Ethertype: "IPv4", Protocol: "any", RemoteGroup: "default"}, ""},
		{"unknown group", `{"security_group_id":"nope","direction":"ingress"}`, netv1.SecurityGroupRule{}, "SecurityGroupNotFound"},
		{"no direction", `{"security_group_id":"web-id"}`, netv1.SecurityGroupRule{}, "HTTPBadRequest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req SecurityGroupRuleRequest
			if err := json.Unmarshal([]byte(tc.req), &req); err != nil {
				t.Fatal(err)
			}
			group, r, err := RuleFromNeutron(req, "p1", ix)
			if errType(err) != tc.wantErr {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if err == nil {
				check(t, group, "web")
				check(t, r, tc.want)
			}
		})
	}
}

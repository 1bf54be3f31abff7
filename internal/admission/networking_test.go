package admission

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8sadmission "k8s.io/apiserver/pkg/admission"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
)

func toUnstructured(t *testing.T, kind string, obj any) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(networkingv1alpha1.GroupVersion.String())
	u.SetKind(kind)
	return u
}

func newNetworkPlugin(t *testing.T, objs ...runtime.Object) k8sadmission.ValidationInterface {
	t.Helper()
	plugins := k8sadmission.NewPlugins()
	Register(plugins)
	if _, err := plugins.InitPlugin(NetworkIntegrity, nil, k8sadmission.PluginInitializers{}); err == nil {
		t.Error("the plugin initializes without a client")
	}
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		subnetsGVR: "SubnetList", portsGVR: "PortList", networksGVR: "NetworkList", routersGVR: "RouterList", fipsGVR: "FloatingIPList",
	}, objs...)
	p, err := plugins.InitPlugin(NetworkIntegrity, nil, dynamicInitializer{client})
	if err != nil {
		t.Fatal(err)
	}
	return p.(k8sadmission.ValidationInterface)
}

func om(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

func networkingFixture(t *testing.T) []runtime.Object {
	t.Helper()
	held := networkingv1alpha1.Port{ObjectMeta: om("p", "held"), Spec: networkingv1alpha1.PortSpec{Network: "n"},
		Status: networkingv1alpha1.PortStatus{FixedIPs: []networkingv1alpha1.FixedIP{{Subnet: "s1", IPAddress: "10.0.0.5"}}}}
	lonely := networkingv1alpha1.Port{ObjectMeta: om("p", "lonely"), Spec: networkingv1alpha1.PortSpec{Network: "n"},
		Status: networkingv1alpha1.PortStatus{FixedIPs: []networkingv1alpha1.FixedIP{{Subnet: "s3", IPAddress: "10.9.0.5"}}}}
	now := metav1.Now()
	going := networkingv1alpha1.Port{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "going", DeletionTimestamp: &now, Finalizers: []string{"x"}}, Spec: networkingv1alpha1.PortSpec{Network: "n"},
		Status: networkingv1alpha1.PortStatus{FixedIPs: []networkingv1alpha1.FixedIP{{Subnet: "s4", IPAddress: "10.10.0.5"}}}}
	return []runtime.Object{
		toUnstructured(t, "Network", &networkingv1alpha1.Network{ObjectMeta: om("admin", "public"), Spec: networkingv1alpha1.NetworkSpec{External: true}}),
		toUnstructured(t, "Network", &networkingv1alpha1.Network{ObjectMeta: om("p", "n")}),
		toUnstructured(t, "Subnet", &networkingv1alpha1.Subnet{ObjectMeta: om("p", "s1"), Spec: networkingv1alpha1.SubnetSpec{Network: "n", CIDR: "10.0.0.0/24"}}),
		toUnstructured(t, "Subnet", &networkingv1alpha1.Subnet{ObjectMeta: om("p", "s2"), Spec: networkingv1alpha1.SubnetSpec{Network: "n", CIDR: "10.0.0.0/16"}}),
		toUnstructured(t, "Subnet", &networkingv1alpha1.Subnet{ObjectMeta: om("p", "s3"), Spec: networkingv1alpha1.SubnetSpec{Network: "n", CIDR: "10.9.0.0/24"}}),
		toUnstructured(t, "Port", &held), toUnstructured(t, "Port", &lonely), toUnstructured(t, "Port", &going),
		toUnstructured(t, "Router", &networkingv1alpha1.Router{ObjectMeta: om("p", "r1"), Spec: networkingv1alpha1.RouterSpec{
			ExternalGateway: &networkingv1alpha1.ExternalGateway{Network: networkingv1alpha1.NetworkRef{Namespace: "admin", Name: "public"}},
			Interfaces:      []networkingv1alpha1.RouterInterface{{Subnet: "s1"}},
		}, Status: networkingv1alpha1.RouterStatus{ExternalIP: "203.0.113.100"}}),
		toUnstructured(t, "Subnet", &networkingv1alpha1.Subnet{ObjectMeta: om("admin", "public-v4"), Spec: networkingv1alpha1.SubnetSpec{Network: "public", CIDR: "203.0.113.0/24"}}),
		toUnstructured(t, "Subnet", &networkingv1alpha1.Subnet{ObjectMeta: om("p", "s4"), Spec: networkingv1alpha1.SubnetSpec{Network: "n", CIDR: "10.10.0.0/24"}}),
		toUnstructured(t, "Subnet", &networkingv1alpha1.Subnet{ObjectMeta: om("p", "s5"), Spec: networkingv1alpha1.SubnetSpec{Network: "n", CIDR: "10.0.128.0/24"}}),
		namespace("p", false),
	}
}

func attrs(t *testing.T, op k8sadmission.Operation, resource, kind string, obj, old any, ns, name string) k8sadmission.Attributes {
	var o, oo runtime.Object
	if obj != nil {
		o = toUnstructured(t, kind, obj)
	}
	if old != nil {
		oo = toUnstructured(t, kind, old)
	}
	var opts runtime.Object = &metav1.CreateOptions{}
	switch op {
	case k8sadmission.Update:
		opts = &metav1.UpdateOptions{}
	case k8sadmission.Delete:
		opts = &metav1.DeleteOptions{}
	}
	return k8sadmission.NewAttributesRecord(o, oo, networkingv1alpha1.GroupVersion.WithKind(kind), ns, name,
		networkingv1alpha1.GroupVersion.WithResource(resource), "", op, opts, false, nil)
}

func wantStatus(t *testing.T, what string, err error, code int32, msg string) {
	t.Helper()
	if code == 0 {
		if err != nil {
			t.Errorf("%s: %v, want allowed", what, err)
		}
		return
	}
	status, ok := err.(apierrors.APIStatus)
	if !ok {
		t.Errorf("%s: %v, want %d", what, err, code)
		return
	}
	if s := status.Status(); s.Code != code || !strings.Contains(s.Message, msg) {
		t.Errorf("%s: %d %q, want %d with %q", what, s.Code, s.Message, code, msg)
	}
}

func TestNetworkIntegrity(t *testing.T) {
	p := newNetworkPlugin(t, networkingFixture(t)...)
	ctx := context.Background()
	ext := networkingv1alpha1.NetworkRef{Namespace: "admin", Name: "public"}
	port := func(name, subnet, ip string) *networkingv1alpha1.Port {
		return &networkingv1alpha1.Port{ObjectMeta: om("p", name), Spec: networkingv1alpha1.PortSpec{Network: "n", FixedIPs: []networkingv1alpha1.FixedIP{{Subnet: subnet, IPAddress: ip}}}}
	}
	router := func(gw *networkingv1alpha1.NetworkRef, ifaces ...string) *networkingv1alpha1.Router {
		r := &networkingv1alpha1.Router{ObjectMeta: om("p", "r2")}
		if gw != nil {
			r.Spec.ExternalGateway = &networkingv1alpha1.ExternalGateway{Network: *gw}
		}
		for _, s := range ifaces {
			r.Spec.Interfaces = append(r.Spec.Interfaces, networkingv1alpha1.RouterInterface{Subnet: s})
		}
		return r
	}
	fip := func(network networkingv1alpha1.NetworkRef, port, fixed string) *networkingv1alpha1.FloatingIP {
		return &networkingv1alpha1.FloatingIP{ObjectMeta: om("p", "f"), Spec: networkingv1alpha1.FloatingIPSpec{Network: network, Port: port, FixedIPAddress: fixed}}
	}
	tests := []struct {
		what string
		a    k8sadmission.Attributes
		code int32
		msg  string
	}{
		{"delete a subnet with ports", attrs(t, k8sadmission.Delete, "subnets", "Subnet", nil, nil, "p", "s1"), 409,
			"Unable to complete operation on subnet s1: One or more ports have an IP allocation from this subnet."},
		{"delete an unused subnet", attrs(t, k8sadmission.Delete, "subnets", "Subnet", nil, nil, "p", "s2"), 0, ""},
		{"delete an external subnet a router's gateway is on", attrs(t, k8sadmission.Delete, "subnets", "Subnet", nil, nil, "admin", "public-v4"), 409, "public-v4"},
		{"delete a subnet whose only port is being deleted", attrs(t, k8sadmission.Delete, "subnets", "Subnet", nil, nil, "p", "s4"), 0, ""},

		{"subnet overlapping another of its network", attrs(t, k8sadmission.Create, "subnets", "Subnet", &networkingv1alpha1.Subnet{ObjectMeta: om("p", "s9"), Spec: networkingv1alpha1.SubnetSpec{Network: "n", CIDR: "10.9.0.128/25"}}, nil, "p", "s9"), 400,
			"Requested subnet with cidr: 10.9.0.128/25 for network: n overlaps with another subnet: s3 (10.9.0.0/24)"},
		{"subnet with the same cidr on another network", attrs(t, k8sadmission.Create, "subnets", "Subnet", &networkingv1alpha1.Subnet{ObjectMeta: om("p", "s9"), Spec: networkingv1alpha1.SubnetSpec{Network: "other", CIDR: "10.9.0.0/24"}}, nil, "p", "s9"), 0, ""},
		{"port outside every subnet", attrs(t, k8sadmission.Create, "ports", "Port", port("x", "", "192.168.1.1"), nil, "p", "x"), 422, "spec.fixedIPs[0].ipAddress"},
		{"port outside its subnet", attrs(t, k8sadmission.Create, "ports", "Port", port("x", "s3", "10.0.0.9"), nil, "p", "x"), 422, "subnet s3"},
		{"port on a held address", attrs(t, k8sadmission.Create, "ports", "Port", port("x", "", "10.0.0.5"), nil, "p", "x"), 409, "IP address 10.0.0.5 already allocated in subnet s1"},
		{"port on a free address", attrs(t, k8sadmission.Create, "ports", "Port", port("x", "", "10.0.0.6"), nil, "p", "x"), 0, ""},
		{"port without a fixed address", attrs(t, k8sadmission.Create, "ports", "Port", port("x", "", ""), nil, "p", "x"), 0, ""},

		{"router with overlapping interfaces", attrs(t, k8sadmission.Create, "routers", "Router", router(nil, "s3", "s2", "s5"), nil, "p", "r2"), 400,
			"Bad router request: Cidr 10.0.128.0/24 of subnet s5 overlaps with cidr 10.0.0.0/16 of subnet s2."},
		{"router gateway on an internal network", attrs(t, k8sadmission.Create, "routers", "Router", router(&networkingv1alpha1.NetworkRef{Name: "n"}), nil, "p", "r2"), 400,
			"Bad router request: Network p/n is not a valid external network."},
		{"router gateway on a missing network", attrs(t, k8sadmission.Create, "routers", "Router", router(&networkingv1alpha1.NetworkRef{Name: "nope"}), nil, "p", "r2"), 404, "Network p/nope could not be found."},
		{"router on a subnet r1 has", attrs(t, k8sadmission.Create, "routers", "Router", router(&ext, "s1", "s3"), nil, "p", "r2"), 409, "Subnet s1 is already attached to router r1."},
		{"good router", attrs(t, k8sadmission.Create, "routers", "Router", router(&ext, "s3"), nil, "p", "r2"), 0, ""},
		{"r1 changes its gateway", attrs(t, k8sadmission.Update, "routers", "Router", func() *networkingv1alpha1.Router { r := router(nil, "s1"); r.Name = "r1"; return r }(), func() *networkingv1alpha1.Router { r := router(&ext, "s1"); r.Name = "r1"; return r }(), "p", "r1"), 0, ""},
		{"finalizer removal on a bad router", attrs(t, k8sadmission.Update, "routers", "Router", router(nil, "s1", "s2"), router(nil, "s1", "s2"), "p", "r2"), 0, ""},

		{"floating IP on an internal network", attrs(t, k8sadmission.Create, "floatingips", "FloatingIP", fip(networkingv1alpha1.NetworkRef{Name: "n"}, "", ""), nil, "p", "f"), 400,
			"Bad floatingip request: Network p/n is not a valid external network."},
		{"floating IP to a missing port", attrs(t, k8sadmission.Create, "floatingips", "FloatingIP", fip(ext, "nope", ""), nil, "p", "f"), 404, "Port nope could not be found."},
		{"floating IP to a port no router reaches", attrs(t, k8sadmission.Create, "floatingips", "FloatingIP", fip(ext, "lonely", ""), nil, "p", "f"), 404,
			"External network admin/public is not reachable from subnet s3"},
		{"floating IP on a fixed IP the port lacks", attrs(t, k8sadmission.Create, "floatingips", "FloatingIP", fip(ext, "held", "10.0.0.99"), nil, "p", "f"), 400,
			"Port held does not have fixed ip 10.0.0.99"},
		{"floating IP to a reachable port", attrs(t, k8sadmission.Create, "floatingips", "FloatingIP", fip(ext, "held", ""), nil, "p", "f"), 0, ""},
		{"moving a floating IP where no router reaches", attrs(t, k8sadmission.Update, "floatingips", "FloatingIP", fip(ext, "lonely", ""), fip(ext, "held", ""), "p", "f"), 404, "not reachable"},
	}
	for _, tt := range tests {
		wantStatus(t, tt.what, p.Validate(ctx, tt.a, nil), tt.code, tt.msg)
	}
	// A router interface holds its subnet's gateway address.
	p = newNetworkPlugin(t, append(networkingFixture(t), toUnstructured(t, "Router", &networkingv1alpha1.Router{ObjectMeta: om("p", "r3"),
		Spec: networkingv1alpha1.RouterSpec{Interfaces: []networkingv1alpha1.RouterInterface{{Subnet: "s5"}}}}))...)
	wantStatus(t, "delete a subnet with a router interface", p.Validate(ctx, attrs(t, k8sadmission.Delete, "subnets", "Subnet", nil, nil, "p", "s5"), nil), 409, "subnet s5")
	// A namespace being deleted takes its subnets with their ports.
	p = newNetworkPlugin(t, append(networkingFixture(t)[:12], namespace("p", true))...)
	wantStatus(t, "delete a used subnet of a namespace being deleted", p.Validate(ctx, attrs(t, k8sadmission.Delete, "subnets", "Subnet", nil, nil, "p", "s1"), nil), 0, "")
}

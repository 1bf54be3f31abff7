package networking

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/floatingip"
	"github.com/strata-cloud/strata/internal/controller/network"
	"github.com/strata-cloud/strata/internal/controller/podport"
	"github.com/strata-cloud/strata/internal/controller/port"
	"github.com/strata-cloud/strata/internal/controller/router"
	"github.com/strata-cloud/strata/internal/controller/securitygroup"
	"github.com/strata-cloud/strata/internal/controller/subnet"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func meta0(ns, name string, age int) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name), CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(age) * time.Minute))}
}

func net(ns, name string, age int, mutate ...func(*networkingv1alpha1.Network)) *networkingv1alpha1.Network {
	n := &networkingv1alpha1.Network{ObjectMeta: meta0(ns, name, age), Spec: networkingv1alpha1.NetworkSpec{ProviderType: networkingv1alpha1.ProviderVXLAN}}
	for _, m := range mutate {
		m(n)
	}
	return n
}

func sub(ns, name, network, cidr string, age int, mutate ...func(*networkingv1alpha1.Subnet)) *networkingv1alpha1.Subnet {
	s := &networkingv1alpha1.Subnet{ObjectMeta: meta0(ns, name, age), Spec: networkingv1alpha1.SubnetSpec{Network: network, CIDR: cidr}}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func prt(ns, name, network string, age int, fixed ...networkingv1alpha1.FixedIP) *networkingv1alpha1.Port {
	return &networkingv1alpha1.Port{ObjectMeta: meta0(ns, name, age), Spec: networkingv1alpha1.PortSpec{Network: network, FixedIPs: fixed}}
}

func node(name string, ready bool) *corev1.Node {
	s := corev1.ConditionFalse
	if ready {
		s = corev1.ConditionTrue
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: s}}}}
}

type env struct {
	t    *testing.T
	c    client.Client
	ipam subnet.IPAM
	now  time.Time
	sub  *subnet.Reconciler
}

func newEnv(t *testing.T, objs ...client.Object) *env {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := networkingv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).
		WithStatusSubresource(&networkingv1alpha1.Network{}, &networkingv1alpha1.Subnet{}, &networkingv1alpha1.Port{}, &networkingv1alpha1.Router{}, &networkingv1alpha1.FloatingIP{}).
		Build()
	e := &env{t: t, c: c, ipam: subnet.IPAM{Client: c, Reader: c}, now: t0}
	e.sub = &subnet.Reconciler{Client: c, LeakGrace: time.Minute, Now: func() time.Time { return e.now }}
	return e
}

type reconciler interface {
	Reconcile(context.Context, ctrl.Request) (ctrl.Result, error)
}

func (e *env) run(r reconciler, ns, name string) {
	e.t.Helper()
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}); err != nil {
		e.t.Fatalf("reconcile %s/%s: %v", ns, name, err)
	}
}

func (e *env) network(ns, name string) *networkingv1alpha1.Network {
	e.t.Helper()
	e.run(&network.Reconciler{Client: e.c, Reader: e.c}, ns, name)
	n := &networkingv1alpha1.Network{}
	e.get(ns, name, n)
	return n
}

func (e *env) subnet(ns, name string) *networkingv1alpha1.Subnet {
	e.t.Helper()
	e.run(e.sub, ns, name)
	s := &networkingv1alpha1.Subnet{}
	e.get(ns, name, s)
	return s
}

func (e *env) port(ns, name string) *networkingv1alpha1.Port {
	e.t.Helper()
	e.run(&port.Reconciler{Client: e.c, IPAM: e.ipam}, ns, name)
	p := &networkingv1alpha1.Port{}
	e.get(ns, name, p)
	return p
}

func (e *env) router(ns, name string) *networkingv1alpha1.Router {
	e.t.Helper()
	e.run(&router.Reconciler{Client: e.c, IPAM: e.ipam}, ns, name)
	r := &networkingv1alpha1.Router{}
	e.get(ns, name, r)
	return r
}

func (e *env) fip(ns, name string) *networkingv1alpha1.FloatingIP {
	e.t.Helper()
	e.run(&floatingip.Reconciler{Client: e.c, IPAM: e.ipam}, ns, name)
	f := &networkingv1alpha1.FloatingIP{}
	e.get(ns, name, f)
	return f
}

func (e *env) get(ns, name string, o client.Object) {
	e.t.Helper()
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, o); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) allocated(ns, name string) string {
	e.t.Helper()
	s := &networkingv1alpha1.Subnet{}
	e.get(ns, name, s)
	a, err := subnet.Open(s)
	if err != nil {
		e.t.Fatal(err)
	}
	return fmt.Sprint(a.Allocated())
}

func ready(conds []metav1.Condition) (bool, string, string) {
	c := meta.FindStatusCondition(conds, networkingv1alpha1.ConditionReady)
	if c == nil {
		return false, "", ""
	}
	return c.Status == metav1.ConditionTrue, c.Reason, c.Message
}

func TestNetworkSegmentationIDs(t *testing.T) {
	e := newEnv(t,
		net("a", "n1", 1), net("b", "n2", 2),
		net("c", "ext", 0, func(n *networkingv1alpha1.Network) {
			n.Spec.ProviderType = networkingv1alpha1.ProviderFlat
			n.Spec.External = true
		}),
		sub("a", "s1", "n1", "10.0.0.0/24", 1))
	n1 := e.network("a", "n1")
	if n1.Status.SegmentationID != 100 || n1.Status.MTU != 1450 || n1.Status.Status != "ACTIVE" || strings.Join(n1.Status.Subnets, ",") != "s1" {
		t.Errorf("n1 status %+v, want VNI 100, MTU 1450, ACTIVE, subnets s1", n1.Status)
	}
	if n2 := e.network("b", "n2"); n2.Status.SegmentationID != 101 {
		t.Errorf("n2 VNI %d, want 101 (the lowest free)", n2.Status.SegmentationID)
	}
	// Asked for after n1 got it.
	if err := e.c.Create(context.Background(), net("b", "mine", 3, func(n *networkingv1alpha1.Network) { n.Spec.SegmentationID = ptr.To[int32](100) })); err != nil {
		t.Fatal(err)
	}
	mine := e.network("b", "mine")
	if ok, reason, msg := ready(mine.Status.Conditions); ok || reason != "SegmentationIDInUse" || mine.Status.Status != "ERROR" || !strings.Contains(msg, "100") {
		t.Errorf("an explicit VNI that n1 has: %v %s %q status %s, want SegmentationIDInUse", ok, reason, msg, mine.Status.Status)
	}
	ext := e.network("c", "ext")
	if ext.Status.SegmentationID != 0 || ext.Status.MTU != 1500 {
		t.Errorf("flat network status %+v, want no VNI, MTU 1500", ext.Status)
	}
	// Reconciling again keeps the VNIs.
	if n1 := e.network("a", "n1"); n1.Status.SegmentationID != 100 {
		t.Errorf("n1 VNI moved to %d", n1.Status.SegmentationID)
	}
}

func TestSegmentationIDTable(t *testing.T) {
	withStatus := func(v int32) func(*networkingv1alpha1.Network) {
		return func(n *networkingv1alpha1.Network) { n.Status.SegmentationID = v }
	}
	withSpec := func(v int32) func(*networkingv1alpha1.Network) {
		return func(n *networkingv1alpha1.Network) { n.Spec.SegmentationID = ptr.To(v) }
	}
	tests := []struct {
		name   string
		net    *networkingv1alpha1.Network
		others []networkingv1alpha1.Network
		want   int32
		reason string
	}{
		{"first", net("a", "x", 5), nil, 100, ""},
		{"skips held and asked", net("a", "x", 5), []networkingv1alpha1.Network{*net("a", "o", 1, withStatus(100)), *net("a", "p", 9, withSpec(101))}, 102, ""},
		{"keeps its own", net("a", "x", 5, withStatus(150)), []networkingv1alpha1.Network{*net("a", "o", 1, withStatus(100))}, 150, ""},
		{"older twin keeps a shared VNI", net("a", "x", 1, withStatus(100)), []networkingv1alpha1.Network{*net("a", "o", 5, withStatus(100))}, 100, ""},
		{"younger twin moves", net("a", "x", 5, withStatus(100)), []networkingv1alpha1.Network{*net("a", "o", 1, withStatus(100))}, 101, ""},
		{"explicit free", net("a", "x", 5, withSpec(7)), nil, 7, ""},
		{"explicit held by a younger one", net("a", "x", 5, withSpec(7)), []networkingv1alpha1.Network{*net("a", "o", 9, withStatus(7))}, 0, "SegmentationIDInUse"},
		{"explicit twice, older wins", net("a", "x", 1, withSpec(7)), []networkingv1alpha1.Network{*net("a", "o", 9, withSpec(7))}, 7, ""},
		{"flat ones do not count", net("a", "x", 5), []networkingv1alpha1.Network{*net("a", "o", 1, withStatus(100), func(n *networkingv1alpha1.Network) { n.Spec.ProviderType = "flat" })}, 100, ""},
	}
	for _, tt := range tests {
		got, p := network.SegmentationID(tt.net, append(tt.others, *tt.net))
		reason := ""
		if p != nil {
			reason = p.Reason
		}
		if got != tt.want || reason != tt.reason {
			t.Errorf("%s: %d %q, want %d %q", tt.name, got, reason, tt.want, tt.reason)
		}
	}
}

func TestSubnetStatusAndOverlap(t *testing.T) {
	e := newEnv(t, net("p", "n", 0),
		sub("p", "s1", "n", "10.0.0.0/24", 1),
		sub("p", "s2", "n", "10.0.0.128/25", 2),
		sub("p", "s3", "n", "10.1.0.0/24", 3, func(s *networkingv1alpha1.Subnet) {
			s.Spec.GatewayIP = "10.1.0.254"
			s.Spec.AllocationPools = []networkingv1alpha1.AllocationPool{{Start: "10.1.0.10", End: "10.1.0.19"}}
		}),
		sub("p", "orphan", "gone", "10.2.0.0/24", 4))
	s1 := e.subnet("p", "s1")
	if ok, _, _ := ready(s1.Status.Conditions); !ok || s1.Status.GatewayIP != "10.0.0.1" || s1.Status.Available != 253 || s1.Status.Used != 0 ||
		len(s1.Status.AllocationPools) != 1 || s1.Status.AllocationPools[0] != (networkingv1alpha1.AllocationPool{Start: "10.0.0.2", End: "10.0.0.254"}) {
		t.Errorf("s1 status %+v", s1.Status)
	}
	s2 := e.subnet("p", "s2")
	if ok, reason, msg := ready(s2.Status.Conditions); ok || reason != "Overlap" || !strings.Contains(msg, "s1") || s2.Status.Status != "ERROR" {
		t.Errorf("s2 (inside s1): %v %s %q, want Overlap naming s1", ok, reason, msg)
	}
	s3 := e.subnet("p", "s3")
	if s3.Status.GatewayIP != "10.1.0.254" || s3.Status.Available != 10 {
		t.Errorf("s3 status %+v, want gateway 10.1.0.254 and 10 available", s3.Status)
	}
	if ok, reason, _ := ready(e.subnet("p", "orphan").Status.Conditions); ok || reason != "NetworkNotFound" {
		t.Errorf("subnet of a missing network: %v %s", ok, reason)
	}
}

func TestPortAllocation(t *testing.T) {
	e := newEnv(t, net("p", "n", 0), net("p", "empty", 0), sub("p", "s1", "n", "10.0.0.0/24", 1), sub("p", "s2", "n", "10.0.1.0/24", 2),
		prt("p", "a", "n", 1),
		prt("p", "b", "n", 2, networkingv1alpha1.FixedIP{IPAddress: "10.0.1.50"}),
		prt("p", "dup", "n", 3, networkingv1alpha1.FixedIP{IPAddress: "10.0.1.50"}),
		prt("p", "outside", "n", 4, networkingv1alpha1.FixedIP{IPAddress: "192.168.0.5"}),
		prt("p", "gw", "n", 5, networkingv1alpha1.FixedIP{IPAddress: "10.0.0.1"}),
		prt("p", "nosubnet", "empty", 6),
		prt("p", "nonet", "nope", 7),
		prt("p", "mac", "n", 8))
	mac := &networkingv1alpha1.Port{}
	e.get("p", "mac", mac)
	mac.Spec.MACAddress = "fa:16:3e:00:00:01"
	if err := e.c.Update(context.Background(), mac); err != nil {
		t.Fatal(err)
	}

	a := e.port("p", "a")
	if len(a.Status.FixedIPs) != 1 || a.Status.FixedIPs[0] != (networkingv1alpha1.FixedIP{Subnet: "s1", IPAddress: "10.0.0.2"}) || a.Status.Status != "DOWN" ||
		!strings.HasPrefix(a.Status.MACAddress, "fa:16:3e:") || len(a.Finalizers) != 1 {
		t.Errorf("port a %+v %v, want 10.0.0.2 on s1, DOWN, a fa:16:3e MAC, a finalizer", a.Status, a.Finalizers)
	}
	if b := e.port("p", "b"); len(b.Status.FixedIPs) != 1 || b.Status.FixedIPs[0].Subnet != "s2" || b.Status.FixedIPs[0].IPAddress != "10.0.1.50" {
		t.Errorf("port b %+v, want 10.0.1.50 on s2", b.Status)
	}
	if got := e.allocated("p", "s2"); got != "[10.0.1.50]" {
		t.Errorf("s2 allocations %s", got)
	}
	for _, c := range []struct{ port, reason, msg string }{
		{"dup", "IPAddressInUse", "IP address 10.0.1.50 already allocated in subnet s2"},
		{"outside", "InvalidIPAddress", "192.168.0.5"},
		{"gw", "InvalidIPAddress", "10.0.0.1"},
		{"nosubnet", "NoSubnet", "empty"},
		{"nonet", "NetworkNotFound", "nope"},
	} {
		p := e.port("p", c.port)
		ok, reason, msg := ready(p.Status.Conditions)
		if ok || reason != c.reason || !strings.Contains(msg, c.msg) || p.Status.Status != "ERROR" || len(p.Status.FixedIPs) != 0 {
			t.Errorf("port %s: %v %s %q %s %v, want %s with %q", c.port, ok, reason, msg, p.Status.Status, p.Status.FixedIPs, c.reason, c.msg)
		}
	}
	if got := e.allocated("p", "s1"); got != "[10.0.0.2]" {
		t.Errorf("s1 allocations %s after refused ports, want only a's", got)
	}
	if m := e.port("p", "mac"); m.Status.MACAddress != "fa:16:3e:00:00:01" || m.Status.FixedIPs[0].IPAddress != "10.0.0.3" {
		t.Errorf("port mac %+v", m.Status)
	}

	// Nodes' fields stay.
	a.Status.Status, a.Status.NodeName = "ACTIVE", "node1"
	if err := e.c.Status().Update(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if a := e.port("p", "a"); a.Status.Status != "ACTIVE" || a.Status.NodeName != "node1" {
		t.Errorf("reconcile overwrote the node's fields: %+v", a.Status)
	}

	// Deleting a port gives its address back.
	if err := e.c.Delete(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	e.run(&port.Reconciler{Client: e.c, IPAM: e.ipam}, "p", "a")
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: "p", Name: "a"}, &networkingv1alpha1.Port{}); err == nil {
		t.Error("the deleted port is still there")
	}
	if got := e.allocated("p", "s1"); got != "[10.0.0.3]" {
		t.Errorf("s1 allocations %s after deleting a, want only mac's", got)
	}
}

func TestConcurrentPortReconcilersNeverShareAnAddress(t *testing.T) {
	const n = 40
	objs := []client.Object{net("p", "n", 0), sub("p", "s", "n", "10.0.0.0/24", 0)}
	for i := range n {
		objs = append(objs, prt("p", fmt.Sprintf("p%02d", i), "n", i))
	}
	e := newEnv(t, objs...)
	// Two "servers": each its own reconciler over the same API.
	rs := []*port.Reconciler{{Client: e.c, IPAM: e.ipam}, {Client: e.c, IPAM: e.ipam}}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				key := types.NamespacedName{Namespace: "p", Name: fmt.Sprintf("p%02d", (i+w*5)%n)}
				// A conflict is requeued by controller-runtime.
				if _, err := rs[w%2].Reconcile(context.Background(), ctrl.Request{NamespacedName: key}); err != nil && !apierrors.IsConflict(err) {
					t.Errorf("reconcile %s: %v", key, err)
				}
			}
		}()
	}
	wg.Wait()
	// Settle: every port once more.
	for i := range n {
		e.port("p", fmt.Sprintf("p%02d", i))
	}
	var ports networkingv1alpha1.PortList
	if err := e.c.List(context.Background(), &ports); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, p := range ports.Items {
		if len(p.Status.FixedIPs) != 1 {
			t.Errorf("port %s has %v", p.Name, p.Status.FixedIPs)
			continue
		}
		ip := p.Status.FixedIPs[0].IPAddress
		if other, dup := seen[ip]; dup {
			t.Errorf("%s given to %s and %s", ip, other, p.Name)
		}
		seen[ip] = p.Name
	}
	s := &networkingv1alpha1.Subnet{}
	e.get("p", "s", s)
	a, _ := subnet.Open(s)
	for ip := range seen {
		if !a.Has(netip.MustParseAddr(ip)) {
			t.Errorf("%s held by a port but free in the subnet", ip)
		}
	}
	// Allocations whose port write lost are leaks the repair frees.
	if a.Used() < n {
		t.Errorf("subnet has %d in use, want >= %d", a.Used(), n)
	}
}

func TestSubnetRepair(t *testing.T) {
	held := prt("p", "held", "n", 1)
	held.Status.FixedIPs = []networkingv1alpha1.FixedIP{{Subnet: "s", IPAddress: "10.0.0.7"}}
	s := sub("p", "s", "n", "10.0.0.0/24", 0)
	leak := netip.MustParseAddr("10.0.0.9")
	a, err := subnet.Open(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Allocate(leak); err != nil {
		t.Fatal(err)
	}
	s.Status.Allocations = a.Bytes()
	e := newEnv(t, net("p", "n", 0), s, held)
	e.subnet("p", "s")
	if got := e.allocated("p", "s"); got != "[10.0.0.7 10.0.0.9]" {
		t.Errorf("after a first repair: %s, want the port's address added and the leak kept for now", got)
	}
	e.now = e.now.Add(2 * time.Minute)
	if got := e.subnet("p", "s"); got.Status.Used != 1 || e.allocated("p", "s") != "[10.0.0.7]" {
		t.Errorf("after the grace: %s (used %d), want the leak freed", e.allocated("p", "s"), got.Status.Used)
	}
}

func routerObj(ns, name string, age int, ext *networkingv1alpha1.NetworkRef, ifaces ...string) *networkingv1alpha1.Router {
	r := &networkingv1alpha1.Router{ObjectMeta: meta0(ns, name, age)}
	if ext != nil {
		r.Spec.ExternalGateway = &networkingv1alpha1.ExternalGateway{Network: *ext}
	}
	for _, s := range ifaces {
		r.Spec.Interfaces = append(r.Spec.Interfaces, networkingv1alpha1.RouterInterface{Subnet: s})
	}
	return r
}

func external(n *networkingv1alpha1.Network) { n.Spec.External = true; n.Spec.ProviderType = "flat" }

func TestRoutersAndFloatingIPs(t *testing.T) {
	extRef := &networkingv1alpha1.NetworkRef{Namespace: "admin", Name: "public"}
	e := newEnv(t,
		node("node-a", true), node("node-b", false),
		net("admin", "public", 0, external), sub("admin", "public-v4", "public", "203.0.113.0/24", 0, func(s *networkingv1alpha1.Subnet) {
			s.Spec.AllocationPools = []networkingv1alpha1.AllocationPool{{Start: "203.0.113.100", End: "203.0.113.199"}}
		}),
		net("p", "n", 0), net("p", "private", 0),
		sub("p", "s1", "n", "10.0.0.0/24", 1), sub("p", "s2", "n", "10.0.0.0/16", 2), sub("p", "s3", "n", "10.9.0.0/24", 3),
		sub("p", "nogw", "n", "10.8.0.0/24", 4, func(s *networkingv1alpha1.Subnet) { s.Spec.NoGateway = true }),
		routerObj("p", "r1", 1, extRef, "s1"),
		routerObj("p", "overlap", 2, nil, "s3", "s2", "s1"),
		routerObj("p", "second", 3, nil, "s1"),
		routerObj("p", "badgw", 4, &networkingv1alpha1.NetworkRef{Name: "private"}),
		routerObj("p", "nogw", 5, nil, "nogw"),
		prt("p", "vm1", "n", 1), prt("p", "lonely", "n", 2, networkingv1alpha1.FixedIP{Subnet: "s3"}),
		&networkingv1alpha1.FloatingIP{ObjectMeta: meta0("p", "f1", 1), Spec: networkingv1alpha1.FloatingIPSpec{Network: *extRef, Port: "vm1"}},
		&networkingv1alpha1.FloatingIP{ObjectMeta: meta0("p", "f2", 2), Spec: networkingv1alpha1.FloatingIPSpec{Network: *extRef, FloatingIPAddress: "203.0.113.150"}},
		&networkingv1alpha1.FloatingIP{ObjectMeta: meta0("p", "f3", 3), Spec: networkingv1alpha1.FloatingIPSpec{Network: *extRef, Port: "lonely"}},
		&networkingv1alpha1.FloatingIP{ObjectMeta: meta0("p", "f4", 4), Spec: networkingv1alpha1.FloatingIPSpec{Network: networkingv1alpha1.NetworkRef{Name: "private"}}},
	)
	e.port("p", "vm1")
	e.port("p", "lonely")

	r1 := e.router("p", "r1")
	if ok, _, msg := ready(r1.Status.Conditions); !ok || r1.Status.ExternalIP != "203.0.113.100" || r1.Status.NodeName != "node-a" || r1.Status.Status != "ACTIVE" ||
		len(r1.Status.Interfaces) != 1 || r1.Status.Interfaces[0].IPAddress != "10.0.0.1" || !strings.HasPrefix(r1.Status.Interfaces[0].MACAddress, "fa:16:3e:") {
		t.Errorf("r1 %+v (%s)", r1.Status, msg)
	}
	ov := e.router("p", "overlap")
	if ok, reason, msg := ready(ov.Status.Conditions); ok || reason != "Overlap" || msg != "Bad router request: Cidr 10.0.0.0/24 of subnet s1 overlaps with cidr 10.0.0.0/16 of subnet s2." || len(ov.Status.Interfaces) != 2 {
		t.Errorf("overlapping interfaces: %v %s %q, interfaces %v", ok, reason, msg, ov.Status.Interfaces)
	}
	if ok, reason, msg := ready(e.router("p", "second").Status.Conditions); ok || reason != "SubnetInUse" || !strings.Contains(msg, "r1") {
		t.Errorf("a subnet r1 has: %v %s %q", ok, reason, msg)
	}
	if ok, reason, _ := ready(e.router("p", "badgw").Status.Conditions); ok || reason != "NetworkNotExternal" {
		t.Errorf("gateway on an internal network: %v %s", ok, reason)
	}
	if ok, reason, _ := ready(e.router("p", "nogw").Status.Conditions); ok || reason != "SubnetHasNoGateway" {
		t.Errorf("interface on a subnet without gateway: %v %s", ok, reason)
	}

	f1 := e.fip("p", "f1")
	if f1.Status.FloatingIPAddress != "203.0.113.101" || f1.Status.FixedIPAddress != "10.0.0.2" || f1.Status.Router != "r1" || f1.Status.NodeName != "node-a" || f1.Status.Status != "ACTIVE" {
		t.Errorf("f1 %+v", f1.Status)
	}
	if f2 := e.fip("p", "f2"); f2.Status.FloatingIPAddress != "203.0.113.150" || f2.Status.Status != "DOWN" {
		t.Errorf("unassociated f2 %+v", f2.Status)
	}
	f3 := e.fip("p", "f3")
	if ok, reason, msg := ready(f3.Status.Conditions); ok || reason != "ExternalGatewayForFloatingIPNotFound" || f3.Status.Status != "ERROR" ||
		!strings.Contains(msg, "External network admin/public is not reachable from subnet s3") {
		t.Errorf("f3 without a router: %v %s %q %s", ok, reason, msg, f3.Status.Status)
	}
	if ok, reason, _ := ready(e.fip("p", "f4").Status.Conditions); ok || reason != "NetworkNotExternal" {
		t.Errorf("f4 on an internal network: %v %s", ok, reason)
	}
	if got := e.allocated("admin", "public-v4"); got != "[203.0.113.100 203.0.113.101 203.0.113.102 203.0.113.150]" {
		t.Errorf("external allocations %s", got)
	}

	// The router's node goes NotReady: it moves; the floating IP follows.
	na := &corev1.Node{}
	e.get("", "node-a", na)
	na.Status.Conditions[0].Status = corev1.ConditionFalse
	if err := e.c.Status().Update(context.Background(), na); err != nil {
		t.Fatal(err)
	}
	nb := &corev1.Node{}
	e.get("", "node-b", nb)
	nb.Status.Conditions[0].Status = corev1.ConditionTrue
	if err := e.c.Status().Update(context.Background(), nb); err != nil {
		t.Fatal(err)
	}
	if r1 := e.router("p", "r1"); r1.Status.NodeName != "node-b" || r1.Status.ExternalIP != "203.0.113.100" {
		t.Errorf("r1 after node-a failed: %+v", r1.Status)
	}
	if f1 := e.fip("p", "f1"); f1.Status.NodeName != "node-b" {
		t.Errorf("f1 after its router moved: node %q", f1.Status.NodeName)
	}

	// Moving f1 to a port with no router: ERROR, address kept.
	e.get("p", "f1", f1)
	f1.Spec.Port = "lonely"
	if err := e.c.Update(context.Background(), f1); err != nil {
		t.Fatal(err)
	}
	if f1 := e.fip("p", "f1"); f1.Status.Status != "ERROR" || f1.Status.FloatingIPAddress != "203.0.113.101" || f1.Status.Router != "" {
		t.Errorf("f1 moved to a port without a router: %+v", f1.Status)
	}

	// Deleting them releases their addresses.
	e.get("p", "f1", f1)
	e.get("p", "r1", r1)
	for _, o := range []client.Object{f1, r1} {
		if err := e.c.Delete(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	e.fip2gone("p", "f1")
	e.run(&router.Reconciler{Client: e.c, IPAM: e.ipam}, "p", "r1")
	if got := e.allocated("admin", "public-v4"); got != "[203.0.113.102 203.0.113.150]" {
		t.Errorf("external allocations after deletes: %s", got)
	}
}

func (e *env) fip2gone(ns, name string) {
	e.t.Helper()
	e.run(&floatingip.Reconciler{Client: e.c, IPAM: e.ipam}, ns, name)
}

func TestChooseNode(t *testing.T) {
	nodes := []corev1.Node{*node("c", true), *node("a", false), *node("b", true), *node("d", true)}
	if got := router.ChooseNode(nodes, "c", "p/r"); got != "c" {
		t.Errorf("a Ready current node %q, want kept", got)
	}
	got := router.ChooseNode(nodes, "a", "p/r")
	if got == "a" || got == "" {
		t.Errorf("a NotReady current node: %q", got)
	}
	if again := router.ChooseNode(nodes, "gone", "p/r"); again != got {
		t.Errorf("choice not stable: %q then %q", got, again)
	}
	if got := router.ChooseNode([]corev1.Node{*node("a", false)}, "a", "p/r"); got != "" {
		t.Errorf("no Ready node: %q", got)
	}
}

func TestPodPortAndDefaultSecurityGroup(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "p", UID: "pod-uid", Annotations: map[string]string{networkingv1alpha1.AnnotationNetwork: "n"}}}
	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: "p"}}
	e := newEnv(t, pod, plain)
	e.run(&podport.Reconciler{Client: e.c}, "p", "web")
	e.run(&podport.Reconciler{Client: e.c}, "p", "plain")
	p := &networkingv1alpha1.Port{}
	e.get("p", "web", p)
	if p.Spec.Network != "n" || p.Spec.Device == nil || *p.Spec.Device != (networkingv1alpha1.PortDevice{Kind: "Pod", Name: "web"}) || !metav1.IsControlledBy(p, pod) {
		t.Errorf("pod port %+v owners %v", p.Spec, p.OwnerReferences)
	}
	var ports networkingv1alpha1.PortList
	if err := e.c.List(context.Background(), &ports); err != nil || len(ports.Items) != 1 {
		t.Errorf("ports %d (%v), want only the annotated pod's", len(ports.Items), err)
	}

	sg := &securitygroup.Reconciler{Client: e.c}
	e.run(sg, "p", "default")
	e.run(sg, "empty", "default")
	got := &networkingv1alpha1.SecurityGroup{}
	e.get("p", "default", got)
	if len(got.Spec.Rules) != 2 || got.Spec.Rules[0].Direction != "egress" || got.Spec.Rules[1].RemoteGroup != "default" {
		t.Errorf("default group rules %+v", got.Spec.Rules)
	}
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: "empty", Name: "default"}, &networkingv1alpha1.SecurityGroup{}); err == nil {
		t.Error("a namespace without ports got a default group")
	}
	// A user's edit stays.
	got.Spec.Rules = got.Spec.Rules[:1]
	if err := e.c.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	e.run(sg, "p", "default")
	e.get("p", "default", got)
	if len(got.Spec.Rules) != 1 {
		t.Errorf("the edited default group was overwritten: %+v", got.Spec.Rules)
	}
}

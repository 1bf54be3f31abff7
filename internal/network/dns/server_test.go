package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func clusterObjects() []runtime.Object {
	objs := []runtime.Object{
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.43.0.20", ClusterIPs: []string{"10.43.0.20"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
		},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ext"},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"},
		},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "many"},
			Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone},
		},
	}
	var eps []discoveryv1.Endpoint
	for i := range 80 {
		eps = append(eps, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.42.%d.%d", i/200, i%200+1)}})
	}
	objs = append(objs, slice("db", "many", "many-a", discoveryv1.AddressTypeIPv4, nil, eps...))
	return objs
}

// runServer starts a Server on 127.0.0.1:0 and returns its address once it is ready.
func runServer(t *testing.T, cfg Config, client kubernetes.Interface) string {
	t.Helper()
	cfg.Listen = []string{"127.0.0.1:0"}
	srv, err := New(cfg, client)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready")
	}
	return srv.Addrs()[0]
}

func query(t *testing.T, network, server, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, mdns.TypeToString[qtype], err)
	}
	return resp
}

func TestServer(t *testing.T) {
	up := startUpstream(t, fakeInternet)
	addr := runServer(t, Config{Upstreams: []string{up}}, fake.NewClientset(clusterObjects()...))

	tests := []struct {
		name      string
		qname     string
		qtype     uint16
		rcode     int
		answers   int
		truncated bool // over UDP; TCP must then carry everything
		first     string
		auth      bool
		soa       bool
	}{
		{name: "service", qname: "web.default.svc.cluster.local.", qtype: mdns.TypeA, answers: 1, first: "10.43.0.20", auth: true},
		{name: "AAAA NODATA", qname: "web.default.svc.cluster.local.", qtype: mdns.TypeAAAA, auth: true, soa: true},
		{name: "NXDOMAIN", qname: "nope.default.svc.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, auth: true, soa: true},
		{name: "SRV", qname: "_http._tcp.web.default.svc.cluster.local.", qtype: mdns.TypeSRV, answers: 1, first: "web.default.svc.cluster.local.", auth: true},
		{name: "pod", qname: "10-42-3-7.default.pod.cluster.local.", qtype: mdns.TypeA, answers: 1, first: "10.42.3.7", auth: true},
		{name: "headless, large", qname: "many.db.svc.cluster.local.", qtype: mdns.TypeA, answers: 80, truncated: true, first: "10.42.0.1", auth: true},
		{name: "external name chased upstream", qname: "ext.default.svc.cluster.local.", qtype: mdns.TypeA, answers: 2, first: "db.example.com.", auth: true},
		{name: "forwarded", qname: "www.example.com.", qtype: mdns.TypeA, answers: 1, first: "192.0.2.1"},
		{name: "forwarded, truncated", qname: "big.example.com.", qtype: mdns.TypeA, answers: 60, truncated: true, first: "192.0.2.1"},
		{name: "forwarded NXDOMAIN", qname: "nope.test.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError},
		{name: "PTR", qname: "20.0.43.10.in-addr.arpa.", qtype: mdns.TypePTR, answers: 1, first: "web.default.svc.cluster.local.", auth: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, network := range []string{"udp", "tcp"} {
				resp := query(t, network, addr, tt.qname, tt.qtype)
				wantTC := tt.truncated && network == "udp"
				if resp.Rcode != tt.rcode || resp.Truncated != wantTC {
					t.Fatalf("%s: rcode %s truncated %v, want %s %v", network,
						mdns.RcodeToString[resp.Rcode], resp.Truncated, mdns.RcodeToString[tt.rcode], wantTC)
				}
				if wantTC {
					continue
				}
				if len(resp.Answer) != tt.answers {
					t.Fatalf("%s: %d answers, want %d: %v", network, len(resp.Answer), tt.answers, resp.Answer)
				}
				if tt.first != "" && !strings.HasSuffix(resp.Answer[0].String(), "\t"+tt.first) &&
					!strings.Contains(resp.Answer[0].String(), " "+tt.first) {
					t.Errorf("%s: first answer %q, want %q", network, resp.Answer[0], tt.first)
				}
				if resp.Authoritative != tt.auth {
					t.Errorf("%s: authoritative %v, want %v", network, resp.Authoritative, tt.auth)
				}
				if hasSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == mdns.TypeSOA; hasSOA != tt.soa {
					t.Errorf("%s: authority %v, want SOA %v", network, resp.Ns, tt.soa)
				}
			}
		})
	}
}

func TestServerFollowsChanges(t *testing.T) {
	client := fake.NewClientset()
	addr := runServer(t, Config{Resolver: failingResolver{}}, client)
	name := "late.default.svc.cluster.local."
	if resp := query(t, "udp", addr, name, mdns.TypeA); resp.Rcode != mdns.RcodeNameError {
		t.Fatalf("before create: rcode %s", mdns.RcodeToString[resp.Rcode])
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "late"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.43.0.99", ClusterIPs: []string{"10.43.0.99"}},
	}
	ctx := context.Background()
	if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		resp := query(t, "udp", addr, name, mdns.TypeA)
		return len(resp.Answer) == 1 && resp.Answer[0].(*mdns.A).A.Equal(net.ParseIP("10.43.0.99"))
	})
	if err := client.CoreV1().Services("default").Delete(ctx, "late", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return query(t, "udp", addr, name, mdns.TypeA).Rcode == mdns.RcodeNameError })

	// Headless endpoints appear as their slice becomes ready.
	hl := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "hl"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone},
	}
	if _, err := client.CoreV1().Services("default").Create(ctx, hl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sl := slice("default", "hl", "hl-a", discoveryv1.AddressTypeIPv4, nil,
		discoveryv1.Endpoint{Addresses: []string{"10.42.0.7"}, Hostname: ptr.To("h0"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	if _, err := client.DiscoveryV1().EndpointSlices("default").Create(ctx, sl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		return len(query(t, "tcp", addr, "h0.hl.default.svc.cluster.local.", mdns.TypeA).Answer) == 1
	})
}

type failingResolver struct{}

func (failingResolver) Exchange(context.Context, *mdns.Msg) (*mdns.Msg, error) {
	return nil, errors.New("injected upstream failure")
}

func TestServerUpstreamFailure(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{name: "injected failure", cfg: Config{Resolver: failingResolver{}}},
		{name: "dead upstream", cfg: Config{Upstreams: []string{deadServer(t)}}},
		{name: "no upstreams at all", cfg: Config{ResolvConf: "/nonexistent/resolv.conf"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := runServer(t, tt.cfg, fake.NewClientset(clusterObjects()...))
			start := time.Now()
			if resp := query(t, "udp", addr, "www.example.com.", mdns.TypeA); resp.Rcode != mdns.RcodeServerFailure {
				t.Fatalf("rcode %s, want SERVFAIL", mdns.RcodeToString[resp.Rcode])
			}
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("SERVFAIL took %s", d)
			}
			// Cluster names do not depend on upstreams.
			if resp := query(t, "udp", addr, "web.default.svc.cluster.local.", mdns.TypeA); len(resp.Answer) != 1 {
				t.Fatalf("cluster name: %v", resp)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	client := fake.NewClientset()
	tests := []struct {
		name string
		cfg  Config
	}{
		{name: "no listen", cfg: Config{}},
		{name: "listen without port", cfg: Config{Listen: []string{"10.43.0.10"}}},
		{name: "bad domain", cfg: Config{Listen: []string{"127.0.0.1:0"}, ClusterDomain: "a..b"}},
		{name: "bad upstream", cfg: Config{Listen: []string{"127.0.0.1:0"}, Upstreams: []string{"dns.example"}}},
		{name: "sub-second TTL", cfg: Config{Listen: []string{"127.0.0.1:0"}, TTL: time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg, client); err == nil {
				t.Fatal("want error")
			}
		})
	}
	if _, err := New(Config{Listen: []string{"127.0.0.1:0"}}, nil); err == nil {
		t.Fatal("nil client: want error")
	}
}

func TestRunReleasesAddress(t *testing.T) {
	srv, err := New(Config{Listen: []string{"127.0.0.1:0"}, Resolver: failingResolver{}}, fake.NewClientset())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	<-srv.Ready()
	addr := srv.Addrs()[0]
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Both sockets are closed: the same port binds again.
	pc, l, err := bindPair(context.Background(), addr)
	if err != nil {
		t.Fatalf("rebind %s: %v", addr, err)
	}
	pc.Close()
	l.Close()

	// A second server on a taken address fails Run instead of hanging.
	busy, err := New(Config{Listen: []string{addr}, Resolver: failingResolver{}}, fake.NewClientset())
	if err != nil {
		t.Fatal(err)
	}
	pc, l, _ = bindPair(context.Background(), addr)
	defer pc.Close()
	defer l.Close()
	if err := busy.Run(context.Background()); err == nil {
		t.Fatal("Run on a busy address: want error")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

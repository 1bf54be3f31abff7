package dns

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func slice(ns, svc, name string, typ discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: typ,
		Ports:       ports,
		Endpoints:   eps,
	}
}

func TestServiceFromObjects(t *testing.T) {
	a := netip.MustParseAddr
	pgPort := []discoveryv1.EndpointPort{{Name: ptr.To("pg"), Port: ptr.To[int32](5432), Protocol: ptr.To(corev1.ProtocolTCP)}}
	ready := discoveryv1.EndpointConditions{Ready: ptr.To(true)}
	notReady := discoveryv1.EndpointConditions{Ready: ptr.To(false)}
	headless := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "pg"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "pg", Port: 5432}}},
	}
	slices := []*discoveryv1.EndpointSlice{
		slice("db", "pg", "pg-a", discoveryv1.AddressTypeIPv4, pgPort,
			discoveryv1.Endpoint{Addresses: []string{"10.42.1.6"}, Conditions: ready, Hostname: ptr.To("pg-1")},
			discoveryv1.Endpoint{Addresses: []string{"10.42.0.5"}}, // Ready unset counts as ready
			discoveryv1.Endpoint{Addresses: []string{"10.42.0.9"}, Conditions: notReady}),
		// The same address in a second slice during rebalancing.
		slice("db", "pg", "pg-b", discoveryv1.AddressTypeIPv4, pgPort,
			discoveryv1.Endpoint{Addresses: []string{"10.42.1.6"}, Conditions: ready}),
		slice("db", "pg", "pg-fqdn", discoveryv1.AddressTypeFQDN, pgPort,
			discoveryv1.Endpoint{Addresses: []string{"x.example.com"}}),
		slice("db", "other", "other-a", discoveryv1.AddressTypeIPv4, pgPort,
			discoveryv1.Endpoint{Addresses: []string{"10.42.7.7"}}),
	}
	publishing := headless.DeepCopy()
	publishing.Spec.PublishNotReadyAddresses = true

	pg := []Port{{Name: "pg", Protocol: "tcp", Port: 5432}}
	tests := []struct {
		name string
		svc  *corev1.Service
		want Service
	}{
		{
			name: "cluster IP, dual stack",
			svc: &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
				Spec: corev1.ServiceSpec{
					ClusterIP: "10.43.0.20", ClusterIPs: []string{"10.43.0.20", "fd00::20"},
					Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}, {Port: 53, Protocol: corev1.ProtocolUDP}},
				},
			},
			want: Service{Namespace: "default", Name: "web", ClusterIPs: []netip.Addr{a("10.43.0.20"), a("fd00::20")},
				Ports: []Port{{Name: "http", Protocol: "tcp", Port: 80}, {Protocol: "udp", Port: 53}}},
		},
		{
			name: "headless: ready endpoints, deduplicated, sorted",
			svc:  headless,
			want: Service{Namespace: "db", Name: "pg", Headless: true, Ports: pg, Endpoints: []Endpoint{
				{Addr: a("10.42.0.5"), Ports: pg},
				{Addr: a("10.42.1.6"), Hostname: "pg-1", Ports: pg},
			}},
		},
		{
			name: "headless publishing not-ready addresses",
			svc:  publishing,
			want: Service{Namespace: "db", Name: "pg", Headless: true, Ports: pg, Endpoints: []Endpoint{
				{Addr: a("10.42.0.5"), Ports: pg},
				{Addr: a("10.42.0.9"), Ports: pg},
				{Addr: a("10.42.1.6"), Hostname: "pg-1", Ports: pg},
			}},
		},
		{
			name: "external name",
			svc: &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ext"},
				Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"},
			},
			want: Service{Namespace: "default", Name: "ext", ExternalName: "db.example.com"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := SnapshotFromObjects(1, []*corev1.Service{tt.svc}, slices, nil)
			got := snap.service(tt.want.Namespace, tt.want.Name)
			if got == nil || !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

package dns

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name, podCIDR string, ready corev1.ConditionStatus) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: podCIDR}}
	if ready != "" {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}
	}
	return n
}

func TestNodeEndpoints(t *testing.T) {
	slice := NodeEndpoints([]*corev1.Node{
		node("c", "10.42.2.0/24", corev1.ConditionFalse),
		node("a", "10.42.0.0/24", corev1.ConditionTrue),
		node("no-range", "", corev1.ConditionTrue),
		node("b", "10.42.1.0/24", ""),
		node("v6", "fd00::/64", corev1.ConditionTrue),
	})
	type ep struct {
		node, addr string
		ready      bool
	}
	var got []ep
	for _, e := range slice.Endpoints {
		got = append(got, ep{*e.NodeName, e.Addresses[0], *e.Conditions.Ready})
	}
	want := []ep{{"a", "10.42.0.1", true}, {"b", "10.42.1.1", true}, {"c", "10.42.2.1", false}}
	if len(got) != len(want) {
		t.Fatalf("endpoints = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("endpoint %d = %v, want %v", i, got[i], want[i])
		}
	}
	if slice.Labels["kubernetes.io/service-name"] != ServiceName || slice.Namespace != "kube-system" {
		t.Errorf("slice %s/%s labels %v do not attach it to %s", slice.Namespace, slice.Name, slice.Labels, ServiceName)
	}
	if len(slice.Ports) != 2 || *slice.Ports[0].Port != 53 || *slice.Ports[1].Port != 53 {
		t.Errorf("ports %v, want 53/UDP and 53/TCP", slice.Ports)
	}
}

func TestClusterService(t *testing.T) {
	svc := ClusterService(netip.MustParseAddr("10.43.0.10"))
	if svc.Spec.ClusterIP != "10.43.0.10" || svc.Spec.Selector != nil {
		t.Errorf("service %+v: want ClusterIP 10.43.0.10 and no selector", svc.Spec)
	}
	if svc.Spec.InternalTrafficPolicy == nil || *svc.Spec.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyLocal {
		t.Errorf("internalTrafficPolicy %v, want Local (each node answers its own pods)", svc.Spec.InternalTrafficPolicy)
	}
	if got := ListenAddress(netip.MustParsePrefix("10.42.7.0/24")).String(); got != "10.42.7.1:53" {
		t.Errorf("ListenAddress = %s, want 10.42.7.1:53", got)
	}
}

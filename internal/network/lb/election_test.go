package lb

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestDecide(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		lease LeaseState
		want  Action
	}{
		{"no lease", LeaseState{}, Acquire},
		{"released", LeaseState{Exists: true, Holder: "", Observed: now}, Acquire},
		{"ours, fresh", LeaseState{Exists: true, Holder: "me", Observed: now.Add(-time.Second)}, Hold},
		{"ours, due", LeaseState{Exists: true, Holder: "me", Observed: now.Add(-RenewInterval)}, Renew},
		{"ours, expired: still ours to renew", LeaseState{Exists: true, Holder: "me", Observed: now.Add(-time.Minute)}, Renew},
		{"theirs, renewed lately", LeaseState{Exists: true, Holder: "other", Observed: now.Add(-LeaseDuration)}, Follow},
		{"theirs, silent too long", LeaseState{Exists: true, Holder: "other", Observed: now.Add(-LeaseDuration - time.Millisecond)}, Acquire},
	} {
		if got := Decide("me", tc.lease, now); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestEligible(t *testing.T) {
	node := func(name string, ready corev1.ConditionStatus, labels map[string]string) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}},
		}
	}
	ep := func(node string, ready *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{"10.42.0.5"}, NodeName: &node, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
	}
	slice := func(eps ...discoveryv1.Endpoint) []*discoveryv1.EndpointSlice {
		return []*discoveryv1.EndpointSlice{{Endpoints: eps}}
	}
	svc := func(policy corev1.ServiceExternalTrafficPolicy) *corev1.Service {
		return &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: policy}}
	}
	cluster, local := svc(corev1.ServiceExternalTrafficPolicyCluster), svc(corev1.ServiceExternalTrafficPolicyLocal)
	n1 := node("n1", corev1.ConditionTrue, nil)
	for _, tc := range []struct {
		name   string
		svc    *corev1.Service
		slices []*discoveryv1.EndpointSlice
		node   *corev1.Node
		want   bool
	}{
		{"cluster, endpoint elsewhere", cluster, slice(ep("n2", nil)), n1, true},
		{"cluster, endpoint ready: true", cluster, slice(ep("n2", ptr.To(true))), n1, true},
		{"cluster, no ready endpoint", cluster, slice(ep("n1", ptr.To(false))), n1, false},
		{"cluster, no endpoints", cluster, nil, n1, false},
		{"node not ready", cluster, slice(ep("n1", nil)), node("n1", corev1.ConditionUnknown, nil), false},
		{"node unknown to the cache", cluster, slice(ep("n1", nil)), nil, false},
		{"node excluded", cluster, slice(ep("n1", nil)), node("n1", corev1.ConditionTrue, map[string]string{corev1.LabelNodeExcludeBalancers: ""}), false},
		{"local, endpoint here", local, slice(ep("n2", nil), ep("n1", nil)), n1, true},
		{"local, endpoint elsewhere only", local, slice(ep("n2", nil)), n1, false},
		{"local, endpoint here not ready", local, slice(ep("n1", ptr.To(false)), ep("n2", nil)), n1, false},
	} {
		if got := Eligible(tc.svc, tc.slices, tc.node); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestOurs(t *testing.T) {
	for _, tc := range []struct {
		typ   corev1.ServiceType
		class *string
		want  bool
	}{
		{corev1.ServiceTypeLoadBalancer, nil, true},
		{corev1.ServiceTypeLoadBalancer, ptr.To(Class), true},
		{corev1.ServiceTypeLoadBalancer, ptr.To("example.com/other"), false},
		{corev1.ServiceTypeNodePort, nil, false},
		{corev1.ServiceTypeClusterIP, nil, false},
	} {
		svc := &corev1.Service{Spec: corev1.ServiceSpec{Type: tc.typ, LoadBalancerClass: tc.class}}
		if got := Ours(svc); got != tc.want {
			t.Errorf("Ours(type %s, class %v) = %v, want %v", tc.typ, ptr.Deref(tc.class, "<nil>"), got, tc.want)
		}
	}
}

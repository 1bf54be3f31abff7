package lb

import (
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Class is the spec.loadBalancerClass Strata answers for; Services
// without a class are Strata's too.
const Class = "strata.io/lb"

// Which node announces a Service's address is decided by a lock per
// Service with a Lease's semantics: a ConfigMap in LeaseNamespace named
// LeaseName, held by one node and renewed every RenewInterval; when its
// holder stops renewing (the node died, or lost the API), another eligible
// node takes it over once LeaseDuration has passed without a change,
// measured on its own clock. Not a coordination.k8s.io Lease: the
// NodeRestriction admission plugin lets nodes write only their own Lease
// in kube-node-lease.
const (
	LeaseNamespace = "strata-lb"
	LeaseDuration  = 10 * time.Second
	RenewInterval  = 2 * time.Second
)

// LeaseName is the lock of Service namespace/name: Service names are DNS
// labels, so the name is a valid, unique DNS subdomain.
func LeaseName(namespace, name string) string { return namespace + "." + name }

// Ours reports whether Strata provides svc's load balancer.
func Ours(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer &&
		(svc.Spec.LoadBalancerClass == nil || *svc.Spec.LoadBalancerClass == Class)
}

// Addresses are the IPv4 addresses in svc's status.loadBalancer.ingress.
func Addresses(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil && a.Is4() {
			out = append(out, a)
		}
	}
	return out
}

// Eligible reports whether node may announce svc: it is Ready, not
// labelled node.kubernetes.io/exclude-from-external-load-balancers, and
// the Service has a ready endpoint — on this node when its
// externalTrafficPolicy is Local, since kube-proxy elsewhere drops the
// traffic then.
func Eligible(svc *corev1.Service, slices []*discoveryv1.EndpointSlice, node *corev1.Node) bool {
	if node == nil || !nodeReady(node) {
		return false
	}
	if _, excluded := node.Labels[corev1.LabelNodeExcludeBalancers]; excluded {
		return false
	}
	local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			if !local || (ep.NodeName != nil && *ep.NodeName == node.Name) {
				return true
			}
		}
	}
	return false
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// LeaseState is what a node knows of a Service's lock.
type LeaseState struct {
	Exists bool
	Holder string
	// Observed is when this node first saw the lock as it is now (its
	// resourceVersion): expiry is judged on the observer's clock, so
	// nodes' clocks need not agree.
	Observed time.Time
}

// An Action is what a node does with a Service's lock.
type Action int

const (
	Follow  Action = iota // another node holds it
	Hold                  // ours and fresh
	Renew                 // ours, due for renewal
	Acquire               // free, released or expired: try to take it
)

func (a Action) String() string {
	return [...]string{"follow", "hold", "renew", "acquire"}[a]
}

// Decide is an eligible node's next step with a Service's lock.
func Decide(me string, l LeaseState, now time.Time) Action {
	switch {
	case !l.Exists, l.Holder == "":
		return Acquire
	case l.Holder == me && now.Sub(l.Observed) >= RenewInterval:
		return Renew
	case l.Holder == me:
		return Hold
	case now.Sub(l.Observed) > LeaseDuration:
		return Acquire
	}
	return Follow
}

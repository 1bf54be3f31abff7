package dns

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/strata-cloud/strata/internal/network/cni"
	"github.com/strata-cloud/strata/internal/network/nodewatch"
)

// The cluster DNS Service. Pods resolve through its ClusterIP (kubelet's clusterDNS); kube-proxy
// sends each packet to the DNS server of the pod's own node (internalTrafficPolicy Local), which
// listens on the node's pod-bridge gateway. The Service has no selector: its one EndpointSlice
// lists every node's gateway, kept by RunClusterService from the Node objects.
const (
	ServiceName      = "kube-dns"
	ServiceNamespace = metav1.NamespaceSystem
	sliceName        = "kube-dns-nodes"
	managedBy        = "dns.strata.io"
	ServicePort      = 53
)

// ListenAddress is where the DNS server of a node with pod range podCIDR listens.
func ListenAddress(podCIDR netip.Prefix) netip.AddrPort {
	return netip.AddrPortFrom(cni.DefaultGateway(podCIDR), ServicePort)
}

// ClusterService is the kube-dns Service with ClusterIP ip.
func ClusterService(ip netip.Addr) *corev1.Service {
	local := corev1.ServiceInternalTrafficPolicyLocal
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: ServiceName, Namespace: ServiceNamespace,
			// The labels tools look for (kubectl cluster-info, dashboards).
			Labels: map[string]string{"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "Strata-DNS"},
		},
		Spec: corev1.ServiceSpec{
			ClusterIP:             ip.String(),
			InternalTrafficPolicy: &local,
			Ports: []corev1.ServicePort{
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: ServicePort, TargetPort: intstr.FromInt32(ServicePort)},
				{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: ServicePort, TargetPort: intstr.FromInt32(ServicePort)},
			},
		},
	}
}

// NodeEndpoints is the EndpointSlice of the kube-dns Service for these nodes: one endpoint per
// node with a pod range, at that node's ListenAddress, ready unless the node is known not Ready.
func NodeEndpoints(nodes []*corev1.Node) *discoveryv1.EndpointSlice {
	var eps []discoveryv1.Endpoint
	for _, n := range nodes {
		prefix, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil || !prefix.Addr().Is4() {
			continue
		}
		eps = append(eps, discoveryv1.Endpoint{
			Addresses:  []string{ListenAddress(prefix).Addr().String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(nodeReady(n))},
			NodeName:   ptr.To(n.Name),
		})
	}
	slices.SortFunc(eps, func(a, b discoveryv1.Endpoint) int { return strings.Compare(*a.NodeName, *b.NodeName) })
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: sliceName, Namespace: ServiceNamespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: ServiceName,
				discoveryv1.LabelManagedBy:   managedBy,
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("dns"), Protocol: &udp, Port: ptr.To[int32](ServicePort)},
			{Name: ptr.To("dns-tcp"), Protocol: &tcp, Port: ptr.To[int32](ServicePort)},
		},
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status != corev1.ConditionFalse
		}
	}
	return true // not reported yet: a fresh node's DNS is tried rather than dropped
}

// RunClusterService creates the kube-dns Service at ClusterIP ip (an existing one is left as it
// is) and keeps its EndpointSlice in step with the Nodes until ctx is done. Every server may run
// it: they all write the same slice.
func RunClusterService(ctx context.Context, client kubernetes.Interface, ip netip.Addr, log *slog.Logger) error {
	svc := ClusterService(ip)
	for {
		existing, err := client.CoreV1().Services(ServiceNamespace).Get(ctx, ServiceName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = client.CoreV1().Services(ServiceNamespace).Create(ctx, svc, metav1.CreateOptions{})
		} else if err == nil && existing.Spec.ClusterIP != svc.Spec.ClusterIP {
			log.Warn("Service kube-system/kube-dns has another ClusterIP than the kubelets' clusterDNS; pods will not resolve names",
				"clusterIP", existing.Spec.ClusterIP, "clusterDNS", ip)
		}
		if err == nil || apierrors.IsAlreadyExists(err) {
			break
		}
		log.Debug("creating the kube-dns Service", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}

	nodes, err := nodewatch.Start(ctx, client)
	if err != nil {
		return err
	}
	defer nodes.Stop()
	var applied *discoveryv1.EndpointSlice
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-nodes.Changed:
		case <-retry.C:
		}
		if !nodes.HasSynced() {
			continue
		}
		list, err := nodes.Lister.List(labels.Everything())
		if err != nil {
			continue
		}
		want := NodeEndpoints(list)
		if applied != nil && reflect.DeepEqual(applied.Endpoints, want.Endpoints) {
			continue
		}
		if err := applySlice(ctx, client, want); err != nil {
			log.Warn("updating the kube-dns EndpointSlice", "err", err)
			retry.Reset(2 * time.Second)
			continue
		}
		applied = want
	}
}

func applySlice(ctx context.Context, client kubernetes.Interface, want *discoveryv1.EndpointSlice) error {
	api := client.DiscoveryV1().EndpointSlices(ServiceNamespace)
	existing, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if reflect.DeepEqual(existing.Endpoints, want.Endpoints) && reflect.DeepEqual(existing.Ports, want.Ports) {
		return nil
	}
	want.ResourceVersion = existing.ResourceVersion
	if _, err := api.Update(ctx, want, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update %s/%s: %w", ServiceNamespace, want.Name, err)
	}
	return nil
}

package admission

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"reflect"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	k8sadmission "k8s.io/apiserver/pkg/admission"
	"k8s.io/client-go/dynamic"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
)

// NetworkIntegrity is the plugin that refuses, as Neutron does, what the
// networking kinds' schemas cannot decide alone: deleting a Subnet that
// Ports have addresses on, a Port asking for an address outside its
// network's subnets or held by another Port, a Router with overlapping
// interfaces or an external gateway on a network that is not external,
// and a FloatingIP whose network is not external or whose port no router
// joins to it. What it cannot decide (objects not there yet) the
// controllers report in the objects' conditions.
const NetworkIntegrity = "StrataNetworkIntegrity"

var (
	subnetsGVR  = networkingv1alpha1.GroupVersion.WithResource("subnets")
	portsGVR    = networkingv1alpha1.GroupVersion.WithResource("ports")
	networksGVR = networkingv1alpha1.GroupVersion.WithResource("networks")
	routersGVR  = networkingv1alpha1.GroupVersion.WithResource("routers")
	fipsGVR     = networkingv1alpha1.GroupVersion.WithResource("floatingips")
)

// networkIntegrity looks objects up through the apiserver's loopback
// client at each admission: these writes are rare next to reads.
type networkIntegrity struct {
	*k8sadmission.Handler
	client dynamic.Interface
}

var _ k8sadmission.ValidationInterface = (*networkIntegrity)(nil)

// SetDynamicClient is called by the apiserver's plugin initializer.
func (p *networkIntegrity) SetDynamicClient(c dynamic.Interface) { p.client = c }

// ValidateInitialization checks that the initializer gave a client.
func (p *networkIntegrity) ValidateInitialization() error {
	if p.client == nil {
		return errors.New(NetworkIntegrity + ": no dynamic client")
	}
	return nil
}

// Validate dispatches on the resource and operation.
func (p *networkIntegrity) Validate(ctx context.Context, a k8sadmission.Attributes, _ k8sadmission.ObjectInterfaces) error {
	if a.GetResource().Group != networkingv1alpha1.GroupVersion.Group || a.GetSubresource() != "" {
		return nil
	}
	switch r, op := a.GetResource().Resource, a.GetOperation(); {
	case r == "subnets" && op == k8sadmission.Delete && a.GetName() != "":
		return p.subnetDelete(ctx, a)
	case r == "subnets" && op == k8sadmission.Create:
		sn := &networkingv1alpha1.Subnet{}
		if err := decode(a.GetObject(), sn); err != nil {
			return err
		}
		return p.subnetCreate(ctx, sn)
	case r == "ports" && op == k8sadmission.Create:
		port := &networkingv1alpha1.Port{}
		if err := decode(a.GetObject(), port); err != nil {
			return err
		}
		return p.portCreate(ctx, port)
	case r == "routers" && (op == k8sadmission.Create || op == k8sadmission.Update):
		rt, old := &networkingv1alpha1.Router{}, &networkingv1alpha1.Router{}
		if err := decode(a.GetObject(), rt); err != nil {
			return err
		}
		if op == k8sadmission.Update {
			if err := decode(a.GetOldObject(), old); err != nil {
				return err
			}
			if rt.DeletionTimestamp != nil || reflect.DeepEqual(rt.Spec, old.Spec) {
				return nil // finalizers, labels: nothing to refuse
			}
		}
		return p.router(ctx, rt, old)
	case r == "floatingips" && (op == k8sadmission.Create || op == k8sadmission.Update):
		fip, old := &networkingv1alpha1.FloatingIP{}, &networkingv1alpha1.FloatingIP{}
		if err := decode(a.GetObject(), fip); err != nil {
			return err
		}
		if op == k8sadmission.Update {
			if err := decode(a.GetOldObject(), old); err != nil {
				return err
			}
			if fip.DeletionTimestamp != nil || reflect.DeepEqual(fip.Spec, old.Spec) {
				return nil
			}
		}
		return p.floatingIP(ctx, fip)
	}
	return nil
}

// decode turns the admitted object (unstructured, for a custom resource)
// into its type.
func decode(obj runtime.Object, into any) error {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return apierrors.NewInternalError(fmt.Errorf("%s: unexpected object %T", NetworkIntegrity, obj))
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	return nil
}

// list reads every object of gvr in ns (all namespaces with "") as T. A
// kind not installed yet has no objects.
func list[T any](ctx context.Context, c dynamic.Interface, gvr schema.GroupVersionResource, ns string) ([]T, error) {
	l, err := c.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("list %s: %w", gvr.Resource, err))
	}
	out := make([]T, len(l.Items))
	for i := range l.Items {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(l.Items[i].Object, &out[i]); err != nil {
			return nil, apierrors.NewInternalError(err)
		}
	}
	return out, nil
}

// get reads one object into out; found is false when it does not exist.
func get(ctx context.Context, c dynamic.Interface, gvr schema.GroupVersionResource, ns, name string, out any) (bool, error) {
	u, err := c.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, apierrors.NewInternalError(fmt.Errorf("get %s %s/%s: %w", gvr.Resource, ns, name, err))
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		return false, apierrors.NewInternalError(err)
	}
	return true, nil
}

// statusError is an API error with Neutron's message and code.
func statusError(code int32, reason metav1.StatusReason, msg string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg}}
}

// subnetDelete refuses to delete a subnet that ports (not being deleted
// themselves: their addresses are on the way back) or router interfaces
// have addresses on, or,
// on an external network, that routers' gateways or floating IPs have.
func (p *networkIntegrity) subnetDelete(ctx context.Context, a k8sadmission.Attributes) error {
	ports, err := list[networkingv1alpha1.Port](ctx, p.client, portsGVR, a.GetNamespace())
	if err != nil {
		return err
	}
	used := slices.ContainsFunc(ports, func(port networkingv1alpha1.Port) bool {
		return port.DeletionTimestamp == nil && slices.ContainsFunc(port.Status.FixedIPs, func(f networkingv1alpha1.FixedIP) bool { return f.Subnet == a.GetName() })
	})
	if !used {
		// A router interface holds the subnet's gateway address: in
		// Neutron it is a port on the subnet.
		routers, err := list[networkingv1alpha1.Router](ctx, p.client, routersGVR, a.GetNamespace())
		if err != nil {
			return err
		}
		used = slices.ContainsFunc(routers, func(rt networkingv1alpha1.Router) bool {
			return rt.DeletionTimestamp == nil && slices.ContainsFunc(rt.Spec.Interfaces, func(in networkingv1alpha1.RouterInterface) bool { return in.Subnet == a.GetName() })
		})
	}
	if !used {
		used, err = p.externallyUsed(ctx, a.GetNamespace(), a.GetName())
		if err != nil {
			return err
		}
	}
	if !used {
		return nil
	}
	ns, err := p.client.Resource(namespacesGVR).Get(ctx, a.GetNamespace(), metav1.GetOptions{})
	if err == nil && ns.GetDeletionTimestamp() != nil {
		return nil // the namespace's ports go too
	}
	return apierrors.NewConflict(a.GetResource().GroupResource(), a.GetName(),
		fmt.Errorf("Unable to complete operation on subnet %s: One or more ports have an IP allocation from this subnet.", a.GetName()))
}

// externallyUsed reports whether a router's gateway or a floating IP
// (not being deleted) has an address on subnet ns/name of an external
// network.
func (p *networkIntegrity) externallyUsed(ctx context.Context, ns, name string) (bool, error) {
	sn := &networkingv1alpha1.Subnet{}
	found, err := get(ctx, p.client, subnetsGVR, ns, name, sn)
	if err != nil || !found {
		return false, err
	}
	cidr, err := netip.ParsePrefix(sn.Spec.CIDR)
	if err != nil {
		return false, nil
	}
	on := func(ref networkingv1alpha1.NetworkRef, own, addr string) bool {
		if ref.Namespace != "" {
			own = ref.Namespace
		}
		a, err := netip.ParseAddr(addr)
		return own == ns && ref.Name == sn.Spec.Network && err == nil && cidr.Contains(a)
	}
	routers, err := list[networkingv1alpha1.Router](ctx, p.client, routersGVR, "")
	if err != nil {
		return false, err
	}
	for _, rt := range routers {
		if g := rt.Spec.ExternalGateway; g != nil && rt.DeletionTimestamp == nil && on(g.Network, rt.Namespace, rt.Status.ExternalIP) {
			return true, nil
		}
	}
	fips, err := list[networkingv1alpha1.FloatingIP](ctx, p.client, fipsGVR, "")
	if err != nil {
		return false, err
	}
	for _, f := range fips {
		if f.DeletionTimestamp == nil && on(f.Spec.Network, f.Namespace, f.Status.FloatingIPAddress) {
			return true, nil
		}
	}
	return false, nil
}

// subnetCreate refuses a subnet whose CIDR overlaps another subnet of
// its network.
func (p *networkIntegrity) subnetCreate(ctx context.Context, sn *networkingv1alpha1.Subnet) error {
	cidr, err := netip.ParsePrefix(sn.Spec.CIDR)
	if err != nil {
		return nil // the schema refuses it
	}
	subnets, err := list[networkingv1alpha1.Subnet](ctx, p.client, subnetsGVR, sn.Namespace)
	if err != nil {
		return err
	}
	for _, o := range subnets {
		if o.Spec.Network != sn.Spec.Network || o.Name == sn.Name || o.DeletionTimestamp != nil {
			continue
		}
		if oc, err := netip.ParsePrefix(o.Spec.CIDR); err == nil && oc.Overlaps(cidr) {
			return apierrors.NewBadRequest(fmt.Sprintf("Invalid input for operation: Requested subnet with cidr: %s for network: %s overlaps with another subnet: %s (%s).", sn.Spec.CIDR, sn.Spec.Network, o.Name, o.Spec.CIDR))
		}
	}
	return nil
}

func (p *networkIntegrity) portCreate(ctx context.Context, port *networkingv1alpha1.Port) error {
	if len(port.Spec.FixedIPs) == 0 || port.Spec.FixedIPs[0].IPAddress == "" {
		return nil
	}
	ask := port.Spec.FixedIPs[0]
	addr, err := netip.ParseAddr(ask.IPAddress)
	if err != nil {
		return nil // the schema refuses it
	}
	subnets, err := list[networkingv1alpha1.Subnet](ctx, p.client, subnetsGVR, port.Namespace)
	if err != nil {
		return err
	}
	var in []string // subnets that hold addr (one, unless subnets overlap)
	for _, sn := range subnets {
		if sn.Spec.Network != port.Spec.Network || (ask.Subnet != "" && sn.Name != ask.Subnet) {
			continue
		}
		if cidr, err := netip.ParsePrefix(sn.Spec.CIDR); err == nil && cidr.Contains(addr) {
			in = append(in, sn.Name)
		}
	}
	if len(in) == 0 {
		where := "any subnet of network " + port.Spec.Network
		if ask.Subnet != "" {
			where = "subnet " + ask.Subnet + " of network " + port.Spec.Network
		}
		return apierrors.NewInvalid(networkingv1alpha1.GroupVersion.WithKind("Port").GroupKind(), port.Name, field.ErrorList{
			field.Invalid(field.NewPath("spec", "fixedIPs").Index(0).Child("ipAddress"), ask.IPAddress, "IP address "+ask.IPAddress+" is not a valid IP for "+where),
		})
	}
	ports, err := list[networkingv1alpha1.Port](ctx, p.client, portsGVR, port.Namespace)
	if err != nil {
		return err
	}
	for _, o := range ports {
		for _, f := range o.Status.FixedIPs {
			if f.IPAddress == ask.IPAddress && slices.Contains(in, f.Subnet) {
				return statusError(http.StatusConflict, metav1.StatusReasonConflict, fmt.Sprintf("IP address %s already allocated in subnet %s", ask.IPAddress, f.Subnet))
			}
		}
	}
	return nil
}

// externalNetwork checks that ref (from namespace ns) names an external
// network: 404 when it does not exist, 400 (with what, "router" or
// "floatingip", in Neutron's words) when it is not external.
func (p *networkIntegrity) externalNetwork(ctx context.Context, ref networkingv1alpha1.NetworkRef, ns, what string) error {
	if ref.Namespace != "" {
		ns = ref.Namespace
	}
	net := &networkingv1alpha1.Network{}
	found, err := get(ctx, p.client, networksGVR, ns, ref.Name, net)
	if err != nil {
		return err
	}
	if !found {
		return statusError(http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("Network %s/%s could not be found.", ns, ref.Name))
	}
	if !net.Spec.External {
		return apierrors.NewBadRequest(fmt.Sprintf("Bad %s request: Network %s/%s is not a valid external network.", what, ns, ref.Name))
	}
	return nil
}

// router checks rt's gateway network and interfaces; old is the router
// before an update (empty on create): only interfaces it adds must be on
// subnets no other router has.
func (p *networkIntegrity) router(ctx context.Context, rt, old *networkingv1alpha1.Router) error {
	if g := rt.Spec.ExternalGateway; g != nil {
		if err := p.externalNetwork(ctx, g.Network, rt.Namespace, "router"); err != nil {
			return err
		}
	}
	if len(rt.Spec.Interfaces) == 0 {
		return nil
	}
	routers, err := list[networkingv1alpha1.Router](ctx, p.client, routersGVR, rt.Namespace)
	if err != nil {
		return err
	}
	for _, in := range rt.Spec.Interfaces {
		if slices.Contains(old.Spec.Interfaces, in) {
			continue
		}
		for _, o := range routers {
			if o.Name != rt.Name && o.DeletionTimestamp == nil && slices.Contains(o.Spec.Interfaces, in) {
				return statusError(http.StatusConflict, metav1.StatusReasonConflict, fmt.Sprintf("Subnet %s is already attached to router %s.", in.Subnet, o.Name))
			}
		}
	}
	if len(rt.Spec.Interfaces) < 2 {
		return nil
	}
	subnets, err := list[networkingv1alpha1.Subnet](ctx, p.client, subnetsGVR, rt.Namespace)
	if err != nil {
		return err
	}
	type wired struct {
		name string
		cidr netip.Prefix
	}
	var seen []wired
	for _, in := range rt.Spec.Interfaces {
		i := slices.IndexFunc(subnets, func(sn networkingv1alpha1.Subnet) bool { return sn.Name == in.Subnet })
		if i < 0 {
			continue // the controller reports it
		}
		cidr, err := netip.ParsePrefix(subnets[i].Spec.CIDR)
		if err != nil {
			continue
		}
		for _, o := range seen {
			if o.cidr.Overlaps(cidr) {
				return apierrors.NewBadRequest(fmt.Sprintf("Bad router request: Cidr %s of subnet %s overlaps with cidr %s of subnet %s.", cidr, in.Subnet, o.cidr, o.name))
			}
		}
		seen = append(seen, wired{in.Subnet, cidr})
	}
	return nil
}

func (p *networkIntegrity) floatingIP(ctx context.Context, fip *networkingv1alpha1.FloatingIP) error {
	if err := p.externalNetwork(ctx, fip.Spec.Network, fip.Namespace, "floatingip"); err != nil {
		return err
	}
	if fip.Spec.Port == "" {
		return nil
	}
	port := &networkingv1alpha1.Port{}
	found, err := get(ctx, p.client, portsGVR, fip.Namespace, fip.Spec.Port, port)
	if err != nil {
		return err
	}
	if !found {
		return statusError(http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("Port %s could not be found.", fip.Spec.Port))
	}
	if len(port.Status.FixedIPs) == 0 {
		return nil // not addressed yet: the controller decides later
	}
	fixed := port.Status.FixedIPs[0]
	if want := fip.Spec.FixedIPAddress; want != "" {
		i := slices.IndexFunc(port.Status.FixedIPs, func(f networkingv1alpha1.FixedIP) bool { return f.IPAddress == want })
		if i < 0 {
			return apierrors.NewBadRequest(fmt.Sprintf("Bad floatingip request: Port %s does not have fixed ip %s.", port.Name, want))
		}
		fixed = port.Status.FixedIPs[i]
	}
	netNS := fip.Spec.Network.Namespace
	if netNS == "" {
		netNS = fip.Namespace
	}
	routers, err := list[networkingv1alpha1.Router](ctx, p.client, routersGVR, fip.Namespace)
	if err != nil {
		return err
	}
	for _, rt := range routers {
		g := rt.Spec.ExternalGateway
		if g == nil || g.Network.Name != fip.Spec.Network.Name {
			continue
		}
		if ns := g.Network.Namespace; (ns == "" && rt.Namespace != netNS) || (ns != "" && ns != netNS) {
			continue
		}
		if slices.ContainsFunc(rt.Spec.Interfaces, func(in networkingv1alpha1.RouterInterface) bool { return in.Subnet == fixed.Subnet }) {
			return nil
		}
	}
	return statusError(http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("External network %s/%s is not reachable from subnet %s. Therefore, cannot associate Port %s with a Floating IP.", netNS, fip.Spec.Network.Name, fixed.Subnet, port.Name))
}

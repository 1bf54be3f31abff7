// Package floatingip reconciles FloatingIPs: the address (taken from the
// external network's subnet, given back through a finalizer), and where
// it forwards: the fixed IP of its port, the Router of the namespace that
// joins the port's subnet to the external network, and that router's
// node. Moving the port, or routers and ports changing, re-evaluates it.
package floatingip

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/finalizer"
	"github.com/strata-cloud/strata/internal/controller/netstatus"
	"github.com/strata-cloud/strata/internal/controller/subnet"
)

// Finalizer holds a deleted FloatingIP until its address is released.
const Finalizer = "networking.strata.io/floatingip-address"

// Reconciler reconciles FloatingIPs.
type Reconciler struct {
	Client client.Client
	IPAM   subnet.IPAM
}

// SetupWithManager registers the reconciler for FloatingIPs, their Ports
// and the Routers of their namespace.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.IPAM.Client == nil {
		r.IPAM = subnet.IPAM{Client: mgr.GetClient(), Reader: mgr.GetAPIReader()}
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("floatingip").
		For(&networkingv1alpha1.FloatingIP{}).
		Watches(&networkingv1alpha1.Port{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.fips(ctx, o.GetNamespace(), func(f *networkingv1alpha1.FloatingIP) bool { return f.Spec.Port == o.GetName() })
		})).
		Watches(&networkingv1alpha1.Router{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.fips(ctx, o.GetNamespace(), func(f *networkingv1alpha1.FloatingIP) bool { return f.Spec.Port != "" || f.Status.Router != "" })
		})).
		Complete(r)
}

func (r *Reconciler) fips(ctx context.Context, ns string, match func(*networkingv1alpha1.FloatingIP) bool) []reconcile.Request {
	var list networkingv1alpha1.FloatingIPList
	if err := r.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		if match(&list.Items[i]) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return out
}

func networkOf(f *networkingv1alpha1.FloatingIP) types.NamespacedName {
	ns := f.Spec.Network.Namespace
	if ns == "" {
		ns = f.Namespace
	}
	return types.NamespacedName{Namespace: ns, Name: f.Spec.Network.Name}
}

// Reconcile allocates one floating IP and finds where it forwards.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	fip := &networkingv1alpha1.FloatingIP{}
	if err := r.Client.Get(ctx, req.NamespacedName, fip); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if fip.DeletionTimestamp != nil {
		return ctrl.Result{}, r.finalize(ctx, fip)
	}
	if err := finalizer.Ensure(ctx, r.Client, fip, Finalizer); err != nil {
		return ctrl.Result{}, err
	}
	netKey := networkOf(fip)
	net := &networkingv1alpha1.Network{}
	err := r.Client.Get(ctx, netKey, net)
	var problem *netstatus.Problem
	switch {
	case apierrors.IsNotFound(err):
		problem = &netstatus.Problem{Reason: "NetworkNotFound", Message: fmt.Sprintf("Network %s could not be found.", netKey)}
	case err != nil:
		return ctrl.Result{}, err
	case !net.Spec.External:
		problem = &netstatus.Problem{Reason: "NetworkNotExternal", Message: fmt.Sprintf("Bad floatingip request: Network %s is not a valid external network.", netKey)}
	}
	if problem == nil && fip.Status.FloatingIPAddress == "" {
		problem, err = r.allocate(ctx, fip, netKey)
		if err != nil {
			return ctrl.Result{}, err
		}
	}
	st := *fip.Status.DeepCopy()
	st.FixedIPAddress, st.Router, st.NodeName = "", "", ""
	if problem == nil {
		problem, err = r.associate(ctx, fip, &st)
		if err != nil {
			return ctrl.Result{}, err
		}
	}
	if problem != nil {
		st.Status = networkingv1alpha1.StatusError
		netstatus.NotReady(&st.Conditions, fip.Generation, problem)
	}
	if reflect.DeepEqual(st, fip.Status) {
		return ctrl.Result{}, nil
	}
	fip.Status = st
	if err := r.Client.Status().Update(ctx, fip); err != nil && !apierrors.IsConflict(err) {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, nil
}

// allocate takes the floating address and records it at once (retrying
// conflicts), or gives it back.
func (r *Reconciler) allocate(ctx context.Context, fip *networkingv1alpha1.FloatingIP, netKey types.NamespacedName) (*netstatus.Problem, error) {
	addr, problem, err := r.IPAM.AllocateOn(ctx, netKey.Namespace, netKey.Name, fip.Spec.FloatingIPAddress)
	if err != nil || problem != nil {
		return problem, err
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		latest := &networkingv1alpha1.FloatingIP{}
		if err := r.IPAM.Reader.Get(ctx, client.ObjectKeyFromObject(fip), latest); err != nil {
			return err
		}
		latest.Status.FloatingIPAddress = addr.String()
		if err := r.Client.Status().Update(ctx, latest); err != nil {
			return err
		}
		*fip = *latest
		return nil
	})
	if err != nil {
		if rerr := r.IPAM.ReleaseOn(ctx, netKey.Namespace, netKey.Name, addr); rerr != nil {
			return nil, fmt.Errorf("%w (and %w)", err, rerr)
		}
		return nil, client.IgnoreNotFound(err)
	}
	return nil, nil
}

// associate fills st's fixed IP, router and node from fip's port.
func (r *Reconciler) associate(ctx context.Context, fip *networkingv1alpha1.FloatingIP, st *networkingv1alpha1.FloatingIPStatus) (*netstatus.Problem, error) {
	if fip.Spec.Port == "" {
		st.Status = networkingv1alpha1.StatusDown
		netstatus.Ready(&st.Conditions, fip.Generation, "Unassociated", "not associated with a port")
		return nil, nil
	}
	port := &networkingv1alpha1.Port{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: fip.Namespace, Name: fip.Spec.Port}, port)
	switch {
	case apierrors.IsNotFound(err):
		// As Neutron disassociates a floating IP from a deleted port.
		st.Status = networkingv1alpha1.StatusDown
		netstatus.NotReady(&st.Conditions, fip.Generation, &netstatus.Problem{Reason: "PortNotFound", Message: fmt.Sprintf("Port %s could not be found.", fip.Spec.Port)})
		return nil, nil
	case err != nil:
		return nil, err
	}
	var routers networkingv1alpha1.RouterList
	if err := r.Client.List(ctx, &routers, client.InNamespace(fip.Namespace)); err != nil {
		return nil, err
	}
	var fips networkingv1alpha1.FloatingIPList
	if err := r.Client.List(ctx, &fips, client.InNamespace(fip.Namespace)); err != nil {
		return nil, err
	}
	a, problem := Association(fip, port, routers.Items, fips.Items)
	if problem != nil {
		return problem, nil
	}
	st.FixedIPAddress, st.Router, st.NodeName = a.FixedIP, a.Router, a.Node
	if a.FixedIP == "" {
		st.Status = networkingv1alpha1.StatusDown
		netstatus.NotReady(&st.Conditions, fip.Generation, &netstatus.Problem{Reason: "PortNotReady", Message: fmt.Sprintf("Port %s has no address yet.", port.Name)})
		return nil, nil
	}
	if a.Node == "" {
		st.Status = networkingv1alpha1.StatusDown
		netstatus.NotReady(&st.Conditions, fip.Generation, &netstatus.Problem{Reason: "RouterNotReady", Message: fmt.Sprintf("Router %s has no node yet.", a.Router)})
		return nil, nil
	}
	st.Status = networkingv1alpha1.StatusActive
	netstatus.Ready(&st.Conditions, fip.Generation, "Associated", fmt.Sprintf("forwards to %s of port %s through router %s on node %s", a.FixedIP, port.Name, a.Router, a.Node))
	return nil, nil
}

// Target is where a floating IP forwards.
type Target struct {
	FixedIP, Router, Node string
}

// Association finds where fip forwards to on port: its fixed IP (spec's,
// which must be one of the port's, or the first), the oldest router of
// routers with an interface on that address's subnet and a gateway on
// fip's network, and that router's node. A port without an address yet
// gives an empty target and no problem. fips are the namespace's floating
// IPs: an older one on the same fixed IP wins.
func Association(fip *networkingv1alpha1.FloatingIP, port *networkingv1alpha1.Port, routers []networkingv1alpha1.Router, fips []networkingv1alpha1.FloatingIP) (Target, *netstatus.Problem) {
	if len(port.Status.FixedIPs) == 0 {
		return Target{}, nil
	}
	fixed := port.Status.FixedIPs[0]
	if want := fip.Spec.FixedIPAddress; want != "" {
		i := slices.IndexFunc(port.Status.FixedIPs, func(f networkingv1alpha1.FixedIP) bool { return f.IPAddress == want })
		if i < 0 {
			return Target{}, &netstatus.Problem{Reason: "InvalidFixedIPAddress", Message: fmt.Sprintf("Bad floatingip request: Port %s does not have fixed ip %s.", port.Name, want)}
		}
		fixed = port.Status.FixedIPs[i]
	}
	netKey := networkOf(fip)
	for i := range fips {
		o := &fips[i]
		if o.Name != fip.Name && o.DeletionTimestamp == nil && o.Spec.Port == port.Name && o.Status.FixedIPAddress == fixed.IPAddress && subnet.Older(o, fip) < 0 {
			return Target{}, &netstatus.Problem{Reason: "FloatingIPPortAlreadyAssociated", Message: fmt.Sprintf("Cannot associate floating IP %s with port %s using fixed IP %s, as that fixed IP already has floating IP %s on external network %s.", fip.Status.FloatingIPAddress, port.Name, fixed.IPAddress, o.Name, netKey)}
		}
	}
	var best *networkingv1alpha1.Router
	for i := range routers {
		rt := &routers[i]
		g := rt.Spec.ExternalGateway
		if rt.DeletionTimestamp != nil || g == nil || g.Network.Name != netKey.Name {
			continue
		}
		if ns := g.Network.Namespace; (ns == "" && rt.Namespace != netKey.Namespace) || (ns != "" && ns != netKey.Namespace) {
			continue
		}
		if !slices.ContainsFunc(rt.Status.Interfaces, func(in networkingv1alpha1.RouterInterfaceStatus) bool { return in.Subnet == fixed.Subnet }) {
			continue
		}
		if best == nil || subnet.Older(rt, best) < 0 {
			best = rt
		}
	}
	if best == nil {
		return Target{}, &netstatus.Problem{Reason: "ExternalGatewayForFloatingIPNotFound", Message: fmt.Sprintf("External network %s is not reachable from subnet %s. Therefore, cannot associate Port %s with a Floating IP.", netKey, fixed.Subnet, port.Name)}
	}
	if _, err := netip.ParseAddr(fixed.IPAddress); err != nil {
		return Target{}, &netstatus.Problem{Reason: "InvalidFixedIPAddress", Message: fmt.Sprintf("Port %s has an invalid address %q.", port.Name, fixed.IPAddress)}
	}
	return Target{FixedIP: fixed.IPAddress, Router: best.Name, Node: best.Status.NodeName}, nil
}

// finalize releases the floating address, then lets the FloatingIP go.
func (r *Reconciler) finalize(ctx context.Context, fip *networkingv1alpha1.FloatingIP) error {
	if !controllerutil.ContainsFinalizer(fip, Finalizer) {
		return nil
	}
	if a, err := netip.ParseAddr(fip.Status.FloatingIPAddress); err == nil {
		k := networkOf(fip)
		if err := r.IPAM.ReleaseOn(ctx, k.Namespace, k.Name, a); err != nil {
			return err
		}
	}
	controllerutil.RemoveFinalizer(fip, Finalizer)
	return client.IgnoreNotFound(r.Client.Update(ctx, fip))
}

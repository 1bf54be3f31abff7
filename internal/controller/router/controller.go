// Package router reconciles Routers: the address of the external gateway
// (taken from the external network's subnet, given back through a
// finalizer), the interfaces on the gateway addresses of their subnets
// (refusing overlapping CIDRs and subnets another router has), and the
// node whose network namespace routes for the router (kept while it is
// Ready, another one chosen when it is not).
package router

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash/fnv"
	"net/netip"
	"reflect"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/finalizer"
	"github.com/strata-cloud/strata/internal/controller/netstatus"
	"github.com/strata-cloud/strata/internal/controller/subnet"
)

// Finalizer holds a deleted Router until its external address is released.
const Finalizer = "networking.strata.io/router-gateway"

// Reconciler reconciles Routers.
type Reconciler struct {
	Client client.Client
	IPAM   subnet.IPAM
}

// SetupWithManager registers the reconciler for Routers, the Subnets and
// Networks they use, and Nodes (where routers run).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.IPAM.Client == nil {
		r.IPAM = subnet.IPAM{Client: mgr.GetClient(), Reader: mgr.GetAPIReader()}
	}
	nodeReadiness := predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return NodeReady(e.ObjectOld.(*corev1.Node)) != NodeReady(e.ObjectNew.(*corev1.Node))
		},
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("router").
		For(&networkingv1alpha1.Router{}).
		Watches(&networkingv1alpha1.Subnet{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.routers(ctx, func(rt *networkingv1alpha1.Router) bool {
				return rt.Namespace == o.GetNamespace() && slices.ContainsFunc(rt.Spec.Interfaces, func(i networkingv1alpha1.RouterInterface) bool { return i.Subnet == o.GetName() })
			})
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&networkingv1alpha1.Network{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.routers(ctx, func(rt *networkingv1alpha1.Router) bool {
				g := rt.Spec.ExternalGateway
				return g != nil && g.Network.Name == o.GetName() && refNamespace(g.Network, rt.Namespace) == o.GetNamespace()
			})
		})).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.routers(ctx, func(*networkingv1alpha1.Router) bool { return true })
		}), builder.WithPredicates(nodeReadiness)).
		Complete(r)
}

func (r *Reconciler) routers(ctx context.Context, match func(*networkingv1alpha1.Router) bool) []reconcile.Request {
	var list networkingv1alpha1.RouterList
	if err := r.Client.List(ctx, &list); err != nil {
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

func refNamespace(ref networkingv1alpha1.NetworkRef, own string) string {
	if ref.Namespace != "" {
		return ref.Namespace
	}
	return own
}

// Reconcile wires one router's status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	rt := &networkingv1alpha1.Router{}
	if err := r.Client.Get(ctx, req.NamespacedName, rt); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if rt.DeletionTimestamp != nil {
		return ctrl.Result{}, r.finalize(ctx, rt)
	}
	if err := finalizer.Ensure(ctx, r.Client, rt, Finalizer); err != nil {
		return ctrl.Result{}, err
	}
	st := *rt.Status.DeepCopy()
	ifaces, problem, err := r.interfaces(ctx, rt)
	if err != nil {
		return ctrl.Result{}, err
	}
	st.Interfaces = ifaces

	gwProblem, err := r.gateway(ctx, rt, &st)
	if err != nil {
		return ctrl.Result{}, err
	}
	if problem == nil {
		problem = gwProblem
	}

	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		return ctrl.Result{}, err
	}
	st.NodeName = ChooseNode(nodes.Items, rt.Status.NodeName, rt.Namespace+"/"+rt.Name)
	if problem == nil && st.NodeName == "" {
		problem = &netstatus.Problem{Reason: "NoReadyNode", Message: "No Ready node can host the router."}
	}
	if problem != nil {
		st.Status = networkingv1alpha1.StatusError
		netstatus.NotReady(&st.Conditions, rt.Generation, problem)
	} else {
		st.Status = networkingv1alpha1.StatusActive
		netstatus.Ready(&st.Conditions, rt.Generation, "Active", fmt.Sprintf("%d interfaces, on node %s", len(st.Interfaces), st.NodeName))
	}
	return ctrl.Result{}, r.writeStatus(ctx, rt, st)
}

// gateway sets st.externalIP for rt's external gateway: kept while it is
// on the gateway's network, else released and allocated anew.
func (r *Reconciler) gateway(ctx context.Context, rt *networkingv1alpha1.Router, st *networkingv1alpha1.RouterStatus) (*netstatus.Problem, error) {
	g := rt.Spec.ExternalGateway
	if g == nil {
		// An address of a gateway that was removed or changed networks
		// is freed by its subnet's repair: which network it was on is
		// not recorded.
		st.ExternalIP = ""
		return nil, nil
	}
	ns := refNamespace(g.Network, rt.Namespace)
	net := &networkingv1alpha1.Network{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: g.Network.Name}, net)
	switch {
	case apierrors.IsNotFound(err):
		st.ExternalIP = ""
		return &netstatus.Problem{Reason: "ExternalNetworkNotFound", Message: fmt.Sprintf("Network %s/%s could not be found.", ns, g.Network.Name)}, nil
	case err != nil:
		return nil, err
	case !net.Spec.External:
		st.ExternalIP = ""
		return &netstatus.Problem{Reason: "NetworkNotExternal", Message: fmt.Sprintf("Bad router request: Network %s/%s is not a valid external network.", ns, g.Network.Name)}, nil
	}
	if have, err := netip.ParseAddr(st.ExternalIP); err == nil {
		subnets, err := subnet.OfNetwork(ctx, r.Client, ns, g.Network.Name)
		if err != nil {
			return nil, err
		}
		if subnet.Containing(subnets, have) != nil && (g.ExternalIP == "" || g.ExternalIP == st.ExternalIP) {
			return nil, nil
		}
		if err := r.IPAM.ReleaseOn(ctx, ns, g.Network.Name, have); err != nil {
			return nil, err
		}
		st.ExternalIP = ""
		// Record the release before taking another address.
		if err := r.writeStatus(ctx, rt, *st); err != nil {
			return nil, err
		}
	}
	addr, problem, err := r.IPAM.AllocateOn(ctx, ns, g.Network.Name, g.ExternalIP)
	if err != nil || problem != nil {
		return problem, err
	}
	st.ExternalIP = addr.String()
	// The address is taken: record it now, retrying conflicts, or give it
	// back.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		latest := &networkingv1alpha1.Router{}
		if err := r.IPAM.Reader.Get(ctx, client.ObjectKeyFromObject(rt), latest); err != nil {
			return err
		}
		latest.Status.ExternalIP = st.ExternalIP
		if err := r.Client.Status().Update(ctx, latest); err != nil {
			return err
		}
		*rt = *latest
		return nil
	})
	if err != nil {
		if rerr := r.IPAM.ReleaseOn(ctx, ns, g.Network.Name, addr); rerr != nil {
			return nil, fmt.Errorf("%w (and %w)", err, rerr)
		}
		return nil, client.IgnoreNotFound(err)
	}
	return nil, nil
}

// interfaces resolves rt's interfaces in order; one that cannot be wired
// (missing subnet, no gateway address, overlapping an earlier one, or
// attached to an older router) is left out and reported.
func (r *Reconciler) interfaces(ctx context.Context, rt *networkingv1alpha1.Router) ([]networkingv1alpha1.RouterInterfaceStatus, *netstatus.Problem, error) {
	var others networkingv1alpha1.RouterList
	if err := r.Client.List(ctx, &others, client.InNamespace(rt.Namespace)); err != nil {
		return nil, nil, err
	}
	var out []networkingv1alpha1.RouterInterfaceStatus
	var first *netstatus.Problem
	report := func(p *netstatus.Problem) {
		if first == nil {
			first = p
		}
	}
	var wired []*networkingv1alpha1.Subnet
	for _, in := range rt.Spec.Interfaces {
		sn := &networkingv1alpha1.Subnet{}
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: rt.Namespace, Name: in.Subnet}, sn)
		if apierrors.IsNotFound(err) {
			report(&netstatus.Problem{Reason: "SubnetNotFound", Message: fmt.Sprintf("Subnet %s could not be found.", in.Subnet)})
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		cidr, gw, _, err := subnet.Effective(sn)
		if err != nil || !gw.IsValid() {
			report(&netstatus.Problem{Reason: "SubnetHasNoGateway", Message: fmt.Sprintf("Bad router request: Subnet %s does not have a gateway IP.", in.Subnet)})
			continue
		}
		if other := OverlapWith(cidr, wired); other != nil {
			report(&netstatus.Problem{Reason: "Overlap", Message: fmt.Sprintf("Bad router request: Cidr %s of subnet %s overlaps with cidr %s of subnet %s.", sn.Spec.CIDR, sn.Name, other.Spec.CIDR, other.Name)})
			continue
		}
		if owner := attachedElsewhere(rt, others.Items, in.Subnet); owner != "" {
			report(&netstatus.Problem{Reason: "SubnetInUse", Message: fmt.Sprintf("Subnet %s is already attached to router %s.", in.Subnet, owner)})
			continue
		}
		wired = append(wired, sn)
		out = append(out, networkingv1alpha1.RouterInterfaceStatus{Subnet: in.Subnet, IPAddress: gw.String(), MACAddress: InterfaceMAC(rt, in.Subnet)})
	}
	return out, first, nil
}

// OverlapWith returns the subnet of subnets whose CIDR overlaps cidr.
func OverlapWith(cidr netip.Prefix, subnets []*networkingv1alpha1.Subnet) *networkingv1alpha1.Subnet {
	for _, o := range subnets {
		if p, err := netip.ParsePrefix(o.Spec.CIDR); err == nil && p.Overlaps(cidr) {
			return o
		}
	}
	return nil
}

// attachedElsewhere names the router of others that has subnetName: one
// that wired it (status) while rt did not, or an older one that wired it
// or asks for it and was not refused it yet.
func attachedElsewhere(rt *networkingv1alpha1.Router, others []networkingv1alpha1.Router, subnetName string) string {
	wired := func(o *networkingv1alpha1.Router) bool {
		return slices.ContainsFunc(o.Status.Interfaces, func(i networkingv1alpha1.RouterInterfaceStatus) bool { return i.Subnet == subnetName })
	}
	for i := range others {
		o := &others[i]
		if o.Name == rt.Name || o.DeletionTimestamp != nil {
			continue
		}
		asks := slices.ContainsFunc(o.Spec.Interfaces, func(i networkingv1alpha1.RouterInterface) bool { return i.Subnet == subnetName })
		c := meta.FindStatusCondition(o.Status.Conditions, networkingv1alpha1.ConditionReady)
		refused := c != nil && c.ObservedGeneration == o.Generation && !wired(o)
		switch {
		case !asks:
		case wired(o) && !wired(rt):
			return o.Name
		case subnet.Older(o, rt) < 0 && !refused:
			return o.Name
		}
	}
	return ""
}

// InterfaceMAC is the MAC of rt's interface on a subnet, derived from the
// router's UID so that it stays across nodes and restarts.
func InterfaceMAC(rt *networkingv1alpha1.Router, subnetName string) string {
	h := sha256.Sum256([]byte(string(rt.UID) + "/" + subnetName))
	return fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", h[0], h[1], h[2])
}

// NodeReady reports whether n's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ChooseNode keeps current while it is Ready; otherwise it spreads
// routers over the Ready nodes by a hash of key. "" when none is Ready.
func ChooseNode(nodes []corev1.Node, current, key string) string {
	var ready []string
	for i := range nodes {
		if NodeReady(&nodes[i]) && nodes[i].DeletionTimestamp == nil {
			ready = append(ready, nodes[i].Name)
		}
	}
	if len(ready) == 0 {
		return ""
	}
	if slices.Contains(ready, current) {
		return current
	}
	slices.Sort(ready)
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return ready[int(h.Sum32()%uint32(len(ready)))]
}

func (r *Reconciler) writeStatus(ctx context.Context, rt *networkingv1alpha1.Router, st networkingv1alpha1.RouterStatus) error {
	if reflect.DeepEqual(st, rt.Status) {
		return nil
	}
	changed := rt.DeepCopy()
	changed.Status = st
	if err := r.Client.Status().Update(ctx, changed); err != nil {
		if apierrors.IsConflict(err) {
			return nil // the update event brings it back
		}
		return client.IgnoreNotFound(err)
	}
	*rt = *changed
	return nil
}

// finalize releases the router's external address, then lets it go.
func (r *Reconciler) finalize(ctx context.Context, rt *networkingv1alpha1.Router) error {
	if !controllerutil.ContainsFinalizer(rt, Finalizer) {
		return nil
	}
	if a, err := netip.ParseAddr(rt.Status.ExternalIP); err == nil && rt.Spec.ExternalGateway != nil {
		g := rt.Spec.ExternalGateway
		if err := r.IPAM.ReleaseOn(ctx, refNamespace(g.Network, rt.Namespace), g.Network.Name, a); err != nil {
			return err
		}
	}
	controllerutil.RemoveFinalizer(rt, Finalizer)
	return client.IgnoreNotFound(r.Client.Update(ctx, rt))
}

// Package subnet reconciles Subnets: their effective gateway and
// allocation pools, overlap with the other subnets of their network, the
// used/available counts, and a repair pass that rebuilds the address
// bitmap from its holders (Ports, Routers' external gateways, FloatingIPs)
// when the two disagree. It also owns the allocation of a subnet's
// addresses through the API server (IPAM), which the port, router and
// floating IP controllers use.
package subnet

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/netstatus"
)

// Defaults of Reconciler's timing.
const (
	// DefaultRepairEvery is how often a subnet's bitmap is checked
	// against its holders.
	DefaultRepairEvery = time.Minute
	// DefaultLeakGrace is how long an address must stay set with no
	// holder before the repair frees it: an allocation is written to the
	// subnet before its holder's status, and caches lag.
	DefaultLeakGrace = 2 * time.Minute
)

// Reconciler reconciles Subnets.
type Reconciler struct {
	Client      client.Client
	RepairEvery time.Duration
	LeakGrace   time.Duration
	Now         func() time.Time

	mu sync.Mutex
	// leaks are addresses set in a bitmap that no holder had, by subnet,
	// with when that was first seen.
	leaks map[types.NamespacedName]map[netip.Addr]time.Time
}

// SetupWithManager registers the reconciler for Subnets, their networks
// and their siblings (overlap).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("subnet").
		For(&networkingv1alpha1.Subnet{}).
		Watches(&networkingv1alpha1.Network{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.subnetsOf(ctx, o.GetNamespace(), o.GetName())
		})).
		// Siblings' overlap changes only when one comes or goes (cidr
		// cannot change), not with every allocation.
		Watches(&networkingv1alpha1.Subnet{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.subnetsOf(ctx, o.GetNamespace(), o.(*networkingv1alpha1.Subnet).Spec.Network)
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
}

func (r *Reconciler) subnetsOf(ctx context.Context, ns, network string) []reconcile.Request {
	var list networkingv1alpha1.SubnetList
	if err := r.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, sn := range list.Items {
		if sn.Spec.Network == network {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&sn)})
		}
	}
	return out
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Reconcile derives one subnet's status and repairs its bitmap.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	sn := &networkingv1alpha1.Subnet{}
	if err := r.Client.Get(ctx, req.NamespacedName, sn); err != nil {
		if apierrors.IsNotFound(err) {
			r.mu.Lock()
			delete(r.leaks, req.NamespacedName)
			r.mu.Unlock()
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if sn.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	st := *sn.Status.DeepCopy()
	problem, err := r.check(ctx, sn)
	if err != nil {
		return ctrl.Result{}, err
	}
	_, gw, pools, effErr := Effective(sn)
	if effErr == nil {
		st.GatewayIP = ""
		if gw.IsValid() {
			st.GatewayIP = gw.String()
		}
		st.AllocationPools = nil
		for _, p := range pools {
			st.AllocationPools = append(st.AllocationPools, networkingv1alpha1.AllocationPool{Start: p.Start.String(), End: p.End.String()})
		}
		a, err := Open(sn)
		if err != nil {
			problem = &netstatus.Problem{Reason: "InvalidAllocations", Message: err.Error()}
		} else {
			held, err := Holders(ctx, r.Client, sn)
			if err != nil {
				return ctrl.Result{}, err
			}
			r.repair(req.NamespacedName, a, held)
			Counts(&st, a)
		}
	} else if problem == nil {
		problem = &netstatus.Problem{Reason: "InvalidSubnet", Message: "Invalid input for operation: " + effErr.Error() + "."}
	}
	if problem != nil {
		st.Status = networkingv1alpha1.StatusError
		netstatus.NotReady(&st.Conditions, sn.Generation, problem)
	} else {
		st.Status = networkingv1alpha1.StatusActive
		// No counts here: they change with every allocation.
		netstatus.Ready(&st.Conditions, sn.Generation, "Active", "the subnet's addresses can be allocated")
	}
	if !reflect.DeepEqual(st, sn.Status) {
		sn = sn.DeepCopy()
		sn.Status = st
		if err := r.Client.Status().Update(ctx, sn); err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
			}
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	every := r.RepairEvery
	if every <= 0 {
		every = DefaultRepairEvery
	}
	return ctrl.Result{RequeueAfter: every}, nil
}

// check finds what makes sn unusable: its network missing, or its CIDR
// overlapping an older subnet of the same network.
func (r *Reconciler) check(ctx context.Context, sn *networkingv1alpha1.Subnet) (*netstatus.Problem, error) {
	net := &networkingv1alpha1.Network{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: sn.Namespace, Name: sn.Spec.Network}, net)
	switch {
	case apierrors.IsNotFound(err):
		return &netstatus.Problem{Reason: "NetworkNotFound", Message: fmt.Sprintf("Network %s could not be found.", sn.Spec.Network)}, nil
	case err != nil:
		return nil, err
	}
	mine, err := netip.ParsePrefix(sn.Spec.CIDR)
	if err != nil {
		return &netstatus.Problem{Reason: "InvalidSubnet", Message: fmt.Sprintf("Invalid input for operation: %q is not a valid CIDR.", sn.Spec.CIDR)}, nil
	}
	siblings, err := OfNetwork(ctx, r.Client, sn.Namespace, sn.Spec.Network)
	if err != nil {
		return nil, err
	}
	for i := range siblings {
		other := &siblings[i]
		if other.Name == sn.Name {
			break // only older subnets win
		}
		if p, err := netip.ParsePrefix(other.Spec.CIDR); err == nil && p.Overlaps(mine) {
			return &netstatus.Problem{Reason: "Overlap", Message: fmt.Sprintf("Invalid input for operation: Requested subnet with cidr: %s for network: %s overlaps with another subnet: %s (%s).", sn.Spec.CIDR, sn.Spec.Network, other.Name, other.Spec.CIDR)}, nil
		}
	}
	return nil, nil
}

// repair makes a's bitmap agree with held: an address a holder has is
// set; an address set with no holder is freed once it stayed so for the
// leak grace (it may be an allocation whose holder's status is not
// written, or not cached, yet).
func (r *Reconciler) repair(key types.NamespacedName, a interface {
	Has(netip.Addr) bool
	Mark(netip.Addr)
	Release(netip.Addr)
	Allocated() []netip.Addr
}, held map[netip.Addr]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leaks == nil {
		r.leaks = map[types.NamespacedName]map[netip.Addr]time.Time{}
	}
	for addr := range held {
		a.Mark(addr)
	}
	grace := r.LeakGrace
	if grace <= 0 {
		grace = DefaultLeakGrace
	}
	seen := r.leaks[key]
	next := map[netip.Addr]time.Time{}
	now := r.now()
	for _, addr := range a.Allocated() {
		if _, ok := held[addr]; ok {
			continue
		}
		first, ok := seen[addr]
		if !ok {
			first = now
		}
		if now.Sub(first) >= grace {
			a.Release(addr)
			continue
		}
		next[addr] = first
	}
	r.leaks[key] = next
}

// Holders maps the addresses of sn that something holds to who holds it:
// Ports of its namespace (status.fixedIPs on it), and, when its network is
// external, Routers' external addresses and FloatingIPs of any namespace.
func Holders(ctx context.Context, c client.Reader, sn *networkingv1alpha1.Subnet) (map[netip.Addr]string, error) {
	cidr, err := netip.ParsePrefix(sn.Spec.CIDR)
	if err != nil {
		return nil, err
	}
	held := map[netip.Addr]string{}
	var ports networkingv1alpha1.PortList
	if err := c.List(ctx, &ports, client.InNamespace(sn.Namespace)); err != nil {
		return nil, err
	}
	for _, p := range ports.Items {
		for _, ip := range p.Status.FixedIPs {
			if a, err := netip.ParseAddr(ip.IPAddress); err == nil && ip.Subnet == sn.Name {
				held[a] = "port " + p.Name
			}
		}
	}
	onNetwork := func(ref networkingv1alpha1.NetworkRef, ns string) bool {
		if ref.Namespace != "" {
			ns = ref.Namespace
		}
		return ns == sn.Namespace && ref.Name == sn.Spec.Network
	}
	var routers networkingv1alpha1.RouterList
	if err := c.List(ctx, &routers); err != nil {
		return nil, err
	}
	for _, rt := range routers.Items {
		if g := rt.Spec.ExternalGateway; g != nil && onNetwork(g.Network, rt.Namespace) {
			if a, err := netip.ParseAddr(rt.Status.ExternalIP); err == nil && cidr.Contains(a) {
				held[a] = "router " + rt.Namespace + "/" + rt.Name
			}
		}
	}
	var fips networkingv1alpha1.FloatingIPList
	if err := c.List(ctx, &fips); err != nil {
		return nil, err
	}
	for _, f := range fips.Items {
		if onNetwork(f.Spec.Network, f.Namespace) {
			if a, err := netip.ParseAddr(f.Status.FloatingIPAddress); err == nil && cidr.Contains(a) {
				held[a] = "floating IP " + f.Namespace + "/" + f.Name
			}
		}
	}
	return held, nil
}

// Package network reconciles Networks: each vxlan network gets a VNI
// (its spec's, or the lowest free one from FirstVNI) that no other
// Network of the cluster has, its MTU, and the list of its subnets.
package network

import (
	"context"
	"fmt"
	"reflect"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/netstatus"
	"github.com/strata-cloud/strata/internal/controller/subnet"
)

// FirstVNI is the lowest VNI assigned automatically; lower ones are left
// for explicit choices.
const FirstVNI = 100

// MaxVNI is VXLAN's largest network identifier.
const MaxVNI = 1<<24 - 1

// Default MTUs: a VXLAN header takes 50 bytes of a 1500-byte LAN.
const (
	MTUVXLAN = 1450
	MTUFlat  = 1500
)

// Reconciler reconciles Networks, one at a time: each VNI choice sees
// the ones before it.
type Reconciler struct {
	Client client.Client
	// Reader lists the Networks from the API server itself, not a cache
	// that may not show the VNI just given to another network.
	Reader client.Reader
}

// SetupWithManager registers the reconciler for Networks and their Subnets.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Reader == nil {
		r.Reader = mgr.GetAPIReader()
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("network").
		For(&networkingv1alpha1.Network{}).
		Watches(&networkingv1alpha1.Subnet{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.(*networkingv1alpha1.Subnet).Spec.Network}}}
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})). // not every allocation
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(r)
}

// Reconcile assigns one network's VNI and MTU and lists its subnets.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	net := &networkingv1alpha1.Network{}
	if err := r.Reader.Get(ctx, req.NamespacedName, net); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if net.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	st := *net.Status.DeepCopy()
	var problem *netstatus.Problem
	if net.Spec.ProviderType == networkingv1alpha1.ProviderFlat {
		st.SegmentationID = 0
	} else {
		var all networkingv1alpha1.NetworkList
		if err := r.Reader.List(ctx, &all); err != nil {
			return ctrl.Result{}, err
		}
		vni, p := SegmentationID(net, all.Items)
		if p != nil {
			problem = p
		}
		st.SegmentationID = vni
	}
	st.MTU = net.Spec.MTU
	if st.MTU == 0 {
		st.MTU = MTUVXLAN
		if net.Spec.ProviderType == networkingv1alpha1.ProviderFlat {
			st.MTU = MTUFlat
		}
	}
	subnets, err := subnet.OfNetwork(ctx, r.Client, net.Namespace, net.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	st.Subnets = nil
	for _, sn := range subnets {
		st.Subnets = append(st.Subnets, sn.Name)
	}
	if problem != nil {
		st.Status = networkingv1alpha1.StatusError
		netstatus.NotReady(&st.Conditions, net.Generation, problem)
	} else {
		st.Status = networkingv1alpha1.StatusActive
		msg := fmt.Sprintf("%s network, MTU %d", providerOf(net), st.MTU)
		if st.SegmentationID != 0 {
			msg = fmt.Sprintf("%s network, VNI %d, MTU %d", providerOf(net), st.SegmentationID, st.MTU)
		}
		netstatus.Ready(&st.Conditions, net.Generation, "Active", msg)
	}
	if reflect.DeepEqual(st, net.Status) {
		return ctrl.Result{}, nil
	}
	net.Status = st
	if err := r.Client.Status().Update(ctx, net); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, nil
}

func providerOf(net *networkingv1alpha1.Network) string {
	if net.Spec.ProviderType == "" {
		return networkingv1alpha1.ProviderVXLAN
	}
	return net.Spec.ProviderType
}

// SegmentationID chooses net's VNI among all the cluster's networks: its
// spec's, unless another network has it (SegmentationIDInUse); else the
// one it has, unless another network has it too; else the lowest free
// one from FirstVNI. A network that holds a VNI in its status keeps it
// against one that only asks for it; between equals the older (creation,
// then namespace/name) wins.
func SegmentationID(net *networkingv1alpha1.Network, all []networkingv1alpha1.Network) (int32, *netstatus.Problem) {
	older := func(o *networkingv1alpha1.Network) bool {
		if c := o.CreationTimestamp.Compare(net.CreationTimestamp.Time); c != 0 {
			return c < 0
		}
		return o.Namespace+"/"+o.Name < net.Namespace+"/"+net.Name
	}
	var others []*networkingv1alpha1.Network
	used := map[int32]bool{}
	for i := range all {
		o := &all[i]
		if o.Namespace == net.Namespace && o.Name == net.Name || o.Spec.ProviderType == networkingv1alpha1.ProviderFlat {
			continue
		}
		others = append(others, o)
		used[o.Status.SegmentationID] = true
		used[ptrValue(o.Spec.SegmentationID)] = true
	}
	lost := func(v int32) bool {
		netHolds := net.Status.SegmentationID == v
		for _, o := range others {
			oHolds := o.Status.SegmentationID == v
			if !oHolds && ptrValue(o.Spec.SegmentationID) != v {
				continue
			}
			if oHolds && !netHolds || oHolds == netHolds && older(o) {
				return true
			}
		}
		return false
	}
	if want := ptrValue(net.Spec.SegmentationID); want != 0 {
		if lost(want) {
			return 0, &netstatus.Problem{Reason: "SegmentationIDInUse", Message: fmt.Sprintf("Unable to create the network. The VXLAN segmentation ID %d is in use.", want)}
		}
		return want, nil
	}
	if have := net.Status.SegmentationID; have != 0 && !lost(have) {
		return have, nil
	}
	for vni := int32(FirstVNI); vni <= MaxVNI; vni++ {
		if !used[vni] {
			return vni, nil
		}
	}
	return 0, &netstatus.Problem{Reason: "NoNetworkAvailable", Message: "Unable to create the network. No tenant network is available for allocation."}
}

func ptrValue(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

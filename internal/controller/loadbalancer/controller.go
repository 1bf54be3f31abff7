// Package loadbalancer is the allocator of LoadBalancer Services'
// addresses: it gives each Service of Strata's class an address from the
// external pool (--lb-pool) in status.loadBalancer.ingress, and takes it
// back when the Service goes or stops being a load balancer. The nodes
// announce the addresses (internal/network/lb).
package loadbalancer

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/strata-cloud/strata/internal/network/lb"
)

// conflictRetry is how soon a Service whose status write conflicted is
// read again.
const conflictRetry = 100 * time.Millisecond

// EventsName is the reporting controller of the Services' events.
const EventsName = "strata-lb-allocator"

// Reconciler allocates pool addresses to LoadBalancer Services.
//
// Which addresses are taken is derived from the Services' status, plus
// the addresses this reconciler wrote and its cache may not show yet, so
// two Services never get one address; each status write carries the
// Service's resourceVersion (optimistic concurrency).
type Reconciler struct {
	Client   client.Client
	Pool     lb.Pool
	Recorder events.EventRecorder

	mu sync.Mutex
	// assigned are the addresses this reconciler wrote, by Service.
	assigned map[types.NamespacedName]netip.Addr
	// pending are Services without an address, with the reason last
	// reported: retried whenever any Service changes (one may have freed
	// an address), reported again only when the reason changes.
	pending map[types.NamespacedName]string
}

// SetupWithManager registers the reconciler for Services.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder(EventsName)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("loadbalancer").
		For(&corev1.Service{}).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
			return r.pendingRequests()
		})).
		Complete(r)
}

func (r *Reconciler) pendingRequests() []reconcile.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []reconcile.Request
	for key := range r.pending {
		out = append(out, reconcile.Request{NamespacedName: key})
	}
	return out
}

// Reconcile gives one Service its address, or takes it back.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	r.mu.Lock() // one allocation at a time: each sees the ones before
	defer r.mu.Unlock()
	if r.assigned == nil {
		r.assigned = map[types.NamespacedName]netip.Addr{}
		r.pending = map[types.NamespacedName]string{}
	}
	svc := &corev1.Service{}
	if err := r.Client.Get(ctx, req.NamespacedName, svc); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.forget(ctx, req.NamespacedName, false)
		}
		return ctrl.Result{}, err
	}
	if !lb.Ours(svc) || svc.DeletionTimestamp != nil {
		return retry(r.takeBack(ctx, svc))
	}
	var all corev1.ServiceList
	if err := r.Client.List(ctx, &all); err != nil {
		return ctrl.Result{}, err
	}
	held := map[netip.Addr]lb.Claim{}
	for i := range all.Items {
		other := &all.Items[i]
		if key := client.ObjectKeyFromObject(other); key != req.NamespacedName {
			for _, a := range lb.Addresses(other) {
				held[a] = claimOf(other)
			}
		}
	}
	for key, a := range r.assigned {
		if _, known := held[a]; !known && key != req.NamespacedName {
			held[a] = lb.Claim{Service: key.String()} // zero time: the earlier write wins
		}
	}
	current := lb.Addresses(svc)
	addr, err := lb.Assign(r.Pool, lb.Request{Claim: claimOf(svc), LoadBalancerIP: svc.Spec.LoadBalancerIP, Current: current}, held)
	if err != nil {
		if r.pending[req.NamespacedName] != err.Error() {
			r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, "AllocationFailed", "Allocate", "%v", err)
		}
		r.pending[req.NamespacedName] = err.Error()
		if len(current) > 0 { // an address it may no longer keep
			if err := r.setStatus(ctx, svc, nil); err != nil {
				return retry(err)
			}
		}
		delete(r.assigned, req.NamespacedName)
		return ctrl.Result{}, nil
	}
	delete(r.pending, req.NamespacedName)
	if len(svc.Status.LoadBalancer.Ingress) == 1 && slices.Equal(current, []netip.Addr{addr}) {
		r.assigned[req.NamespacedName] = addr
		return ctrl.Result{}, nil
	}
	ingress := []corev1.LoadBalancerIngress{{IP: addr.String(), IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
	if err := r.setStatus(ctx, svc, ingress); err != nil {
		return retry(err)
	}
	r.assigned[req.NamespacedName] = addr
	r.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, "IPAllocated", "Allocate", "Assigned IP %s from the pool %s", addr, r.Pool)
	return ctrl.Result{}, nil
}

// retry requeues after a conflict (the Service changed since it was
// read) without reporting it as a failure.
func retry(err error) (ctrl.Result, error) {
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	return ctrl.Result{}, err
}

func claimOf(svc *corev1.Service) lb.Claim {
	return lb.Claim{Service: client.ObjectKeyFromObject(svc).String(), Created: svc.CreationTimestamp.Time}
}

// takeBack clears the pool address of a Service that is no longer
// Strata's load balancer (its type or class changed).
func (r *Reconciler) takeBack(ctx context.Context, svc *corev1.Service) error {
	had := (svc.Spec.LoadBalancerClass == nil || *svc.Spec.LoadBalancerClass == lb.Class) &&
		slices.ContainsFunc(lb.Addresses(svc), r.Pool.Contains)
	if had {
		if err := r.setStatus(ctx, svc, nil); err != nil {
			return err
		}
		r.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, "IPReleased", "Release", "Released %v: the Service is no longer a load balancer", lb.Addresses(svc))
	}
	return r.forget(ctx, client.ObjectKeyFromObject(svc), had)
}

// forget drops what is known of a Service that has no address any more,
// and the lock its announcers competed for (when it had an address:
// this reconciler's, or one it just cleared).
func (r *Reconciler) forget(ctx context.Context, key types.NamespacedName, hadAddress bool) error {
	delete(r.pending, key)
	if _, assigned := r.assigned[key]; !assigned && !hadAddress {
		return nil
	}
	err := r.Client.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: lb.LeaseNamespace, Name: lb.LeaseName(key.Namespace, key.Name)}})
	if client.IgnoreNotFound(err) != nil {
		return err
	}
	delete(r.assigned, key)
	return nil
}

// setStatus writes the Service's load balancer status; the update fails
// with a conflict when the Service changed since it was read.
func (r *Reconciler) setStatus(ctx context.Context, svc *corev1.Service, ingress []corev1.LoadBalancerIngress) error {
	svc = svc.DeepCopy()
	svc.Status.LoadBalancer.Ingress = ingress
	return r.Client.Status().Update(ctx, svc)
}

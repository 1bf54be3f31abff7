// Package port reconciles Ports: each gets its address from its network's
// subnet (written to the Subnet's bitmap, with optimistic concurrency,
// before the Port's status names it) and a MAC, and gives the address
// back through a finalizer when it is deleted. Nodes own status.nodeName
// and the ACTIVE status; this controller never overwrites them.
package port

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"time"

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

// Finalizer holds a deleted Port until its addresses are released.
const Finalizer = "networking.strata.io/port-addresses"

// retryInUse is how soon a port whose address is taken tries again: the
// subnet's repair may free a leaked address.
const retryInUse = 30 * time.Second

// Reconciler reconciles Ports.
type Reconciler struct {
	Client client.Client
	IPAM   subnet.IPAM
}

// SetupWithManager registers the reconciler for Ports; a new Network or
// Subnet retries the ports of its namespace that have no address.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.IPAM.Client == nil {
		r.IPAM = subnet.IPAM{Client: mgr.GetClient(), Reader: mgr.GetAPIReader()}
	}
	waiting := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		var ports networkingv1alpha1.PortList
		if err := r.Client.List(ctx, &ports, client.InNamespace(o.GetNamespace())); err != nil {
			return nil
		}
		var out []reconcile.Request
		for _, p := range ports.Items {
			if len(p.Status.FixedIPs) == 0 {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
			}
		}
		return out
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("port").
		For(&networkingv1alpha1.Port{}).
		Watches(&networkingv1alpha1.Network{}, waiting).
		Watches(&networkingv1alpha1.Subnet{}, waiting).
		Complete(r)
}

// Reconcile allocates one port's address and MAC, or releases them.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	port := &networkingv1alpha1.Port{}
	if err := r.Client.Get(ctx, req.NamespacedName, port); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if port.DeletionTimestamp != nil {
		return ctrl.Result{}, r.finalize(ctx, port)
	}
	if err := finalizer.Ensure(ctx, r.Client, port, Finalizer); err != nil {
		return ctrl.Result{}, err
	}
	mac := port.Status.MACAddress
	if mac == "" {
		mac = port.Spec.MACAddress
		if mac == "" {
			mac = RandomMAC()
		}
	}
	if len(port.Status.FixedIPs) > 0 {
		return ctrl.Result{}, r.apply(ctx, port, false, func(st *networkingv1alpha1.PortStatus) { ready(port, st, mac) })
	}
	fixed, problem, err := r.allocate(ctx, port)
	if err != nil {
		return ctrl.Result{}, err
	}
	if problem != nil {
		var requeue time.Duration
		if problem.Reason == "IPAddressInUse" {
			requeue = retryInUse
		}
		return ctrl.Result{RequeueAfter: requeue}, r.apply(ctx, port, false, func(st *networkingv1alpha1.PortStatus) {
			st.MACAddress = mac
			st.Status = networkingv1alpha1.StatusError
			netstatus.NotReady(&st.Conditions, port.Generation, problem)
		})
	}
	err = r.apply(ctx, port, true, func(st *networkingv1alpha1.PortStatus) {
		st.FixedIPs = fixed
		ready(port, st, mac)
	})
	if err != nil {
		// The addresses are taken but no port names them: give them back.
		if rerr := r.release(ctx, port.Namespace, fixed); rerr != nil {
			return ctrl.Result{}, fmt.Errorf("%w (and %w: the subnet's repair frees them later)", err, rerr)
		}
		if errors.Is(err, errGotAddresses) {
			return ctrl.Result{Requeue: true}, nil
		}
	}
	return ctrl.Result{}, client.IgnoreNotFound(err)
}

// ready is the status of a port with its addresses: DOWN until a node
// binds it (nodes set ACTIVE and nodeName; they stay).
func ready(port *networkingv1alpha1.Port, st *networkingv1alpha1.PortStatus, mac string) {
	if st.MACAddress == "" {
		st.MACAddress = mac
	}
	if st.Status == "" || st.Status == networkingv1alpha1.StatusError || st.Status == networkingv1alpha1.StatusBuild {
		st.Status = networkingv1alpha1.StatusDown
	}
	netstatus.Ready(&st.Conditions, port.Generation, "Allocated", fmt.Sprintf("address %s on subnet %s", st.FixedIPs[0].IPAddress, st.FixedIPs[0].Subnet))
}

// apply writes mutate's changes to port's status, unless there are none.
// With persist (addresses just taken that only this write records), a
// conflict is retried from a fresh read: the port's spec cannot change
// what it asked for, and the nodes' fields are kept.
func (r *Reconciler) apply(ctx context.Context, port *networkingv1alpha1.Port, persist bool, mutate func(*networkingv1alpha1.PortStatus)) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		st := port.Status.DeepCopy()
		mutate(st)
		if reflect.DeepEqual(*st, port.Status) {
			return nil
		}
		changed := port.DeepCopy()
		changed.Status = *st
		err := r.Client.Status().Update(ctx, changed)
		if apierrors.IsConflict(err) && persist {
			latest := &networkingv1alpha1.Port{}
			if gerr := r.IPAM.Reader.Get(ctx, client.ObjectKeyFromObject(port), latest); gerr != nil {
				return gerr
			}
			if len(latest.Status.FixedIPs) > 0 {
				return errGotAddresses
			}
			port = latest
		}
		return err
	})
	if apierrors.IsConflict(err) && !persist {
		return nil // the port's update event brings it back
	}
	return err
}

// errGotAddresses: another writer (a second server) gave the port its
// addresses first; ours go back.
var errGotAddresses = errors.New("the port got addresses meanwhile")

// allocate takes the address port asks for, or the next free one of its
// network's first subnet. A problem says why it cannot (nothing taken).
func (r *Reconciler) allocate(ctx context.Context, port *networkingv1alpha1.Port) ([]networkingv1alpha1.FixedIP, *netstatus.Problem, error) {
	net := &networkingv1alpha1.Network{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: port.Namespace, Name: port.Spec.Network}, net)
	switch {
	case apierrors.IsNotFound(err):
		return nil, &netstatus.Problem{Reason: "NetworkNotFound", Message: fmt.Sprintf("Network %s could not be found.", port.Spec.Network)}, nil
	case err != nil:
		return nil, nil, err
	}
	subnets, err := subnet.OfNetwork(ctx, r.Client, port.Namespace, port.Spec.Network)
	if err != nil {
		return nil, nil, err
	}
	sn, want, problem := Choose(port, subnet.Usable(subnets))
	if problem != nil {
		return nil, problem, nil
	}
	got, err := r.IPAM.Allocate(ctx, client.ObjectKeyFromObject(sn), want)
	if err != nil {
		if p := subnet.AllocationProblem(err, want, sn.Name, port.Spec.Network); p != nil {
			return nil, p, nil
		}
		return nil, nil, err
	}
	return []networkingv1alpha1.FixedIP{{Subnet: sn.Name, IPAddress: got.String()}}, nil, nil
}

// Choose picks the subnet (of subnets, the network's, oldest first) and
// address (invalid: the next free one) that port asks for.
func Choose(port *networkingv1alpha1.Port, subnets []networkingv1alpha1.Subnet) (*networkingv1alpha1.Subnet, netip.Addr, *netstatus.Problem) {
	if len(subnets) == 0 {
		return nil, netip.Addr{}, &netstatus.Problem{Reason: "NoSubnet", Message: fmt.Sprintf("Network %s has no subnet to allocate an address from.", port.Spec.Network)}
	}
	var ask networkingv1alpha1.FixedIP
	if len(port.Spec.FixedIPs) > 0 {
		ask = port.Spec.FixedIPs[0]
	}
	var want netip.Addr
	if ask.IPAddress != "" {
		a, err := netip.ParseAddr(ask.IPAddress)
		if err != nil || !a.Is4() {
			return nil, netip.Addr{}, &netstatus.Problem{Reason: "InvalidIPAddress", Message: fmt.Sprintf("Invalid input for fixed_ips: %q is not a valid IP address.", ask.IPAddress)}
		}
		want = a
	}
	var sn *networkingv1alpha1.Subnet
	switch {
	case ask.Subnet != "":
		for i := range subnets {
			if subnets[i].Name == ask.Subnet {
				sn = &subnets[i]
			}
		}
		if sn == nil {
			return nil, netip.Addr{}, &netstatus.Problem{Reason: "SubnetNotFound", Message: fmt.Sprintf("Subnet %s could not be found on network %s.", ask.Subnet, port.Spec.Network)}
		}
		if p, _ := netip.ParsePrefix(sn.Spec.CIDR); want.IsValid() && !p.Contains(want) {
			return nil, netip.Addr{}, &netstatus.Problem{Reason: "InvalidIPAddress", Message: fmt.Sprintf("IP address %s is not a valid IP for the specified subnet %s.", want, sn.Name)}
		}
	case want.IsValid():
		sn = subnet.Containing(subnets, want)
		if sn == nil {
			return nil, netip.Addr{}, &netstatus.Problem{Reason: "InvalidIPAddress", Message: fmt.Sprintf("IP address %s is not a valid IP for any subnet of network %s.", want, port.Spec.Network)}
		}
	default:
		sn = &subnets[0]
	}
	return sn, want, nil
}

// finalize releases the port's addresses, then lets it go.
func (r *Reconciler) finalize(ctx context.Context, port *networkingv1alpha1.Port) error {
	if !controllerutil.ContainsFinalizer(port, Finalizer) {
		return nil
	}
	if err := r.release(ctx, port.Namespace, port.Status.FixedIPs); err != nil {
		return err
	}
	controllerutil.RemoveFinalizer(port, Finalizer)
	return client.IgnoreNotFound(r.Client.Update(ctx, port))
}

func (r *Reconciler) release(ctx context.Context, ns string, ips []networkingv1alpha1.FixedIP) error {
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip.IPAddress)
		if err != nil {
			continue
		}
		if err := r.IPAM.Release(ctx, types.NamespacedName{Namespace: ns, Name: ip.Subnet}, a); err != nil {
			return fmt.Errorf("release %s on subnet %s: %w", a, ip.Subnet, err)
		}
	}
	return nil
}

// RandomMAC is a MAC in Neutron's default base, fa:16:3e, with three
// random bytes.
func RandomMAC() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", b[0], b[1], b[2])
}

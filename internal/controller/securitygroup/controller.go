// Package securitygroup gives every namespace that has a Port its
// "default" SecurityGroup, as Neutron gives every project one: all
// egress, and ingress from the group's own members. An existing default
// group is never changed: users may edit it.
package securitygroup

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
)

// Reconciler ensures default SecurityGroups.
type Reconciler struct {
	Client client.Client
}

// SetupWithManager registers the reconciler: requests are namespaces'
// default groups, from their Ports and from the groups themselves (a
// deleted default group comes back while ports need it).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	toDefault := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: networkingv1alpha1.DefaultSecurityGroup}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("securitygroup").
		For(&networkingv1alpha1.SecurityGroup{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == networkingv1alpha1.DefaultSecurityGroup
		}))).
		Watches(&networkingv1alpha1.Port{}, toDefault, builder.WithPredicates(predicate.Funcs{
			UpdateFunc: func(event.UpdateEvent) bool { return false },
		})).
		Complete(r)
}

// Reconcile creates a namespace's default group if it has a Port and no
// such group.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.Name != networkingv1alpha1.DefaultSecurityGroup {
		return ctrl.Result{}, nil
	}
	err := r.Client.Get(ctx, req.NamespacedName, &networkingv1alpha1.SecurityGroup{})
	if !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	var ports networkingv1alpha1.PortList
	if err := r.Client.List(ctx, &ports, client.InNamespace(req.Namespace), client.Limit(1)); err != nil {
		return ctrl.Result{}, err
	}
	if len(ports.Items) == 0 {
		return ctrl.Result{}, nil
	}
	if err := r.Client.Create(ctx, Default(req.Namespace)); err != nil && !apierrors.IsAlreadyExists(err) {
		// A namespace being deleted refuses new objects; nothing to do.
		if apierrors.IsForbidden(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("create the default security group of %s: %w", req.Namespace, err)
	}
	return ctrl.Result{}, nil
}

// Default is namespace's default group as Neutron makes it.
func Default(namespace string) *networkingv1alpha1.SecurityGroup {
	return &networkingv1alpha1.SecurityGroup{
		ObjectMeta: metav1.ObjectMeta{Name: networkingv1alpha1.DefaultSecurityGroup, Namespace: namespace},
		Spec: networkingv1alpha1.SecurityGroupSpec{
			Description: "Default security group",
			Rules: []networkingv1alpha1.SecurityGroupRule{
				{Direction: "egress", Ethertype: "IPv4", Protocol: "any"},
				{Direction: "ingress", Ethertype: "IPv4", Protocol: "any", RemoteGroup: networkingv1alpha1.DefaultSecurityGroup},
			},
		},
	}
}

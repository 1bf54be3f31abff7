// Package podport gives every pod that asks for a tenant network (the
// networking.strata.io/network annotation) a Port named after it, owned
// by it, so that the port (and its address) goes with the pod.
package podport

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
)

// Reconciler creates the Ports of annotated pods.
type Reconciler struct {
	Client client.Client
}

// SetupWithManager registers the reconciler for annotated pods only.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	annotated := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetAnnotations()[networkingv1alpha1.AnnotationNetwork] != ""
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("podport").
		For(&corev1.Pod{}, builder.WithPredicates(annotated)).
		Owns(&networkingv1alpha1.Port{}).
		Complete(r)
}

// Reconcile creates one pod's Port when it has none.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pod := &corev1.Pod{}
	if err := r.Client.Get(ctx, req.NamespacedName, pod); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	network := pod.Annotations[networkingv1alpha1.AnnotationNetwork]
	if network == "" || pod.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	have := &networkingv1alpha1.Port{}
	err := r.Client.Get(ctx, req.NamespacedName, have)
	if err == nil || !apierrors.IsNotFound(err) {
		// A port of that name that is not the pod's is the user's to sort
		// out; the CNI plugin reports it.
		return ctrl.Result{}, err
	}
	if err := r.Client.Create(ctx, PortFor(pod, network)); err != nil && !apierrors.IsAlreadyExists(err) {
		return ctrl.Result{}, fmt.Errorf("create the port of pod %s: %w", pod.Name, err)
	}
	return ctrl.Result{}, nil
}

// PortFor is the Port that pod gets on network.
func PortFor(pod *corev1.Pod, network string) *networkingv1alpha1.Port {
	return &networkingv1alpha1.Port{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: networkingv1alpha1.PortSpec{
			Network: network,
			Device:  &networkingv1alpha1.PortDevice{Kind: networkingv1alpha1.DevicePod, Name: pod.Name},
		},
	}
}

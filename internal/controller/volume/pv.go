package volume

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

// PVReconciler honours the reclaim policy of the PersistentVolumes Strata
// provisioned: once Released, Delete removes the Volume (its node removes
// the file) and then the PersistentVolume; Retain keeps both, for an
// administrator to reuse or delete.
type PVReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
}

// SetupWithManager registers the reconciler; a Volume's removal wakes its
// PersistentVolume.
func (r *PVReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("volume-reclaimer").
		For(&corev1.PersistentVolume{}).
		Watches(&storagev1alpha1.Volume{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if o.GetAnnotations()[storagev1alpha1.ClaimAnnotation] == "" {
				return nil
			}
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetName()}}}
		})).
		Complete(r)
}

// Reconcile reclaims one PersistentVolume.
func (r *PVReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pv := &corev1.PersistentVolume{}
	if err := r.Client.Get(ctx, req.NamespacedName, pv); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if pv.Annotations[ProvisionedByAnnotation] != storagev1alpha1.Provisioner || pv.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	if pv.Status.Phase != corev1.VolumeReleased || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		return ctrl.Result{}, nil
	}
	ns, name, ok := strings.Cut(pv.Annotations[storagev1alpha1.VolumeAnnotation], "/")
	if ok {
		v := &storagev1alpha1.Volume{}
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, v)
		if err == nil {
			if v.DeletionTimestamp == nil {
				// Released: no pod uses the claim any more.
				if len(v.Status.Attachments) > 0 {
					if err := mergePatchStatus(ctx, r.Client, v, map[string]any{"attachments": nil}); err != nil {
						return ctrl.Result{}, err
					}
				}
				if err := r.Client.Delete(ctx, v); err != nil && !apierrors.IsNotFound(err) {
					// Snapshots of it, say: admission's 409 names them.
					r.Recorder.Eventf(pv, v, corev1.EventTypeWarning, "VolumeFailedDelete", "Delete", "%v", err)
					return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
				}
			}
			return ctrl.Result{RequeueAfter: 5 * time.Second}, nil // its node removes the file
		}
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{}, client.IgnoreNotFound(r.Client.Delete(ctx, pv))
}

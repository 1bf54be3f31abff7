package volume

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

// Annotations upstream's controllers and scheduler use with provisioners.
const (
	// SelectedNodeAnnotation is set on a WaitForFirstConsumer claim by the
	// scheduler: the node of the first pod that uses it.
	SelectedNodeAnnotation = "volume.kubernetes.io/selected-node"
	// ProvisionedByAnnotation marks the PersistentVolumes a provisioner made.
	ProvisionedByAnnotation = "pv.kubernetes.io/provisioned-by"
	// hostnameLabel is the node label local PersistentVolumes are pinned by.
	hostnameLabel = "kubernetes.io/hostname"
)

// ClaimReconciler provisions, grows and tracks the users of the
// PersistentVolumeClaims of StorageClasses whose provisioner is
// storage.strata.io/volume.
//
// Provisioning: once the claim has a node (the scheduler's selected-node
// annotation with WaitForFirstConsumer; a Ready node of Strata's choice
// with Immediate), a Volume pvc-<claim UID> is made in the claim's
// namespace on that node; once its node's agent reports it Available, a
// local PersistentVolume (the Volume's device, pinned to the node) is made
// for the claim, which the controller-manager binds. A Volume that fails
// is reported as a ProvisioningFailed event on the claim and removed, and
// the selected node is cleared so the scheduler can choose again.
type ClaimReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
}

// SetupWithManager registers the reconciler for claims, the Volumes
// behind them, and the pods using them.
func (r *ClaimReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("volume-provisioner").
		For(&corev1.PersistentVolumeClaim{}).
		Watches(&storagev1alpha1.Volume{}, handler.EnqueueRequestsFromMapFunc(claimOfVolume)).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(claimsOfPod)).
		Complete(r)
}

func claimOfVolume(_ context.Context, o client.Object) []reconcile.Request {
	ns, name, ok := strings.Cut(o.GetAnnotations()[storagev1alpha1.ClaimAnnotation], "/")
	if !ok {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
}

func claimsOfPod(_ context.Context, o client.Object) []reconcile.Request {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return nil
	}
	var out []reconcile.Request
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: pod.Namespace, Name: v.PersistentVolumeClaim.ClaimName}})
		}
	}
	return out
}

// VolumeName is the name of the Volume (and PersistentVolume) of a claim.
func VolumeName(claim *corev1.PersistentVolumeClaim) string { return "pvc-" + string(claim.UID) }

// Reconcile takes one step for one claim.
func (r *ClaimReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	claim := &corev1.PersistentVolumeClaim{}
	if err := r.Client.Get(ctx, req.NamespacedName, claim); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if claim.Spec.StorageClassName == nil || *claim.Spec.StorageClassName == "" || claim.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	class := &storagev1.StorageClass{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: *claim.Spec.StorageClassName}, class); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if class.Provisioner != storagev1alpha1.Provisioner {
		return ctrl.Result{}, nil
	}
	if claim.Spec.VolumeName != "" {
		return r.bound(ctx, claim, class)
	}
	return r.provision(ctx, claim, class)
}

// unsupported says why Strata cannot provision the claim at all.
func unsupported(claim *corev1.PersistentVolumeClaim) string {
	for _, m := range claim.Spec.AccessModes {
		if m != corev1.ReadWriteOnce && m != corev1.ReadWriteOncePod {
			return fmt.Sprintf("access mode %s is not supported: a strata volume lives on one node (use ReadWriteOnce or ReadWriteOncePod)", m)
		}
	}
	if _, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
		return "the claim requests no storage size (spec.resources.requests.storage)"
	}
	if ref := dataSource(claim); ref != nil {
		ok := (ref.Kind == "VolumeSnapshot" && ref.APIGroup != nil && *ref.APIGroup == storagev1alpha1.GroupVersion.Group) ||
			(ref.Kind == "PersistentVolumeClaim" && (ref.APIGroup == nil || *ref.APIGroup == ""))
		if !ok {
			return fmt.Sprintf("data source %s %q is not supported: use a storage.strata.io VolumeSnapshot or a PersistentVolumeClaim", ref.Kind, ref.Name)
		}
	}
	return ""
}

func dataSource(claim *corev1.PersistentVolumeClaim) *corev1.TypedLocalObjectReference {
	if r := claim.Spec.DataSourceRef; r != nil {
		return &corev1.TypedLocalObjectReference{APIGroup: r.APIGroup, Kind: r.Kind, Name: r.Name}
	}
	return claim.Spec.DataSource
}

func (r *ClaimReconciler) provision(ctx context.Context, claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass) (ctrl.Result, error) {
	if why := unsupported(claim); why != "" {
		r.Recorder.Eventf(claim, nil, corev1.EventTypeWarning, "ProvisioningFailed", "Provision", "%s", why)
		return ctrl.Result{}, nil
	}
	name := VolumeName(claim)
	v := &storagev1alpha1.Volume{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: claim.Namespace, Name: name}, v)
	if apierrors.IsNotFound(err) {
		return r.createVolume(ctx, claim, class)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if v.DeletionTimestamp != nil {
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil // a failed attempt going away
	}
	switch v.Status.Phase {
	case storagev1alpha1.VolumeError:
		return r.failed(ctx, claim, class, v)
	case storagev1alpha1.VolumeAvailable, storagev1alpha1.VolumeInUse:
		if v.Status.DevicePath == "" {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, r.createPV(ctx, claim, class, v)
	}
	return ctrl.Result{}, nil // Creating: the Volume's update wakes us
}

func (r *ClaimReconciler) createVolume(ctx context.Context, claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass) (ctrl.Result, error) {
	node := claim.Annotations[SelectedNodeAnnotation]
	if node == "" {
		if class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer {
			return ctrl.Result{}, nil // the scheduler picks the node with the first pod
		}
		var err error
		if node, err = PickNode(ctx, r.Client, string(claim.UID)); err != nil {
			return ctrl.Result{}, err
		}
		if node == "" {
			r.Recorder.Eventf(claim, nil, corev1.EventTypeWarning, "ProvisioningFailed", "Provision", "no Ready, schedulable node to hold the volume")
			return ctrl.Result{RequeueAfter: 10 * time.Second}, nil
		}
	}
	mode := storagev1alpha1.VolumeFilesystem
	if claim.Spec.VolumeMode != nil && *claim.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		mode = storagev1alpha1.VolumeBlock
	}
	var source *storagev1alpha1.VolumeSource
	if ref := dataSource(claim); ref != nil {
		switch ref.Kind {
		case "VolumeSnapshot":
			source = &storagev1alpha1.VolumeSource{Snapshot: ref.Name}
		case "PersistentVolumeClaim":
			src := &corev1.PersistentVolumeClaim{}
			if err := r.Client.Get(ctx, types.NamespacedName{Namespace: claim.Namespace, Name: ref.Name}, src); err != nil {
				if apierrors.IsNotFound(err) {
					r.Recorder.Eventf(claim, nil, corev1.EventTypeWarning, "ProvisioningFailed", "Provision", "source claim %q does not exist", ref.Name)
					return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
				}
				return ctrl.Result{}, err
			}
			if src.Spec.VolumeName == "" {
				return ctrl.Result{RequeueAfter: 10 * time.Second}, nil
			}
			source = &storagev1alpha1.VolumeSource{Volume: src.Spec.VolumeName}
		}
	}
	v := &storagev1alpha1.Volume{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   claim.Namespace,
			Name:        VolumeName(claim),
			Labels:      map[string]string{storagev1alpha1.NodeLabel: node},
			Annotations: map[string]string{storagev1alpha1.ClaimAnnotation: claim.Namespace + "/" + claim.Name},
		},
		Spec: storagev1alpha1.VolumeSpec{
			Size:       claim.Spec.Resources.Requests[corev1.ResourceStorage],
			VolumeMode: mode,
			Format:     storagev1alpha1.FormatRaw,
			Node:       node,
			Source:     source,
		},
	}
	if err := r.Client.Create(ctx, v); err != nil && !apierrors.IsAlreadyExists(err) {
		if apierrors.IsInvalid(err) || apierrors.IsConflict(err) {
			// Admission's answer (a size below the source's, say) is final.
			r.Recorder.Eventf(claim, nil, corev1.EventTypeWarning, "ProvisioningFailed", "Provision", "%v", err)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	r.Recorder.Eventf(claim, v, corev1.EventTypeNormal, "Provisioning", "Provision", "creating volume %s/%s on node %s", v.Namespace, v.Name, node)
	return ctrl.Result{}, nil
}

// failed reports a Volume the node could not make, removes it and, with
// WaitForFirstConsumer, clears the selected node so the scheduler retries.
func (r *ClaimReconciler) failed(ctx context.Context, claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, v *storagev1alpha1.Volume) (ctrl.Result, error) {
	r.Recorder.Eventf(claim, v, corev1.EventTypeWarning, "ProvisioningFailed", "Provision", "volume %s on node %s: %s", v.Name, v.Spec.Node, v.Status.Message)
	if err := r.Client.Delete(ctx, v); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, err
	}
	if _, ok := claim.Annotations[SelectedNodeAnnotation]; ok {
		if err := mergePatch(ctx, r.Client, claim, map[string]any{"metadata": map[string]any{"annotations": map[string]any{SelectedNodeAnnotation: nil}}}); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, nil
	}
	// Immediate binding: try again, elsewhere perhaps, after a pause.
	return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
}

func (r *ClaimReconciler) createPV(ctx context.Context, claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, v *storagev1alpha1.Volume) error {
	hostname := v.Spec.Node
	node := &corev1.Node{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: v.Spec.Node}, node); err == nil && node.Labels[hostnameLabel] != "" {
		hostname = node.Labels[hostnameLabel]
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	mode := corev1.PersistentVolumeFilesystem
	local := &corev1.LocalVolumeSource{Path: v.Status.DevicePath}
	if v.Spec.VolumeMode == storagev1alpha1.VolumeBlock {
		mode = corev1.PersistentVolumeBlock
	} else {
		fs := "ext4"
		local.FSType = &fs
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name: v.Name,
			Annotations: map[string]string{
				ProvisionedByAnnotation:          storagev1alpha1.Provisioner,
				storagev1alpha1.VolumeAnnotation: v.Namespace + "/" + v.Name,
			},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: v.Spec.Size},
			AccessModes:                   claim.Spec.AccessModes,
			VolumeMode:                    &mode,
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			MountOptions:                  class.MountOptions,
			ClaimRef: &corev1.ObjectReference{
				APIVersion: "v1", Kind: "PersistentVolumeClaim",
				Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{Local: local},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: hostnameLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{hostname}}},
			}}}},
		},
	}
	if err := r.Client.Create(ctx, pv); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	r.Recorder.Eventf(claim, v, corev1.EventTypeNormal, "ProvisioningSucceeded", "Provision", "Successfully provisioned volume %s on node %s", pv.Name, v.Spec.Node)
	return nil
}

// bound grows the Volume of a bound claim that asks for more, and keeps
// the Volume's attachments (the pods using the claim) current.
func (r *ClaimReconciler) bound(ctx context.Context, claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass) (ctrl.Result, error) {
	pv := &corev1.PersistentVolume{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: claim.Spec.VolumeName}, pv); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ns, name, ok := strings.Cut(pv.Annotations[storagev1alpha1.VolumeAnnotation], "/")
	if !ok || pv.Annotations[ProvisionedByAnnotation] != storagev1alpha1.Provisioner {
		return ctrl.Result{}, nil
	}
	v := &storagev1alpha1.Volume{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, v); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if err := r.attachments(ctx, claim, v); err != nil {
		return ctrl.Result{}, err
	}
	return r.expand(ctx, claim, pv, v)
}

func (r *ClaimReconciler) attachments(ctx context.Context, claim *corev1.PersistentVolumeClaim, v *storagev1alpha1.Volume) error {
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(claim.Namespace)); err != nil {
		return err
	}
	want := []storagev1alpha1.VolumeAttachment{}
	for _, p := range pods.Items {
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if slices.ContainsFunc(p.Spec.Volumes, func(pv corev1.Volume) bool {
			return pv.PersistentVolumeClaim != nil && pv.PersistentVolumeClaim.ClaimName == claim.Name
		}) {
			want = append(want, storagev1alpha1.VolumeAttachment{Kind: "Pod", Name: p.Name, Node: p.Spec.NodeName})
		}
	}
	slices.SortFunc(want, func(a, b storagev1alpha1.VolumeAttachment) int { return strings.Compare(a.Name, b.Name) })
	if reflect.DeepEqual(want, v.Status.Attachments) || (len(want) == 0 && len(v.Status.Attachments) == 0) {
		return nil
	}
	return mergePatchStatus(ctx, r.Client, v, map[string]any{"attachments": want})
}

// expand: the claim asks for more than the PersistentVolume has. The
// Volume's spec grows; once its node reports the new size (filesystem
// included), the claim's status capacity and then the PersistentVolume's
// capacity follow — in that order, so the kubelet never sees a volume
// larger than its claim's status and tries a resize of its own.
func (r *ClaimReconciler) expand(ctx context.Context, claim *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume, v *storagev1alpha1.Volume) (ctrl.Result, error) {
	want := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	have := pv.Spec.Capacity[corev1.ResourceStorage]
	if want.Cmp(have) <= 0 {
		return ctrl.Result{}, nil
	}
	if v.Spec.Size.Cmp(want) < 0 {
		if err := mergePatch(ctx, r.Client, v, map[string]any{"spec": map[string]any{"size": want.String()}}); err != nil {
			r.Recorder.Eventf(claim, v, corev1.EventTypeWarning, "VolumeResizeFailed", "Resize", "%v", err)
			return ctrl.Result{}, err
		}
		r.Recorder.Eventf(claim, v, corev1.EventTypeNormal, "Resizing", "Resize", "growing volume %s to %s", v.Name, want.String())
		return ctrl.Result{}, nil
	}
	if v.Status.ObservedGeneration != v.Generation || v.Status.Size == nil || v.Status.Size.Cmp(want) < 0 {
		return ctrl.Result{}, nil // the node is at it; the Volume's update wakes us
	}
	if v.Status.FilesystemResizePending {
		cond := corev1.PersistentVolumeClaimCondition{
			Type: corev1.PersistentVolumeClaimFileSystemResizePending, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.Now(), Message: v.Status.Message,
		}
		if !slices.ContainsFunc(claim.Status.Conditions, func(c corev1.PersistentVolumeClaimCondition) bool { return c.Type == cond.Type }) {
			claim.Status.Conditions = append(claim.Status.Conditions, cond)
			if err := r.Client.Status().Update(ctx, claim); err != nil {
				return ctrl.Result{}, err
			}
		}
		return ctrl.Result{RequeueAfter: time.Minute}, nil
	}
	claim.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: want}
	claim.Status.Conditions = slices.DeleteFunc(claim.Status.Conditions, func(c corev1.PersistentVolumeClaimCondition) bool {
		return c.Type == corev1.PersistentVolumeClaimResizing || c.Type == corev1.PersistentVolumeClaimFileSystemResizePending
	})
	if err := r.Client.Status().Update(ctx, claim); err != nil {
		return ctrl.Result{}, err
	}
	pv.Spec.Capacity = corev1.ResourceList{corev1.ResourceStorage: want}
	if err := r.Client.Update(ctx, pv); err != nil {
		return ctrl.Result{}, err
	}
	r.Recorder.Eventf(claim, v, corev1.EventTypeNormal, "VolumeResizeSuccessful", "Resize", "volume %s is now %s", v.Name, want.String())
	return ctrl.Result{}, nil
}

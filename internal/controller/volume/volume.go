// Package volume holds the server side of Strata's block volumes: placing
// Volumes and VolumeSnapshots on nodes (whose agents realise them, see
// internal/agent/volumes.go), and the in-process provisioner that makes
// PersistentVolumeClaims of a `storage.strata.io/volume` StorageClass
// into Volumes and local PersistentVolumes, grows them, and deletes them
// by the class's reclaim policy — what a CSI driver's external
// provisioner and resizer sidecars would do, without the sidecars.
package volume

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"reflect"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

// EventsName is the reporting controller of the volume controllers' events.
const EventsName = "strata-volume-provisioner"

// Setup registers the volume controllers with mgr.
func Setup(mgr ctrl.Manager) error {
	if err := (&VolumeReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&SnapshotReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&ClaimReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder(EventsName)}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&PVReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder(EventsName)}).SetupWithManager(mgr)
}

// VolumeReconciler places Volumes that name no node, labels each Volume
// with its node (what the node agents watch), and lets a Volume whose
// node is gone be deleted.
type VolumeReconciler struct {
	Client client.Client
}

// SetupWithManager registers the reconciler.
func (r *VolumeReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("volume").For(&storagev1alpha1.Volume{}).
		Watches(&computev1alpha1.VirtualMachine{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			var out []reconcile.Request
			for _, name := range o.(*computev1alpha1.VirtualMachine).VolumeNames() {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}})
			}
			return out
		})).
		Watches(&corev1.PersistentVolumeClaim{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: "pvc-" + string(o.GetUID())}}}
		})).
		Complete(r)
}

// abandoned says whether v was made for a claim that is gone before any
// PersistentVolume took it over (a claim deleted while its volume was
// being made, or failing): nothing else would ever delete it.
func (r *VolumeReconciler) abandoned(ctx context.Context, v *storagev1alpha1.Volume) (bool, error) {
	ns, name, ok := strings.Cut(v.Annotations[storagev1alpha1.ClaimAnnotation], "/")
	if !ok {
		return false, nil
	}
	claim := &corev1.PersistentVolumeClaim{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, claim)
	if err == nil && "pvc-"+string(claim.UID) == v.Name {
		return false, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return false, err
	}
	err = r.Client.Get(ctx, types.NamespacedName{Name: v.Name}, &corev1.PersistentVolume{})
	if err == nil || !apierrors.IsNotFound(err) {
		return false, client.IgnoreNotFound(err) // the PV's reclaim policy decides
	}
	return true, nil
}

// Reconcile places, labels or releases one Volume.
func (r *VolumeReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	v := &storagev1alpha1.Volume{}
	if err := r.Client.Get(ctx, req.NamespacedName, v); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if v.DeletionTimestamp != nil {
		return ctrl.Result{}, releaseOrphan(ctx, r.Client, v, v.Spec.Node)
	}
	if gone, err := r.abandoned(ctx, v); err != nil || gone {
		if gone {
			err = client.IgnoreNotFound(r.Client.Delete(ctx, v))
		}
		return ctrl.Result{}, err
	}
	if v.Annotations[storagev1alpha1.ClaimAnnotation] == "" {
		// VMs' attachments; a claim's Volume has its pods' (the claim
		// reconciler's): one writer per Volume.
		if err := r.vmAttachments(ctx, v); err != nil {
			return ctrl.Result{}, err
		}
	}
	node := v.Spec.Node
	if node == "" {
		var err error
		if node, err = r.placement(ctx, v); err != nil || node == "" {
			return ctrl.Result{}, err
		}
	}
	if v.Spec.Node == node && v.Labels[storagev1alpha1.NodeLabel] == node {
		return ctrl.Result{}, nil
	}
	patch := map[string]any{
		"metadata": map[string]any{"labels": map[string]string{storagev1alpha1.NodeLabel: node}},
		"spec":     map[string]any{"node": node},
	}
	return ctrl.Result{}, mergePatch(ctx, r.Client, v, patch)
}

// vmAttachments keeps v's attachments to the VMs that name it: a VM
// holds its volumes while it exists, running or not (as a Cinder volume
// stays attached to a stopped server), and while it still detaches one.
func (r *VolumeReconciler) vmAttachments(ctx context.Context, v *storagev1alpha1.Volume) error {
	var vms computev1alpha1.VirtualMachineList
	if err := r.Client.List(ctx, &vms, client.InNamespace(v.Namespace)); err != nil {
		return err
	}
	want := []storagev1alpha1.VolumeAttachment{}
	for _, vm := range vms.Items {
		if !slices.Contains(vm.VolumeNames(), v.Name) {
			continue
		}
		at := storagev1alpha1.VolumeAttachment{Kind: "VirtualMachine", Name: vm.Name, Node: vm.Status.NodeName}
		if at.Node == "" {
			at.Node = v.Spec.Node
		}
		if vm.Spec.RootVolume == v.Name {
			at.Device = "/dev/vda"
		}
		for _, s := range vm.Status.Volumes {
			if s.Volume == v.Name && s.Target != "" {
				at.Device = "/dev/" + s.Target
			}
		}
		want = append(want, at)
	}
	slices.SortFunc(want, func(a, b storagev1alpha1.VolumeAttachment) int { return strings.Compare(a.Name, b.Name) })
	if reflect.DeepEqual(want, v.Status.Attachments) || (len(want) == 0 && len(v.Status.Attachments) == 0) {
		return nil
	}
	return mergePatchStatus(ctx, r.Client, v, map[string]any{"attachments": want})
}

// placement is the node of the volume's source, or a Ready node.
func (r *VolumeReconciler) placement(ctx context.Context, v *storagev1alpha1.Volume) (string, error) {
	if src := v.Spec.Source; src != nil {
		switch {
		case src.Snapshot != "":
			s := &storagev1alpha1.VolumeSnapshot{}
			if err := r.Client.Get(ctx, types.NamespacedName{Namespace: v.Namespace, Name: src.Snapshot}, s); err != nil {
				return "", client.IgnoreNotFound(err)
			}
			return s.Labels[storagev1alpha1.NodeLabel], nil
		case src.Volume != "":
			s := &storagev1alpha1.Volume{}
			if err := r.Client.Get(ctx, types.NamespacedName{Namespace: v.Namespace, Name: src.Volume}, s); err != nil {
				return "", client.IgnoreNotFound(err)
			}
			return s.Spec.Node, nil
		}
	}
	return PickNode(ctx, r.Client, string(v.UID))
}

// PickNode chooses a Ready, schedulable node, spread by key; "" when none is.
func PickNode(ctx context.Context, c client.Client, key string) (string, error) {
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return "", err
	}
	var ready []string
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable {
			continue
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready = append(ready, n.Name)
			}
		}
	}
	if len(ready) == 0 {
		return "", nil
	}
	sort.Strings(ready)
	h := fnv.New32a()
	h.Write([]byte(key))
	return ready[int(h.Sum32()%uint32(len(ready)))], nil
}

// releaseOrphan drops the backend finalizer of an object whose node does
// not exist (or that never had one): no agent will ever remove its file.
func releaseOrphan(ctx context.Context, c client.Client, obj client.Object, node string) error {
	if !slices.Contains(obj.GetFinalizers(), storagev1alpha1.BackendFinalizer) {
		return nil
	}
	if node != "" {
		err := c.Get(ctx, types.NamespacedName{Name: node}, &corev1.Node{})
		if err == nil || !apierrors.IsNotFound(err) {
			return client.IgnoreNotFound(err) // the node's agent removes it
		}
	}
	fin := slices.DeleteFunc(slices.Clone(obj.GetFinalizers()), func(f string) bool { return f == storagev1alpha1.BackendFinalizer })
	return mergePatch(ctx, c, obj, map[string]any{"metadata": map[string]any{"finalizers": fin, "resourceVersion": obj.GetResourceVersion()}})
}

func mergePatch(ctx context.Context, c client.Client, obj client.Object, patch map[string]any) error {
	body, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	return client.IgnoreNotFound(c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, body)))
}

func mergePatchStatus(ctx context.Context, c client.Client, obj client.Object, status map[string]any) error {
	body, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	return client.IgnoreNotFound(c.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, body)))
}

// SnapshotReconciler labels each VolumeSnapshot with its volume's node
// (where the copy is made and kept) and releases those whose node is gone.
type SnapshotReconciler struct {
	Client client.Client
}

// SetupWithManager registers the reconciler; a Volume placed later wakes
// its snapshots.
func (r *SnapshotReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("volumesnapshot").
		For(&storagev1alpha1.VolumeSnapshot{}).
		Watches(&storagev1alpha1.Volume{}, handler.EnqueueRequestsFromMapFunc(r.snapshotsOf)).
		Complete(r)
}

func (r *SnapshotReconciler) snapshotsOf(ctx context.Context, o client.Object) []reconcile.Request {
	var l storagev1alpha1.VolumeSnapshotList
	if err := r.Client.List(ctx, &l, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, s := range l.Items {
		if s.Spec.Volume == o.GetName() {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
		}
	}
	return out
}

// Reconcile labels or releases one VolumeSnapshot.
func (r *SnapshotReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	s := &storagev1alpha1.VolumeSnapshot{}
	if err := r.Client.Get(ctx, req.NamespacedName, s); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	node := s.Labels[storagev1alpha1.NodeLabel]
	if s.DeletionTimestamp != nil {
		return ctrl.Result{}, releaseOrphan(ctx, r.Client, s, node)
	}
	if node != "" {
		return ctrl.Result{}, nil // a snapshot stays where it was taken
	}
	v := &storagev1alpha1.Volume{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: s.Spec.Volume}, v); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, mergePatchStatus(ctx, r.Client, s, map[string]any{
				"phase": storagev1alpha1.SnapshotError, "message": fmt.Sprintf("volume %q does not exist", s.Spec.Volume)})
		}
		return ctrl.Result{}, err
	}
	if v.Spec.Node == "" {
		return ctrl.Result{}, nil // placed soon; its update wakes us
	}
	return ctrl.Result{}, mergePatch(ctx, r.Client, s, map[string]any{
		"metadata": map[string]any{"labels": map[string]string{storagev1alpha1.NodeLabel: v.Spec.Node}}})
}

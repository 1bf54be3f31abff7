package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/nodewatch"
	"github.com/strata-cloud/strata/internal/storage/volume"
)

var (
	volumesGVR   = storagev1alpha1.GroupVersion.WithResource("volumes")
	snapshotsGVR = storagev1alpha1.GroupVersion.WithResource("volumesnapshots")
	imagesGVR    = storagev1alpha1.GroupVersion.WithResource("images")
)

// volumeResync retries what failed for reasons that may pass (a busy
// loop device, an API error) and picks up pending filesystem resizes.
const volumeResync = 30 * time.Second

// RunVolumes realises the Volumes and VolumeSnapshots that name this node
// (label storage.strata.io/node) with the file backend under
// DataDir/volumes and DataDir/snapshots, and reports them in their status,
// until ctx is done. Its failure stops only volumes, not the node.
func RunVolumes(ctx context.Context, cfg Config) {
	if _, err := nodeClient(ctx, cfg.Kubeconfig); err != nil {
		return // stopped while the node's credentials were awaited
	}
	dyn, err := dynamic.NewForConfig(restConfig(cfg.Kubeconfig))
	if err != nil {
		cfg.Logger.Error("volumes will not be served on this node", "err", err)
		return
	}
	n := &volumeNode{
		node:    cfg.NodeName,
		dyn:     dyn,
		backend: &volume.File{Dir: cfg.DataDir, Node: cfg.NodeName, Host: volume.HostTools{}},
		log:     cfg.Logger.With("component", "volumes"),
		tmpDir:  filepath.Join(cfg.DataDir, "volumes"),
	}
	if f, err := newRegistryFetcher(cfg.Mirror.URL, cfg.Mirror.CAFile); err == nil {
		n.images = f
	} else {
		n.log.Warn("volumes from Images cannot be made on this node", "err", err)
	}
	n.run(ctx)
}

// volumeNode is one node's volume reconciler: it recomputes every local
// Volume and VolumeSnapshot on any change (they are few per node).
type volumeNode struct {
	node    string
	dyn     dynamic.Interface
	backend volume.Backend
	log     *slog.Logger
	images  imageFetcher // nil: volumes from Images fail
	tmpDir  string       // where fetched images wait to be copied
}

func (n *volumeNode) run(ctx context.Context) {
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(n.dyn, 10*time.Minute, metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.LabelSelector = storagev1alpha1.NodeLabel + "=" + n.node
	})
	defer factory.Shutdown()
	signal := nodewatch.NewSignal()
	vols := factory.ForResource(volumesGVR).Informer()
	snaps := factory.ForResource(snapshotsGVR).Informer()
	for _, inf := range []cache.SharedIndexInformer{vols, snaps} {
		if _, err := inf.AddEventHandler(signal.Handler()); err != nil {
			n.log.Error("volumes will not be served on this node", "err", err)
			return
		}
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), vols.HasSynced, snaps.HasSynced) {
		return
	}
	tick := time.NewTicker(volumeResync)
	defer tick.Stop()
	for {
		n.syncAll(ctx, fromStore[storagev1alpha1.Volume](vols.GetStore()), fromStore[storagev1alpha1.VolumeSnapshot](snaps.GetStore()))
		select {
		case <-ctx.Done():
			return
		case <-signal.C:
		case <-tick.C:
		}
	}
}

// fromStore converts an informer's unstructured objects (deep copies).
func fromStore[T any](s cache.Store) []T {
	var out []T
	for _, o := range s.List() {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		var t T
		if runtime.DefaultUnstructuredConverter.FromUnstructured(u.DeepCopy().Object, &t) == nil {
			out = append(out, t)
		}
	}
	return out
}

// syncAll reconciles snapshots before volumes: a volume may start from a
// snapshot made in the same pass.
func (n *volumeNode) syncAll(ctx context.Context, vols []storagev1alpha1.Volume, snaps []storagev1alpha1.VolumeSnapshot) {
	byName := map[types.NamespacedName]*storagev1alpha1.Volume{}
	for i := range vols {
		byName[types.NamespacedName{Namespace: vols[i].Namespace, Name: vols[i].Name}] = &vols[i]
	}
	snapByName := map[types.NamespacedName]*storagev1alpha1.VolumeSnapshot{}
	for i := range snaps {
		s := &snaps[i]
		snapByName[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
		if err := n.syncSnapshot(ctx, s, byName); err != nil && ctx.Err() == nil {
			n.logSyncError("volume snapshot", "snapshot", s.Namespace+"/"+s.Name, err)
		}
	}
	for _, v := range byName {
		if err := n.syncVolume(ctx, v, byName, snapByName); err != nil && ctx.Err() == nil {
			n.logSyncError("volume", "volume", v.Namespace+"/"+v.Name, err)
		}
	}
}

// logSyncError logs a failed sync: a write that lost a race with another
// (the object changed since it was read) only at debug level, as the
// change that won comes back as an event and the object is synced again.
func (n *volumeNode) logSyncError(msg, kind, name string, err error) {
	if apierrors.IsConflict(err) && strings.Contains(err.Error(), "the object has been modified") {
		n.log.Debug(msg+": lost a race, syncing again", kind, name, "err", err)
		return
	}
	n.log.Warn(msg, kind, name, "err", err)
}

func (n *volumeNode) syncVolume(ctx context.Context, v *storagev1alpha1.Volume, vols map[types.NamespacedName]*storagev1alpha1.Volume, snaps map[types.NamespacedName]*storagev1alpha1.VolumeSnapshot) error {
	id := string(v.UID)
	if v.DeletionTimestamp != nil {
		if !slices.Contains(v.Finalizers, storagev1alpha1.BackendFinalizer) {
			return nil
		}
		if v.Status.Phase != storagev1alpha1.VolumeDeleting {
			_ = n.patchStatus(ctx, volumesGVR, v.Namespace, v.Name, map[string]any{"phase": storagev1alpha1.VolumeDeleting})
		}
		if err := n.backend.Delete(ctx, id); err != nil {
			_ = n.patchStatus(ctx, volumesGVR, v.Namespace, v.Name, map[string]any{"message": "deleting: " + err.Error()})
			return err
		}
		return n.setFinalizers(ctx, volumesGVR, v.Namespace, v.Name, v.ResourceVersion, slices.DeleteFunc(slices.Clone(v.Finalizers), func(f string) bool { return f == storagev1alpha1.BackendFinalizer }))
	}
	if !slices.Contains(v.Finalizers, storagev1alpha1.BackendFinalizer) {
		// The finalizer first: a file is never made that nothing will remove.
		return n.setFinalizers(ctx, volumesGVR, v.Namespace, v.Name, v.ResourceVersion, append(slices.Clone(v.Finalizers), storagev1alpha1.BackendFinalizer))
	}
	if v.Status.Phase == storagev1alpha1.VolumeError && v.Status.ObservedGeneration == v.Generation && v.Status.Path == "" && v.Status.Message != "" && finalMessage(v.Status.Message) {
		return nil // failed for good for this spec
	}
	size := v.Spec.Size.Value()
	filesystem := v.Spec.VolumeMode == storagev1alpha1.VolumeFilesystem
	var info volume.Info
	var err error
	if v.Status.Path == "" {
		req := volume.Request{ID: id, Size: size, Format: volume.Format(v.Spec.Format), Filesystem: filesystem}
		if src := v.Spec.Source; src != nil {
			switch {
			case src.Snapshot != "":
				s := snaps[types.NamespacedName{Namespace: v.Namespace, Name: src.Snapshot}]
				if s == nil || !s.Status.ReadyToUse {
					return n.patchStatus(ctx, volumesGVR, v.Namespace, v.Name, map[string]any{
						"phase": storagev1alpha1.VolumeCreating, "node": n.node, "message": fmt.Sprintf("waiting for snapshot %s to be available on node %s", src.Snapshot, n.node)})
				}
				req.FromSnapshot, req.Filesystem = string(s.UID), false
			case src.Volume != "":
				s := vols[types.NamespacedName{Namespace: v.Namespace, Name: src.Volume}]
				if s == nil || s.Status.Path == "" {
					return n.patchStatus(ctx, volumesGVR, v.Namespace, v.Name, map[string]any{
						"phase": storagev1alpha1.VolumeCreating, "node": n.node, "message": fmt.Sprintf("waiting for volume %s to be available on node %s", src.Volume, n.node)})
				}
				req.FromVolume, req.Filesystem = string(s.UID), false
			case src.Image != "":
				img, wait, err := n.imageFor(ctx, v)
				if err != nil || wait != "" {
					phase, msg := storagev1alpha1.VolumeCreating, wait
					if err != nil {
						phase, msg = storagev1alpha1.VolumeError, err.Error()
					}
					return n.patchStatus(ctx, volumesGVR, v.Namespace, v.Name, map[string]any{
						"phase": phase, "node": n.node, "observedGeneration": v.Generation, "message": msg})
				}
				defer os.Remove(img.Path)
				req.FromImage, req.Filesystem = img, false
			}
		}
		if v.Status.Phase == "" {
			_ = n.patchStatus(ctx, volumesGVR, v.Namespace, v.Name, map[string]any{"phase": storagev1alpha1.VolumeCreating, "node": n.node})
		}
		info, err = n.backend.Create(ctx, req)
		// A copied filesystem fills the new size. (An Image's disk is
		// partitioned: the guest grows its own filesystem, as cloud-init does.)
		if err == nil && filesystem && (req.FromSnapshot != "" || req.FromVolume != "") {
			info, err = n.backend.Expand(ctx, id, size, true)
		}
		if err != nil {
			return errors.Join(err, n.patchStatus(ctx, volumesGVR, v.Namespace, v.Name, map[string]any{
				"phase": storagev1alpha1.VolumeError, "node": n.node, "observedGeneration": v.Generation, "message": err.Error()}))
		}
	} else {
		info, err = n.backend.Publish(ctx, id)
		if err == nil && (info.Size < size || v.Status.FilesystemResizePending) {
			info, err = n.backend.Expand(ctx, id, size, filesystem)
		}
		if err != nil {
			msg := err.Error()
			if info.Size < size {
				msg = "expansion failed: " + msg
			}
			return errors.Join(err, n.patchStatus(ctx, volumesGVR, v.Namespace, v.Name, map[string]any{"message": msg}))
		}
	}
	phase := storagev1alpha1.VolumeAvailable
	if len(v.Status.Attachments) > 0 {
		phase = storagev1alpha1.VolumeInUse
	}
	msg := ""
	if info.FilesystemResizePending {
		msg = "the device grew; its filesystem grows when no pod has it mounted (online resize needs CAP_SYS_RESOURCE)"
	}
	want := map[string]any{
		"phase": phase, "node": n.node, "path": info.Path, "devicePath": info.DevicePath, "format": string(info.Format),
		"size": resource.NewQuantity(info.Size, resource.BinarySI).String(), "allocatedBytes": info.Allocated,
		"filesystemResizePending": info.FilesystemResizePending, "message": msg, "observedGeneration": v.Generation,
	}
	if statusMatches(v.Status, want) {
		return nil
	}
	return n.patchStatus(ctx, volumesGVR, v.Namespace, v.Name, want)
}

// finalMessage recognises the messages of final errors in a stored status.
func finalMessage(msg string) bool {
	for _, e := range []error{volume.ErrNoSpace, volume.ErrShrink, volume.ErrInvalid} {
		if strings.Contains(msg, e.Error()) {
			return true
		}
	}
	return false
}

// statusMatches says whether the stored status already says what want
// does (so a resync writes nothing).
func statusMatches(have storagev1alpha1.VolumeStatus, want map[string]any) bool {
	size := ""
	if have.Size != nil {
		size = have.Size.String()
	}
	return string(have.Phase) == fmt.Sprint(want["phase"]) && have.Node == want["node"] && have.Path == want["path"] &&
		have.DevicePath == want["devicePath"] && string(have.Format) == want["format"] && size == want["size"] &&
		have.AllocatedBytes == want["allocatedBytes"] && have.FilesystemResizePending == want["filesystemResizePending"] &&
		have.Message == want["message"] && have.ObservedGeneration == want["observedGeneration"]
}

func (n *volumeNode) syncSnapshot(ctx context.Context, s *storagev1alpha1.VolumeSnapshot, vols map[types.NamespacedName]*storagev1alpha1.Volume) error {
	id := string(s.UID)
	if s.DeletionTimestamp != nil {
		if !slices.Contains(s.Finalizers, storagev1alpha1.BackendFinalizer) {
			return nil
		}
		if err := n.backend.DeleteSnapshot(ctx, id); err != nil {
			return err
		}
		return n.setFinalizers(ctx, snapshotsGVR, s.Namespace, s.Name, s.ResourceVersion, slices.DeleteFunc(slices.Clone(s.Finalizers), func(f string) bool { return f == storagev1alpha1.BackendFinalizer }))
	}
	if !slices.Contains(s.Finalizers, storagev1alpha1.BackendFinalizer) {
		return n.setFinalizers(ctx, snapshotsGVR, s.Namespace, s.Name, s.ResourceVersion, append(slices.Clone(s.Finalizers), storagev1alpha1.BackendFinalizer))
	}
	if s.Status.ReadyToUse || (s.Status.Phase == storagev1alpha1.SnapshotError && finalMessage(s.Status.Message)) {
		return nil
	}
	v := vols[types.NamespacedName{Namespace: s.Namespace, Name: s.Spec.Volume}]
	if v == nil || v.Status.Path == "" {
		return n.patchStatus(ctx, snapshotsGVR, s.Namespace, s.Name, map[string]any{
			"phase": storagev1alpha1.SnapshotCreating, "node": n.node, "message": fmt.Sprintf("waiting for volume %s on node %s", s.Spec.Volume, n.node)})
	}
	info, err := n.backend.Snapshot(ctx, string(v.UID), id)
	if err != nil {
		return errors.Join(err, n.patchStatus(ctx, snapshotsGVR, s.Namespace, s.Name, map[string]any{
			"phase": storagev1alpha1.SnapshotError, "node": n.node, "message": err.Error()}))
	}
	return n.patchStatus(ctx, snapshotsGVR, s.Namespace, s.Name, map[string]any{
		"phase": storagev1alpha1.SnapshotAvailable, "node": n.node, "path": info.Path, "readyToUse": true,
		"size": resource.NewQuantity(info.Size, resource.BinarySI).String(), "volumeMode": string(v.Spec.VolumeMode), "message": ""})
}

// patchStatus merges fields into the status subresource: the fields that
// the volume controllers own (attachments) are left alone.
func (n *volumeNode) patchStatus(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, fields map[string]any) error {
	body, err := json.Marshal(map[string]any{"status": fields})
	if err != nil {
		return err
	}
	_, err = n.dyn.Resource(gvr).Namespace(ns).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	return err
}

// setFinalizers replaces the finalizers, guarded by resourceVersion.
func (n *volumeNode) setFinalizers(ctx context.Context, gvr schema.GroupVersionResource, ns, name, rv string, finalizers []string) error {
	if finalizers == nil {
		finalizers = []string{}
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": finalizers, "resourceVersion": rv}})
	if err != nil {
		return err
	}
	_, err = n.dyn.Resource(gvr).Namespace(ns).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
	return err
}

// imageFor fetches the disk of the volume's source Image to a temporary
// file; wait says what it waits for instead (an Image not Active yet).
func (n *volumeNode) imageFor(ctx context.Context, v *storagev1alpha1.Volume) (*volume.ImageFile, string, error) {
	name := v.Spec.Source.Image
	u, err := n.dyn.Resource(imagesGVR).Namespace(v.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, "", fmt.Errorf("%w: image %q does not exist", volume.ErrInvalid, name)
	}
	if err != nil {
		return nil, "", err
	}
	img := &storagev1alpha1.Image{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, img); err != nil {
		return nil, "", err
	}
	if img.Status.Phase != storagev1alpha1.ImageActive || img.Status.Reference == "" {
		return nil, fmt.Sprintf("waiting for image %s to be Active (it is %s)", name, img.Status.Phase), nil
	}
	if img.Status.Format != string(volume.Raw) && img.Status.Format != string(volume.QCOW2) {
		return nil, "", fmt.Errorf("%w: image %s is %s (raw and qcow2 only)", volume.ErrInvalid, name, img.Status.Format)
	}
	if n.images == nil {
		return nil, "", errors.New("this node cannot fetch images (no registry)")
	}
	if err := os.MkdirAll(n.tmpDir, 0o700); err != nil {
		return nil, "", err
	}
	path := filepath.Join(n.tmpDir, ".image-"+string(v.UID))
	if err := n.images.Fetch(ctx, img.Status.Reference, path); err != nil {
		os.Remove(path)
		return nil, "", err
	}
	return &volume.ImageFile{Path: path, Format: volume.Format(img.Status.Format)}, "", nil
}

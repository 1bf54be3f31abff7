package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/storage/volume"
)

// fakeBackend keeps volumes in memory.
type fakeBackend struct {
	vols, snaps map[string]volume.Info
	calls       []string
	createErr   error
}

func (b *fakeBackend) Create(_ context.Context, r volume.Request) (volume.Info, error) {
	b.calls = append(b.calls, "create "+r.ID+" from="+r.FromSnapshot+r.FromVolume)
	if r.FromImage != nil {
		if _, err := os.Stat(r.FromImage.Path); err != nil {
			return volume.Info{}, err
		}
	}
	if b.createErr != nil {
		return volume.Info{}, b.createErr
	}
	i := volume.Info{Path: "/d/" + r.ID, DevicePath: "/d/" + r.ID + "/device", Format: volume.Raw, Size: r.Size}
	b.vols[r.ID] = i
	return i, nil
}
func (b *fakeBackend) Publish(_ context.Context, id string) (volume.Info, error) {
	i, ok := b.vols[id]
	if !ok {
		return i, volume.ErrNotFound
	}
	return i, nil
}
func (b *fakeBackend) Expand(_ context.Context, id string, size int64, fs bool) (volume.Info, error) {
	b.calls = append(b.calls, "expand "+id)
	i := b.vols[id]
	i.Size = size
	b.vols[id] = i
	return i, nil
}
func (b *fakeBackend) Delete(_ context.Context, id string) error {
	b.calls = append(b.calls, "delete "+id)
	delete(b.vols, id)
	return nil
}
func (b *fakeBackend) Snapshot(_ context.Context, id, snap string) (volume.SnapshotInfo, error) {
	b.calls = append(b.calls, "snapshot "+id+" "+snap)
	b.snaps[snap] = b.vols[id]
	return volume.SnapshotInfo{Path: "/s/" + snap, Size: b.vols[id].Size}, nil
}
func (b *fakeBackend) DeleteSnapshot(_ context.Context, snap string) error {
	b.calls = append(b.calls, "delete-snapshot "+snap)
	delete(b.snaps, snap)
	return nil
}

func unstr(t *testing.T, kind string, obj any) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(storagev1alpha1.GroupVersion.String())
	u.SetKind(kind)
	return u
}

func newVolumeNode(t *testing.T, objs ...runtime.Object) (*volumeNode, *fakeBackend) {
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		volumesGVR: "VolumeList", snapshotsGVR: "VolumeSnapshotList", imagesGVR: "ImageList"}, objs...)
	b := &fakeBackend{vols: map[string]volume.Info{}, snaps: map[string]volume.Info{}}
	return &volumeNode{node: "n1", dyn: dyn, backend: b, log: slog.New(slog.NewTextHandler(io.Discard, nil))}, b
}

// state reads every Volume and VolumeSnapshot back, typed.
func (n *volumeNode) state(t *testing.T) ([]storagev1alpha1.Volume, []storagev1alpha1.VolumeSnapshot) {
	t.Helper()
	var vols []storagev1alpha1.Volume
	var snaps []storagev1alpha1.VolumeSnapshot
	l, _ := n.dyn.Resource(volumesGVR).List(context.Background(), metav1.ListOptions{})
	for _, u := range l.Items {
		var v storagev1alpha1.Volume
		runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &v)
		vols = append(vols, v)
	}
	l, _ = n.dyn.Resource(snapshotsGVR).List(context.Background(), metav1.ListOptions{})
	for _, u := range l.Items {
		var s storagev1alpha1.VolumeSnapshot
		runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s)
		snaps = append(snaps, s)
	}
	return vols, snaps
}

func (n *volumeNode) pass(t *testing.T) ([]storagev1alpha1.Volume, []storagev1alpha1.VolumeSnapshot) {
	vols, snaps := n.state(t)
	n.syncAll(context.Background(), vols, snaps)
	return n.state(t)
}

func vol(name, uid, size string, src *storagev1alpha1.VolumeSource) *storagev1alpha1.Volume {
	return &storagev1alpha1.Volume{
		ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: name, UID: types.UID("uid-" + uidOr(uid, name)), Generation: 1, Labels: map[string]string{storagev1alpha1.NodeLabel: "n1"}},
		Spec:       storagev1alpha1.VolumeSpec{Size: resource.MustParse(size), VolumeMode: storagev1alpha1.VolumeFilesystem, Format: storagev1alpha1.FormatRaw, Node: "n1", Source: src},
	}
}

func uidOr(uid, name string) string {
	if uid != "" {
		return uid
	}
	return name
}

func TestVolumeNodeCreatesReportsAndDeletes(t *testing.T) {
	n, b := newVolumeNode(t, unstr(t, "Volume", vol("data", "", "1Gi", nil)))
	vols, _ := n.pass(t) // finalizer
	if len(vols[0].Finalizers) != 1 || vols[0].Status.Phase != "" || len(b.calls) != 0 {
		t.Fatalf("first pass: finalizers %v phase %q calls %v; want only the finalizer", vols[0].Finalizers, vols[0].Status.Phase, b.calls)
	}
	vols, _ = n.pass(t)
	st := vols[0].Status
	if st.Phase != storagev1alpha1.VolumeAvailable || st.Node != "n1" || st.DevicePath != "/d/uid-data/device" || st.Size.String() != "1Gi" || st.ObservedGeneration != 1 {
		t.Fatalf("status %+v", st)
	}
	// Grown spec: the node expands.
	vols[0].Spec.Size = resource.MustParse("2Gi")
	vols[0].Generation = 2
	n.dyn.Resource(volumesGVR).Namespace("p").Update(context.Background(), unstr(t, "Volume", &vols[0]), metav1.UpdateOptions{})
	vols, _ = n.pass(t)
	if vols[0].Status.Size.String() != "2Gi" || !strings.Contains(strings.Join(b.calls, ","), "expand uid-data") {
		t.Errorf("after growing the spec: size %s, calls %v", vols[0].Status.Size, b.calls)
	}
	// Attached: In-use.
	vols[0].Status.Attachments = []storagev1alpha1.VolumeAttachment{{Kind: "Pod", Name: "x", Node: "n1"}}
	n.dyn.Resource(volumesGVR).Namespace("p").UpdateStatus(context.Background(), unstr(t, "Volume", &vols[0]), metav1.UpdateOptions{})
	if vols, _ = n.pass(t); vols[0].Status.Phase != storagev1alpha1.VolumeInUse || len(vols[0].Status.Attachments) != 1 {
		t.Errorf("attached volume: phase %s attachments %v", vols[0].Status.Phase, vols[0].Status.Attachments)
	}
	// Deleted: the file goes, then the finalizer.
	now := metav1.Now()
	vols[0].DeletionTimestamp = &now
	n.syncAll(context.Background(), vols, nil)
	vols, _ = n.state(t)
	if _, ok := b.vols["uid-data"]; ok || len(vols[0].Finalizers) != 0 {
		t.Errorf("after delete: backend %v, finalizers %v", b.vols, vols[0].Finalizers)
	}
}

func TestVolumeNodeFinalErrorIsNotRetried(t *testing.T) {
	n, b := newVolumeNode(t, unstr(t, "Volume", vol("huge", "", "100Ti", nil)))
	b.createErr = &volume.NoSpaceError{Node: "n1", Asked: 100 << 40, Free: 1 << 30}
	n.pass(t)
	vols, _ := n.pass(t)
	if st := vols[0].Status; st.Phase != storagev1alpha1.VolumeError || st.Message != "not enough space on node n1: 100Ti asked, 1Gi free" {
		t.Fatalf("status %+v", st)
	}
	b.calls = nil
	n.pass(t)
	if len(b.calls) != 0 {
		t.Errorf("a final error was retried: %v", b.calls)
	}
}

func TestVolumeNodeSnapshotThenVolumeFromIt(t *testing.T) {
	snap := &storagev1alpha1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "s1", UID: "uid-s1", Finalizers: []string{storagev1alpha1.BackendFinalizer}},
		Spec: storagev1alpha1.VolumeSnapshotSpec{Volume: "data"}}
	n, b := newVolumeNode(t, unstr(t, "Volume", vol("data", "", "1Gi", nil)), unstr(t, "VolumeSnapshot", snap),
		unstr(t, "Volume", vol("restored", "", "2Gi", &storagev1alpha1.VolumeSource{Snapshot: "s1"})),
		unstr(t, "Volume", vol("pic", "", "2Gi", &storagev1alpha1.VolumeSource{Image: "debian"})))
	for range 4 {
		n.pass(t)
	}
	vols, snaps := n.state(t)
	if s := snaps[0].Status; !s.ReadyToUse || s.Size.String() != "1Gi" || s.VolumeMode != storagev1alpha1.VolumeFilesystem {
		t.Errorf("snapshot status %+v", s)
	}
	for _, v := range vols {
		switch v.Name {
		case "restored":
			if v.Status.Phase != storagev1alpha1.VolumeAvailable || v.Status.Size.String() != "2Gi" {
				t.Errorf("restored: %+v", v.Status)
			}
		case "pic":
			if v.Status.Phase != storagev1alpha1.VolumeError || !strings.Contains(v.Status.Message, `image "debian" does not exist`) {
				t.Errorf("from image: %+v", v.Status)
			}
		}
	}
	calls := strings.Join(b.calls, ",")
	if !strings.Contains(calls, "snapshot uid-data uid-s1") || !strings.Contains(calls, "create uid-restored from=uid-s1,expand uid-restored") {
		t.Errorf("calls %s", calls)
	}
}

type fakeFetcher struct{ refs []string }

func (f *fakeFetcher) Fetch(_ context.Context, ref, dst string) error {
	f.refs = append(f.refs, ref)
	return os.WriteFile(dst, []byte("disk"), 0o600)
}

func TestVolumeNodeFromImage(t *testing.T) {
	img := func(name string, phase storagev1alpha1.ImagePhase, format string) *unstructured.Unstructured {
		return unstr(t, "Image", &storagev1alpha1.Image{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: name},
			Status: storagev1alpha1.ImageStatus{Phase: phase, Format: format, Reference: "images.strata.invalid/vm-images/p/" + name + "@sha256:ab"}})
	}
	n, b := newVolumeNode(t, img("debian", storagev1alpha1.ImageActive, "qcow2"), img("saving", storagev1alpha1.ImageSaving, ""),
		unstr(t, "Volume", vol("root", "", "2Gi", &storagev1alpha1.VolumeSource{Image: "debian"})),
		unstr(t, "Volume", vol("later", "", "2Gi", &storagev1alpha1.VolumeSource{Image: "saving"})))
	fetch := &fakeFetcher{}
	n.images, n.tmpDir = fetch, t.TempDir()
	n.pass(t)
	vols, _ := n.pass(t)
	for _, v := range vols {
		switch v.Name {
		case "root":
			if v.Status.Phase != storagev1alpha1.VolumeAvailable {
				t.Errorf("root: %+v", v.Status)
			}
		case "later":
			if v.Status.Phase != storagev1alpha1.VolumeCreating || !strings.Contains(v.Status.Message, "waiting for image saving to be Active") {
				t.Errorf("later: %+v", v.Status)
			}
		}
	}
	if len(fetch.refs) != 1 || fetch.refs[0] != "images.strata.invalid/vm-images/p/debian@sha256:ab" {
		t.Errorf("fetched %v", fetch.refs)
	}
	if calls := strings.Join(b.calls, ","); !strings.Contains(calls, "create uid-root from=") || strings.Contains(calls, "expand uid-root") {
		t.Errorf("calls %s: want a create from the image, no filesystem grow", calls)
	}
	if entries, _ := os.ReadDir(n.tmpDir); len(entries) != 0 {
		t.Errorf("fetched images left behind: %v", entries)
	}
}

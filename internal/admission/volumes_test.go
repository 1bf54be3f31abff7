package admission

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8sadmission "k8s.io/apiserver/pkg/admission"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

func storageObj(t *testing.T, kind string, obj any) *unstructured.Unstructured {
	u := toUnstructured(t, kind, obj)
	u.SetAPIVersion(storagev1alpha1.GroupVersion.String())
	return u
}

func newVolumePlugin(t *testing.T, objs ...runtime.Object) k8sadmission.ValidationInterface {
	t.Helper()
	plugins := k8sadmission.NewPlugins()
	Register(plugins)
	if _, err := plugins.InitPlugin(VolumeIntegrity, nil, k8sadmission.PluginInitializers{}); err == nil {
		t.Error("the plugin initializes without a client")
	}
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		volumesGVR: "VolumeList", volumeSnapshotGVR: "VolumeSnapshotList", imagesGVR: "ImageList", pvGVR: "PersistentVolumeList",
	}, objs...)
	p, err := plugins.InitPlugin(VolumeIntegrity, nil, dynamicInitializer{client})
	if err != nil {
		t.Fatal(err)
	}
	return p.(k8sadmission.ValidationInterface)
}

func volAttrs(t *testing.T, op k8sadmission.Operation, obj, old *storagev1alpha1.Volume, name string) k8sadmission.Attributes {
	var o, oo runtime.Object
	if obj != nil {
		o = storageObj(t, "Volume", obj)
	}
	if old != nil {
		oo = storageObj(t, "Volume", old)
	}
	var opts runtime.Object = &metav1.CreateOptions{}
	switch op {
	case k8sadmission.Update:
		opts = &metav1.UpdateOptions{}
	case k8sadmission.Delete:
		opts = &metav1.DeleteOptions{}
	}
	return k8sadmission.NewAttributesRecord(o, oo, storagev1alpha1.GroupVersion.WithKind("Volume"), "p", name, volumesGVR, "", op, opts, false, nil)
}

func volume(name, size string, src *storagev1alpha1.VolumeSource) *storagev1alpha1.Volume {
	return &storagev1alpha1.Volume{ObjectMeta: om("p", name), Spec: storagev1alpha1.VolumeSpec{Size: resource.MustParse(size), Source: src}}
}

func TestVolumeIntegrity(t *testing.T) {
	attached := volume("attached", "1Gi", nil)
	attached.Status.Attachments = []storagev1alpha1.VolumeAttachment{{Kind: "VirtualMachine", Name: "web1"}}
	claimed := volume("pvc-1", "1Gi", nil)
	claimed.Annotations = map[string]string{storagev1alpha1.ClaimAnnotation: "p/data"}
	released := volume("pvc-2", "1Gi", nil)
	released.Annotations = map[string]string{storagev1alpha1.ClaimAnnotation: "p/old"}
	pv := func(name, phase string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "PersistentVolume",
			"metadata": map[string]any{"name": name}, "status": map[string]any{"phase": phase}}}
	}
	snapSize := resource.MustParse("2Gi")
	p := newVolumePlugin(t,
		storageObj(t, "Volume", attached), storageObj(t, "Volume", volume("snapped", "2Gi", nil)), storageObj(t, "Volume", volume("plain", "1Gi", nil)),
		storageObj(t, "Volume", claimed), storageObj(t, "Volume", released), pv("pvc-1", "Bound"), pv("pvc-2", "Released"),
		storageObj(t, "VolumeSnapshot", &storagev1alpha1.VolumeSnapshot{ObjectMeta: om("p", "s1"), Spec: storagev1alpha1.VolumeSnapshotSpec{Volume: "snapped"},
			Status: storagev1alpha1.VolumeSnapshotStatus{Size: &snapSize}}),
		storageObj(t, "Image", &storagev1alpha1.Image{ObjectMeta: om("p", "debian"), Status: storagev1alpha1.ImageStatus{VirtualSizeBytes: 2 << 30}}),
		namespace("p", false),
	)
	ctx := t.Context()
	for _, tc := range []struct {
		what string
		attr k8sadmission.Attributes
		code int32
		msg  string
	}{
		{"delete attached", volAttrs(t, k8sadmission.Delete, nil, nil, "attached"), 409, `volume "attached" is attached to virtualmachine web1; detach it first`},
		{"delete with snapshots", volAttrs(t, k8sadmission.Delete, nil, nil, "snapped"), 409, `volume "snapped" has snapshots s1; delete them first`},
		{"delete behind a bound PV", volAttrs(t, k8sadmission.Delete, nil, nil, "pvc-1"), 409, "bound to claim p/data; delete the claim instead"},
		{"delete behind a released PV", volAttrs(t, k8sadmission.Delete, nil, nil, "pvc-2"), 0, ""},
		{"delete plain", volAttrs(t, k8sadmission.Delete, nil, nil, "plain"), 0, ""},
		{"delete missing", volAttrs(t, k8sadmission.Delete, nil, nil, "nope"), 0, ""},
		{"smaller than the image", volAttrs(t, k8sadmission.Create, volume("v", "1Gi", &storagev1alpha1.VolumeSource{Image: "debian"}), nil, "v"), 422, "spec.size: Invalid value: \"1Gi\": must be at least the size of image \"debian\", 2Gi"},
		{"as large as the image", volAttrs(t, k8sadmission.Create, volume("v", "2Gi", &storagev1alpha1.VolumeSource{Image: "debian"}), nil, "v"), 0, ""},
		{"missing image", volAttrs(t, k8sadmission.Create, volume("v", "2Gi", &storagev1alpha1.VolumeSource{Image: "nope"}), nil, "v"), 422, "spec.source.image: Not found"},
		{"smaller than the snapshot", volAttrs(t, k8sadmission.Create, volume("v", "1Gi", &storagev1alpha1.VolumeSource{Snapshot: "s1"}), nil, "v"), 422, "must be at least the size of snapshot \"s1\", 2Gi"},
		{"smaller than the source volume", volAttrs(t, k8sadmission.Create, volume("v", "1Gi", &storagev1alpha1.VolumeSource{Volume: "snapped"}), nil, "v"), 422, "spec.size"},
		{"zero size", volAttrs(t, k8sadmission.Create, volume("v", "0", nil), nil, "v"), 422, "must be positive"},
		{"shrink", volAttrs(t, k8sadmission.Update, volume("plain", "512Mi", nil), volume("plain", "1Gi", nil), "plain"), 422, "a volume cannot shrink"},
		{"grow", volAttrs(t, k8sadmission.Update, volume("plain", "2Gi", nil), volume("plain", "1Gi", nil), "plain"), 0, ""},
	} {
		wantStatus(t, tc.what, p.Validate(ctx, tc.attr, nil), tc.code, tc.msg)
	}
}

package volume

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

// TestVMAttachments: a Volume lists the VMs that name it (spec or, while
// detaching, status) with their device; claims' Volumes are left to the
// claim reconciler.
func TestVMAttachments(t *testing.T) {
	vol := func(name string, ann map[string]string) *storagev1alpha1.Volume {
		return &storagev1alpha1.Volume{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "p", Annotations: ann, Labels: map[string]string{storagev1alpha1.NodeLabel: "n1"}},
			Spec:       storagev1alpha1.VolumeSpec{Node: "n1"},
		}
	}
	vm := &computev1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "p"},
		Spec:       computev1alpha1.VirtualMachineSpec{RootVolume: "root", Volumes: []computev1alpha1.VirtualMachineVolume{{Volume: "data"}}},
		Status: computev1alpha1.VirtualMachineStatus{NodeName: "n1", Volumes: []computev1alpha1.VirtualMachineVolumeStatus{
			{Volume: "data", Phase: computev1alpha1.VolumeAttached, Target: "vdc"},
			{Volume: "old", Phase: computev1alpha1.VolumeDetaching, Target: "vdd"},
		}},
	}
	c := fake.NewClientBuilder().WithScheme(scheme(t)).
		WithObjects(vm, vol("root", nil), vol("data", nil), vol("old", nil), vol("free", nil)).
		WithStatusSubresource(&storagev1alpha1.Volume{}).Build()
	r := &VolumeReconciler{Client: c}
	ctx := context.Background()
	want := map[string]string{"root": "web@n1:/dev/vda", "data": "web@n1:/dev/vdc", "old": "web@n1:/dev/vdd", "free": ""}
	for name, w := range want {
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "p", Name: name}}); err != nil {
			t.Fatal(err)
		}
		v := &storagev1alpha1.Volume{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "p", Name: name}, v); err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, a := range v.Status.Attachments {
			if a.Kind != "VirtualMachine" {
				t.Errorf("%s: attachment kind %q", name, a.Kind)
			}
			got = a.Name + "@" + a.Node + ":" + a.Device
		}
		if len(v.Status.Attachments) > 1 || got != w {
			t.Errorf("volume %s: attachments %+v, want %q", name, v.Status.Attachments, w)
		}
	}
	// The VM lets go of everything: the attachments go.
	if err := c.Delete(ctx, vm); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "p", Name: "data"}}); err != nil {
		t.Fatal(err)
	}
	v := &storagev1alpha1.Volume{}
	_ = c.Get(ctx, types.NamespacedName{Namespace: "p", Name: "data"}, v)
	if len(v.Status.Attachments) != 0 {
		t.Errorf("after the VM went: %+v", v.Status.Attachments)
	}
}

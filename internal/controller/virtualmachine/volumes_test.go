package virtualmachine

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/vm/launcher"
)

// fakeExec plays a launcher's `strata-launcher volume`.
type fakeExec struct {
	have  map[int]launcher.VolumeState
	calls []string
}

func (f *fakeExec) Exec(_ context.Context, _, _, _ string, cmd []string) (string, error) {
	f.calls = append(f.calls, strings.Join(cmd[2:], " "))
	switch cmd[2] {
	case "list":
		var out []launcher.VolumeState
		for _, h := range f.have {
			out = append(out, h)
		}
		b, _ := json.Marshal(out)
		return string(b), nil
	case "attach":
		v, _ := launcher.ParseVolume(cmd[3])
		f.have[v.Slot] = launcher.VolumeState{Slot: v.Slot, Path: v.Path, Device: true, Node: true}
		return "attached\n", nil
	case "detach":
		for s, h := range f.have {
			if cmd[3] == launcher.VolumeID(s)[3:] {
				if h.Device {
					h.Device = false
					f.have[s] = h
					return "detaching\n", nil
				}
				delete(f.have, s)
			}
		}
		return "detached\n", nil
	}
	return "", nil
}

func volumeOn(name, node string) *storagev1alpha1.Volume {
	return &storagev1alpha1.Volume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "p1", UID: types.UID("u-" + name)},
		Spec:       storagev1alpha1.VolumeSpec{Node: node},
		Status: storagev1alpha1.VolumeStatus{Phase: storagev1alpha1.VolumeAvailable, Node: node, Format: "raw",
			Path: "/data/volumes/u-" + name + "/disk.raw"},
	}
}

func TestVMVolumesAtCreateAndHotplug(t *testing.T) {
	vm := testVM(computev1alpha1.RunStrategyAlways)
	vm.Spec.Volumes = []computev1alpha1.VirtualMachineVolume{{Volume: "a"}}
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(vm, debian, small, volumeOn("a", "n1"), volumeOn("b", "n1"), volumeOn("far", "n2")).
		WithStatusSubresource(&computev1alpha1.VirtualMachine{}, &corev1.Pod{}).Build()
	ex := &fakeExec{have: map[int]launcher.VolumeState{}}
	r := &Reconciler{Client: c, Exec: ex}
	ctx := context.Background()
	reconcile := func() *computev1alpha1.VirtualMachine {
		t.Helper()
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "p1", Name: "web1"}}); err != nil {
			t.Fatal(err)
		}
		got := &computev1alpha1.VirtualMachine{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "p1", Name: "web1"}, got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	reconcile()
	pod := &corev1.Pod{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "p1", Name: "vm-web1"}, pod); err != nil {
		t.Fatal(err)
	}
	args := strings.Join(pod.Spec.Containers[0].Args, " ")
	if !strings.Contains(args, "--volume path="+VolumesDir+"/u-a/disk.raw,slot=0,format=raw,serial=a") || !strings.Contains(args, "--volume-slots 16") {
		t.Errorf("launcher args %s", args)
	}
	var hp string
	for _, v := range pod.Spec.Volumes {
		if v.Name == volumeMount {
			hp = v.HostPath.Path
		}
	}
	if hp != "/data/volumes" {
		t.Errorf("volume dir hostPath %q", hp)
	}
	if a := pod.Spec.Affinity; a == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchFields[0].Values[0] != "n1" {
		t.Errorf("affinity %+v", a)
	}
	// The launcher runs with volume a in slot 0.
	ex.have[0] = launcher.VolumeState{Slot: 0, Path: VolumesDir + "/u-a/disk.raw", Device: true, Node: true}
	pod.Spec.NodeName = "n1"
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.ContainersReady, Status: corev1.ConditionTrue}}}
	st := pod.Status
	if err := c.Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status = st
	if err := c.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	got := reconcile()
	if len(got.Status.Volumes) != 1 || got.Status.Volumes[0] != (computev1alpha1.VirtualMachineVolumeStatus{Volume: "a", Phase: computev1alpha1.VolumeAttached, Target: "vdc"}) {
		t.Fatalf("status volumes %+v", got.Status.Volumes)
	}
	// Hot-plug b (vdd) and far (another node: Error).
	got.Spec.Volumes = append(got.Spec.Volumes, computev1alpha1.VirtualMachineVolume{Volume: "b"}, computev1alpha1.VirtualMachineVolume{Volume: "far"})
	if err := c.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	got = reconcile()
	byName := map[string]computev1alpha1.VirtualMachineVolumeStatus{}
	for _, v := range got.Status.Volumes {
		byName[v.Volume] = v
	}
	if b := byName["b"]; b.Phase != computev1alpha1.VolumeAttached || b.Target != "vdd" {
		t.Errorf("b: %+v (calls %q)", b, ex.calls)
	}
	if f := byName["far"]; f.Phase != computev1alpha1.VolumeAttachError || !strings.Contains(f.Message, "node n2") {
		t.Errorf("far: %+v", f)
	}
	// Unplug b and far: Detaching, then gone.
	got.Spec.Volumes = got.Spec.Volumes[:1]
	if err := c.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	got = reconcile()
	if len(got.Status.Volumes) != 2 || got.Status.Volumes[1].Phase != computev1alpha1.VolumeDetaching || got.Status.Volumes[1].Volume != "b" {
		t.Fatalf("while detaching: %+v", got.Status.Volumes)
	}
	got = reconcile()
	if len(got.Status.Volumes) != 1 || got.Status.Volumes[0].Volume != "a" {
		t.Fatalf("after detaching: %+v (calls %q)", got.Status.Volumes, ex.calls)
	}
}

func TestVMVolumesOnDifferentNodes(t *testing.T) {
	vm := testVM(computev1alpha1.RunStrategyAlways)
	vm.Spec.Volumes = []computev1alpha1.VirtualMachineVolume{{Volume: "a"}, {Volume: "far"}}
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(vm, debian, small, volumeOn("a", "n1"), volumeOn("far", "n2")).
		WithStatusSubresource(&computev1alpha1.VirtualMachine{}).Build()
	got := runReconcile(t, c, vm)
	if got.Status.Phase != computev1alpha1.VirtualMachineError || !strings.Contains(conditionMessage(got, ConditionReady), "on node n2") {
		t.Errorf("phase %s, conditions %+v", got.Status.Phase, got.Status.Conditions)
	}
}

func TestVMBootsFromVolume(t *testing.T) {
	vm := testVM(computev1alpha1.RunStrategyAlways)
	vm.Spec.Image, vm.Spec.RootVolume = "", "root"
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(vm, small, volumeOn("root", "n1")).
		WithStatusSubresource(&computev1alpha1.VirtualMachine{}).Build()
	runReconcile(t, c, vm)
	pod := &corev1.Pod{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "p1", Name: "vm-web1"}, pod); err != nil {
		t.Fatal(err)
	}
	args := strings.Join(pod.Spec.Containers[0].Args, " ")
	if !strings.Contains(args, "--disk path="+VolumesDir+"/u-root/disk.raw,format=raw") || strings.Contains(args, "backing=") {
		t.Errorf("args %s", args)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == "base" {
			t.Error("a VM booting from a volume mounts an image")
		}
	}
}

func conditionMessage(vm *computev1alpha1.VirtualMachine, t string) string {
	for _, c := range vm.Status.Conditions {
		if c.Type == t {
			return c.Reason + ": " + c.Message
		}
	}
	return ""
}

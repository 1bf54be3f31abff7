package vmmigration

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/cni"
)

func setup(t *testing.T, vmPhase computev1alpha1.VirtualMachinePhase) (client.Client, *Reconciler, *computev1alpha1.VirtualMachineMigration) {
	t.Helper()
	s := runtime.NewScheme()
	clientgoscheme.AddToScheme(s)
	computev1alpha1.AddToScheme(s)
	vm := &computev1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: "web1", Namespace: "p1", UID: "vm-uid"},
		Status:     computev1alpha1.VirtualMachineStatus{Phase: vmPhase, IPs: []string{"10.42.1.7"}, NodeName: "a", LauncherPod: "vm-web1"},
	}
	src := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "vm-web1", Namespace: "p1", Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{cni.AnnotationMAC: "52:54:00:01:02:03"}},
		Spec: corev1.PodSpec{NodeName: "a", Containers: []corev1.Container{{Name: "compute", Args: []string{"--name", "web1", "--nic", "tap=tap0,pod=eth0,mac=52:54:00:01:02:03"}}}},
	}
	nodeA := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: corev1.NodeSpec{PodCIDR: "10.42.1.0/24"}}
	nodeB := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Spec: corev1.NodeSpec{PodCIDR: "10.42.2.0/24"}}
	m := &computev1alpha1.VirtualMachineMigration{
		ObjectMeta: metav1.ObjectMeta{Name: "mig", Namespace: "p1", UID: "abcdef-123"},
		Spec:       computev1alpha1.VirtualMachineMigrationSpec{VMName: "web1", TargetNode: "b"},
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(vm, src, nodeA, nodeB, m).
		WithStatusSubresource(vm, m).Build()
	return c, &Reconciler{Client: c}, m
}

func reconcileOnce(t *testing.T, c client.Client, r *Reconciler) *computev1alpha1.VirtualMachineMigration {
	t.Helper()
	key := types.NamespacedName{Namespace: "p1", Name: "mig"}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
	m := &computev1alpha1.VirtualMachineMigration{}
	if err := c.Get(context.Background(), key, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestStartCreatesTargetPod(t *testing.T) {
	c, r, _ := setup(t, computev1alpha1.VirtualMachineRunning)
	reconcileOnce(t, c, r) // finalizer
	m := reconcileOnce(t, c, r)
	if m.Status.Phase != computev1alpha1.MigrationScheduling || m.Status.SourceNode != "a" || m.Status.VMIP != "10.42.1.7" || m.Status.TargetPod != "vm-web1-abcde" {
		t.Fatalf("status %+v", m.Status)
	}
	p := &corev1.Pod{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "p1", Name: "vm-web1-abcde"}, p); err != nil {
		t.Fatal(err)
	}
	args := p.Spec.Containers[0].Args
	if !slices.Contains(args, "--incoming") || !slices.Contains(args, "tap=tap0,pod=eth0,mac=52:54:00:01:02:03,address=10.42.1.7/24,gateway=10.42.1.1") {
		t.Errorf("target launcher args %q: want --incoming and the guest's lease", args)
	}
	if p.Annotations[cni.AnnotationIP] != "10.42.1.7" || p.Labels[LabelMigration] != "mig" || p.Labels["app"] != "web" {
		t.Errorf("target pod annotations %v labels %v", p.Annotations, p.Labels)
	}
	f := p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchFields[0]
	if f.Operator != corev1.NodeSelectorOpIn || f.Values[0] != "b" {
		t.Errorf("target affinity %+v, want node b", f)
	}

	// The target runs: TargetReady. Then the source node reports success:
	// the VM switches to the target pod, which gets the routed address.
	p.Spec.NodeName = "b"
	c.Update(context.Background(), p)
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "compute", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	c.Status().Update(context.Background(), p)
	if m := reconcileOnce(t, c, r); m.Status.Phase != computev1alpha1.MigrationTargetReady || m.Status.TargetNode != "b" {
		t.Fatalf("status after the target runs: %+v", m.Status)
	}
	m = reconcileOnce(t, c, r)
	m.Status.Phase = computev1alpha1.MigrationSucceeded
	c.Status().Update(context.Background(), m)
	reconcileOnce(t, c, r)
	vm := &computev1alpha1.VirtualMachine{}
	c.Get(context.Background(), types.NamespacedName{Namespace: "p1", Name: "web1"}, vm)
	if vm.Status.LauncherPod != "vm-web1-abcde" || vm.Status.NodeName != "b" {
		t.Errorf("VM status after the switch: %+v", vm.Status)
	}
	c.Get(context.Background(), types.NamespacedName{Namespace: "p1", Name: "vm-web1-abcde"}, p)
	if p.Annotations[cni.AnnotationRoutedIP] != "10.42.1.7" {
		t.Errorf("the target pod does not carry the VM's routed address: %v", p.Annotations)
	}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "p1", Name: "vm-web1"}, &corev1.Pod{}); err == nil {
		t.Error("the source pod is still there")
	}
}

func TestStoppedVMDoesNotMigrate(t *testing.T) {
	c, r, _ := setup(t, computev1alpha1.VirtualMachineStopped)
	reconcileOnce(t, c, r)
	m := reconcileOnce(t, c, r)
	if m.Status.Phase != computev1alpha1.MigrationFailed || !strings.Contains(m.Status.Message, "only a running VM migrates") {
		t.Errorf("status %+v", m.Status)
	}
}

func TestVMWithVolumesDoesNotMigrate(t *testing.T) {
	c, r, _ := setup(t, computev1alpha1.VirtualMachineRunning)
	vm := &computev1alpha1.VirtualMachine{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "p1", Name: "web1"}, vm); err != nil {
		t.Fatal(err)
	}
	vm.Spec.Volumes = []computev1alpha1.VirtualMachineVolume{{Volume: "data"}}
	if err := c.Update(context.Background(), vm); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, c, r)
	m := reconcileOnce(t, c, r)
	if m.Status.Phase != computev1alpha1.MigrationFailed || !strings.Contains(m.Status.Message, "volumes on node a (data)") {
		t.Errorf("status %+v", m.Status)
	}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "p1", Name: "vm-web1-abcde"}, &corev1.Pod{}); err == nil {
		t.Error("a target pod was made")
	}
}

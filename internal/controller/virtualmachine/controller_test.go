package virtualmachine

import (
	"context"
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
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/cni"
)

func scheme(t *testing.T) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := computev1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := storagev1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func testVM(strategy computev1alpha1.RunStrategy) *computev1alpha1.VirtualMachine {
	return &computev1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: "web1", Namespace: "p1", UID: "uid-1", Labels: map[string]string{"app": "web"}},
		Spec:       computev1alpha1.VirtualMachineSpec{Flavor: "m1.small", Image: "debian", RunStrategy: strategy},
	}
}

var k1 = &computev1alpha1.KeyPair{
	ObjectMeta: metav1.ObjectMeta{Name: "k1", Namespace: "p1"},
	Spec:       computev1alpha1.KeyPairSpec{PublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl k1"},
}

var debian = &storagev1alpha1.Image{
	ObjectMeta: metav1.ObjectMeta{Name: "debian", Namespace: "p1"},
	Status:     storagev1alpha1.ImageStatus{Phase: storagev1alpha1.ImageActive, Reference: "images.strata.invalid/vm-images/p1/debian@sha256:abc"},
}

var small = &computev1alpha1.Flavor{
	ObjectMeta: metav1.ObjectMeta{Name: "m1.small"},
	Spec:       computev1alpha1.FlavorSpec{VCPUs: 2, RAMMiB: 512, DiskGiB: 5},
}

func runReconcile(t *testing.T, c client.Client, vm *computev1alpha1.VirtualMachine) *computev1alpha1.VirtualMachine {
	t.Helper()
	r := &Reconciler{Client: c, Options: LauncherOptions{Image: "localhost/strata/launcher:test"}}
	key := types.NamespacedName{Namespace: vm.Namespace, Name: vm.Name}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: key}); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	got := &computev1alpha1.VirtualMachine{}
	if err := c.Get(context.Background(), key, got); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestReconcileCreatesLauncherPod(t *testing.T) {
	vm := testVM(computev1alpha1.RunStrategyAlways)
	vm.Spec.KeyPairs = []string{"k1"}
	vm.Spec.UserData = "#cloud-config\n"
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(vm, small, debian, k1).WithStatusSubresource(vm).Build()
	got := runReconcile(t, c, vm)
	pod := &corev1.Pod{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "p1", Name: "vm-web1"}, pod); err != nil {
		t.Fatalf("launcher pod: %v", err)
	}
	if !metav1.IsControlledBy(pod, vm) {
		t.Errorf("launcher pod not controlled by the VM: %v", pod.OwnerReferences)
	}
	if pod.Labels["app"] != "web" || pod.Labels[LabelVM] != "web1" {
		t.Errorf("pod labels %v: want the VM's labels and %s", pod.Labels, LabelVM)
	}
	res := pod.Spec.Containers[0].Resources
	if cpu := res.Requests.Cpu().MilliValue(); cpu != 200 {
		t.Errorf("cpu request %dm, want 200m (2 vCPUs at 10:1)", cpu)
	}
	if mem := res.Limits.Memory().Value(); mem != (512+128)<<20 {
		t.Errorf("memory limit %d, want guest + overhead", mem)
	}
	if got.Status.Phase != computev1alpha1.VirtualMachinePending || got.Status.LauncherPod != "vm-web1" || got.Status.VCPUs != 2 {
		t.Errorf("status %+v", got.Status)
	}
	if v := pod.Spec.Volumes[0]; v.Image == nil || v.Image.Reference != debian.Status.Reference {
		t.Errorf("base volume %+v, want the image's artifact %s", v, debian.Status.Reference)
	}
	seed := &corev1.Secret{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "p1", Name: "vm-web1-seed"}, seed); err != nil {
		t.Fatalf("seed secret: %v", err)
	}
	if want := `{"cloudInit":{"hostname":"web1","instanceID":"uid-1","publicKeys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl k1"],"userData":"#cloud-config\n"}}`; string(seed.Data["spec.json"]) != want {
		t.Errorf("seed spec.json = %s\nwant %s", seed.Data["spec.json"], want)
	}
}

func TestReconcileWaitsForImage(t *testing.T) {
	vm := testVM(computev1alpha1.RunStrategyAlways)
	saving := debian.DeepCopy()
	saving.Status = storagev1alpha1.ImageStatus{Phase: storagev1alpha1.ImageSaving}
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(vm, small, saving).WithStatusSubresource(vm).Build()
	got := runReconcile(t, c, vm)
	if got.Status.Phase != computev1alpha1.VirtualMachinePending || got.Status.Conditions[0].Reason != "ImageNotReady" {
		t.Errorf("status %+v, want Pending with ImageNotReady", got.Status)
	}
	pods := &corev1.PodList{}
	if err := c.List(context.Background(), pods); err != nil || len(pods.Items) != 0 {
		t.Errorf("pods %v (%v), want none before the image is Active", pods.Items, err)
	}
	missing := testVM(computev1alpha1.RunStrategyAlways)
	missing.Spec.Image = "nope"
	c = fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(missing, small).WithStatusSubresource(missing).Build()
	if got := runReconcile(t, c, missing); got.Status.Phase != computev1alpha1.VirtualMachineError || got.Status.Conditions[0].Reason != "ImageNotFound" {
		t.Errorf("status %+v, want Error with ImageNotFound", got.Status)
	}
}

func TestReconcileMissingFlavor(t *testing.T) {
	vm := testVM(computev1alpha1.RunStrategyAlways)
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(vm).WithStatusSubresource(vm).Build()
	got := runReconcile(t, c, vm)
	if got.Status.Phase != computev1alpha1.VirtualMachineError || len(got.Status.Conditions) == 0 || got.Status.Conditions[0].Reason != "FlavorNotFound" {
		t.Errorf("status %+v, want Error with FlavorNotFound", got.Status)
	}
	pods := &corev1.PodList{}
	if err := c.List(context.Background(), pods); err != nil || len(pods.Items) != 0 {
		t.Errorf("pods %v (%v), want none for a VM that cannot run", pods.Items, err)
	}
}

func TestAction(t *testing.T) {
	pod := func(phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{Phase: phase}}
	}
	withStatus := func(vm *computev1alpha1.VirtualMachine, phase computev1alpha1.VirtualMachinePhase, launcher string) *computev1alpha1.VirtualMachine {
		vm.Status.Phase, vm.Status.LauncherPod = phase, launcher
		return vm
	}
	for _, c := range []struct {
		name string
		vm   *computev1alpha1.VirtualMachine
		pod  *corev1.Pod
		want podAction
	}{
		{"always, none", testVM(computev1alpha1.RunStrategyAlways), nil, create},
		{"always, running", testVM(computev1alpha1.RunStrategyAlways), pod(corev1.PodRunning), keep},
		{"always, powered off", testVM(computev1alpha1.RunStrategyAlways), pod(corev1.PodSucceeded), remove},
		{"always, failed", testVM(computev1alpha1.RunStrategyAlways), pod(corev1.PodFailed), remove},
		{"halted, running", testVM(computev1alpha1.RunStrategyHalted), pod(corev1.PodRunning), remove},
		{"halted, none", testVM(computev1alpha1.RunStrategyHalted), nil, keep},
		{"rerun, failed", testVM(computev1alpha1.RunStrategyRerunOnFailure), pod(corev1.PodFailed), remove},
		{"rerun, powered off", testVM(computev1alpha1.RunStrategyRerunOnFailure), pod(corev1.PodSucceeded), keep},
		{"rerun, after failure", withStatus(testVM(computev1alpha1.RunStrategyRerunOnFailure), computev1alpha1.VirtualMachineError, "vm-web1"), nil, create},
		{"manual, first start", testVM(computev1alpha1.RunStrategyManual), nil, create},
		{"manual, stopped", withStatus(testVM(computev1alpha1.RunStrategyManual), computev1alpha1.VirtualMachineStopped, "vm-web1"), nil, keep},
	} {
		if got := action(c.vm, c.pod); got != c.want {
			t.Errorf("%s: action %d, want %d", c.name, got, c.want)
		}
	}
}

func TestStatusFromPod(t *testing.T) {
	vm := testVM(computev1alpha1.RunStrategyAlways)
	size := Size{VCPUs: 1, MemoryMiB: 256}
	running := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "vm-web1"},
		Spec:       corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			PodIPs:     []corev1.PodIP{{IP: "10.42.0.7"}},
			Conditions: []corev1.PodCondition{{Type: corev1.ContainersReady, Status: corev1.ConditionTrue}},
		},
	}
	st := Status(vm, running, size, nil)
	if st.Phase != computev1alpha1.VirtualMachineRunning || st.NodeName != "n1" || len(st.IPs) != 1 || st.IPs[0] != "10.42.0.7" {
		t.Errorf("running pod: %+v", st)
	}
	booting := running.DeepCopy()
	booting.Status.Conditions = nil
	if st := Status(vm, booting, size, nil); st.Phase != computev1alpha1.VirtualMachineProvisioning {
		t.Errorf("pod not ready: phase %s, want Provisioning", st.Phase)
	}
	unscheduled := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "vm-web1"}, Status: corev1.PodStatus{
		Phase:      corev1.PodPending,
		Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/1 nodes: insufficient memory"}},
	}}
	st = Status(vm, unscheduled, size, nil)
	if st.Phase != computev1alpha1.VirtualMachinePending {
		t.Errorf("unscheduled: phase %s, want Pending", st.Phase)
	}
	var sched *metav1.Condition
	for i := range st.Conditions {
		if st.Conditions[i].Type == ConditionScheduled {
			sched = &st.Conditions[i]
		}
	}
	if sched == nil || sched.Status != metav1.ConditionFalse || sched.Message != "0/1 nodes: insufficient memory" {
		t.Errorf("Scheduled condition %+v, want the scheduler's reason", sched)
	}
}

func TestLauncherPodOfAVMThatRanBefore(t *testing.T) {
	vm := testVM(computev1alpha1.RunStrategyAlways)
	first := LauncherPod(vm, Size{VCPUs: 1, MemoryMiB: 256}, "ref", LauncherOptions{})
	if first.Spec.Affinity != nil || first.Annotations[cni.AnnotationIP] != "" {
		t.Errorf("a new VM's pod is pinned or asks for an address: %+v %v", first.Spec.Affinity, first.Annotations)
	}
	if mac := first.Annotations[cni.AnnotationMAC]; mac != MAC(vm) || !strings.HasPrefix(mac, "52:54:00:") {
		t.Errorf("MAC annotation %q, want %s", mac, MAC(vm))
	}
	if q := first.Spec.Containers[0].Resources.Limits[ResourceTun]; q.Value() != 1 {
		t.Errorf("the launcher does not ask for %s: %v", ResourceTun, first.Spec.Containers[0].Resources.Limits)
	}
	if hp, m := first.Spec.Volumes[1].HostPath, first.Spec.Containers[0].VolumeMounts[1]; hp == nil || hp.Path != "/var/lib/strata/vm-disks" || m.SubPathExpr != "$(NODE_NAME)/p1/web1-uid-1" {
		t.Errorf("disks volume %+v mounted %+v, want the VM's directory on the node", first.Spec.Volumes[1], m)
	}
	vm.Status.NodeName, vm.Status.IPs = "n2", []string{"10.42.1.7"}
	again := LauncherPod(vm, Size{VCPUs: 1, MemoryMiB: 256}, "ref", LauncherOptions{DiskDir: "/d"})
	if again.Annotations[cni.AnnotationIP] != "10.42.1.7" {
		t.Errorf("annotations %v: want the VM's address requested again", again.Annotations)
	}
	terms := again.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if f := terms[0].MatchFields[0]; f.Key != "metadata.name" || f.Values[0] != "n2" {
		t.Errorf("node affinity %+v, want the VM's node n2", f)
	}
	if got := DiskDirOf(LauncherOptions{DiskDir: "/d"}, vm, "n2"); got != "/d/n2/p1/web1-uid-1" {
		t.Errorf("DiskDirOf = %s", got)
	}
	// A stopped VM keeps its node and address in status.
	vm.Spec.RunStrategy = computev1alpha1.RunStrategyHalted
	if st := Status(vm, nil, Size{}, nil); st.NodeName != "n2" || st.IPs[0] != "10.42.1.7" {
		t.Errorf("stopped VM status %+v lost its node or address", st)
	}
}

func TestResizeRestartsAndDeleteCleansDisks(t *testing.T) {
	vm := testVM(computev1alpha1.RunStrategyAlways)
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(vm, small, debian).WithStatusSubresource(vm).Build()
	got := runReconcile(t, c, vm)
	if !controllerutil.ContainsFinalizer(got, FinalizerDisks) {
		t.Fatalf("no %s finalizer on %v", FinalizerDisks, got.Finalizers)
	}
	podKey := types.NamespacedName{Namespace: "p1", Name: "vm-web1"}
	pod := &corev1.Pod{}
	if err := c.Get(context.Background(), podKey, pod); err != nil {
		t.Fatal(err)
	}
	// Another flavor: the pod (sized for the old one) goes.
	big := &computev1alpha1.Flavor{ObjectMeta: metav1.ObjectMeta{Name: "m1.big"}, Spec: computev1alpha1.FlavorSpec{VCPUs: 4, RAMMiB: 1024}}
	if err := c.Create(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	got.Spec.Flavor = "m1.big"
	if err := c.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	runReconcile(t, c, got)
	if err := c.Get(context.Background(), podKey, pod); err == nil {
		t.Errorf("the launcher pod of a resized VM was kept: %v", pod.Annotations)
	}
	// Deleting a VM that ran on a node: a cleanup pod on that node, then the finalizer goes.
	got = runReconcile(t, c, got) // a new pod, new size
	got.Status.NodeName = "n1"
	if err := c.Status().Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Client: c, Options: LauncherOptions{Image: "img"}}
	key := types.NamespacedName{Namespace: "p1", Name: "web1"}
	for range 3 { // the launcher pod goes first, then the cleanup pod comes
		if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: key}); err != nil {
			t.Fatal(err)
		}
	}
	cleanup := &corev1.Pod{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "p1", Name: "vm-web1-cleanup"}, cleanup); err != nil {
		t.Fatalf("no cleanup pod: %v", err)
	}
	if cleanup.Spec.NodeName != "n1" || cleanup.Spec.Containers[0].Args[0] != "remove-disks" {
		t.Errorf("cleanup pod on %q with %v", cleanup.Spec.NodeName, cleanup.Spec.Containers[0].Args)
	}
	cleanup.Status.Phase = corev1.PodSucceeded
	if err := c.Status().Update(context.Background(), cleanup); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(context.Background(), key, got); err == nil {
		t.Errorf("the VM stays after its disks were removed: finalizers %v", got.Finalizers)
	}
}

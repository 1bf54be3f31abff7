package virtualmachine

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/cni"
)

func schemeWithNetworking(t *testing.T) *runtime.Scheme {
	s := scheme(t)
	if err := networkingv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReconcileTenantNetwork(t *testing.T) {
	vm := testVM(computev1alpha1.RunStrategyAlways)
	vm.Spec.Networks = []computev1alpha1.VirtualMachineNetwork{{Network: "net1"}}
	c := fake.NewClientBuilder().WithScheme(schemeWithNetworking(t)).WithObjects(vm, small, debian).
		WithStatusSubresource(vm, &networkingv1alpha1.Port{}).Build()
	ctx := context.Background()

	got := runReconcile(t, c, vm)
	port := &networkingv1alpha1.Port{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "p1", Name: "web1-net1"}, port); err != nil {
		t.Fatalf("the VM's port: %v", err)
	}
	if port.Spec.Network != "net1" || port.Spec.Device == nil || *port.Spec.Device != (networkingv1alpha1.PortDevice{Kind: "VirtualMachine", Name: "web1"}) || !metav1.IsControlledBy(port, vm) {
		t.Errorf("port %+v owners %v", port.Spec, port.OwnerReferences)
	}
	if got.Status.Phase != computev1alpha1.VirtualMachinePending || got.Status.Conditions[0].Reason != "PortNotReady" || !strings.Contains(got.Status.Conditions[0].Message, "web1-net1") {
		t.Errorf("status %+v, want Pending until the port has an address", got.Status)
	}
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods); err != nil || len(pods.Items) != 0 {
		t.Fatalf("pods %d (%v) before the port has an address, want none", len(pods.Items), err)
	}

	port.Status = networkingv1alpha1.PortStatus{FixedIPs: []networkingv1alpha1.FixedIP{{Subnet: "s", IPAddress: "10.0.0.7"}}, MACAddress: "fa:16:3e:11:22:33", Status: "DOWN"}
	if err := c.Status().Update(ctx, port); err != nil {
		t.Fatal(err)
	}
	got = runReconcile(t, c, got)
	pod := &corev1.Pod{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "p1", Name: "vm-web1"}, pod); err != nil {
		t.Fatalf("launcher pod: %v", err)
	}
	if pod.Annotations[networkingv1alpha1.AnnotationPort] != "web1-net1" || pod.Annotations[cni.AnnotationIP] != "" || pod.Annotations[cni.AnnotationMAC] != "" {
		t.Errorf("launcher annotations %v, want the port's and no pod-network address", pod.Annotations)
	}
	if args := strings.Join(pod.Spec.Containers[0].Args, " "); !strings.Contains(args, "mac=fa:16:3e:11:22:33") {
		t.Errorf("launcher args %s, want the port's MAC on the NIC", args)
	}
	if len(got.Status.IPs) != 1 || got.Status.IPs[0] != "10.0.0.7" {
		t.Errorf("VM ips %v, want the port's", got.Status.IPs)
	}
}

func TestReconcileGivenPort(t *testing.T) {
	vm := testVM(computev1alpha1.RunStrategyAlways)
	vm.Spec.Networks = []computev1alpha1.VirtualMachineNetwork{{Port: "mine"}}
	c := fake.NewClientBuilder().WithScheme(schemeWithNetworking(t)).WithObjects(vm, small, debian).WithStatusSubresource(vm).Build()
	if got := runReconcile(t, c, vm); got.Status.Phase != computev1alpha1.VirtualMachineError || got.Status.Conditions[0].Reason != "PortNotFound" {
		t.Errorf("status %+v, want Error with PortNotFound", got.Status)
	}
	taken := &networkingv1alpha1.Port{ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: "p1"}, Spec: networkingv1alpha1.PortSpec{
		Network: "n", Device: &networkingv1alpha1.PortDevice{Kind: "Pod", Name: "web"},
	}}
	c = fake.NewClientBuilder().WithScheme(schemeWithNetworking(t)).WithObjects(vm, small, debian, taken).WithStatusSubresource(vm).Build()
	if got := runReconcile(t, c, vm); got.Status.Phase != computev1alpha1.VirtualMachineError || got.Status.Conditions[0].Reason != "PortInUse" {
		t.Errorf("status %+v, want Error with PortInUse", got.Status)
	}
}

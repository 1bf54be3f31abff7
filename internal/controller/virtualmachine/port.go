package virtualmachine

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/cni"
)

// PodNetwork is the name in spec.networks that means the pod network.
const PodNetwork = "pod"

// PortName is the name of the Port a VM gets on a tenant network.
func PortName(vm, network string) string { return vm + "-" + network }

// wantedPort is the name of the Port vm runs on, and whether the VM makes
// it (a network) or the user did (a port); "" for the pod network.
func wantedPort(vm *computev1alpha1.VirtualMachine) (name string, ours bool) {
	if len(vm.Spec.Networks) == 0 {
		return "", false
	}
	n := vm.Spec.Networks[0]
	switch {
	case n.Port != "":
		return n.Port, false
	case n.Network != "" && n.Network != PodNetwork:
		return PortName(vm.Name, n.Network), true
	}
	return "", false
}

// PortFor is the Port that vm gets on network: owned by the VM, so it
// goes with it, and its address stays across restarts and moves.
func PortFor(vm *computev1alpha1.VirtualMachine, network string) *networkingv1alpha1.Port {
	return &networkingv1alpha1.Port{
		ObjectMeta: metav1.ObjectMeta{
			Name: PortName(vm.Name, network), Namespace: vm.Namespace,
			Labels:          map[string]string{LabelVM: vm.Name},
			OwnerReferences: []metav1.OwnerReference{ownerRef(vm)},
		},
		Spec: networkingv1alpha1.PortSpec{
			Network: network,
			Device:  &networkingv1alpha1.PortDevice{Kind: networkingv1alpha1.DeviceVirtualMachine, Name: vm.Name},
		},
	}
}

// tenantPort returns vm's Port on its tenant network (nil on the pod
// network), creating it for a network entry. waiting says why the VM
// cannot start yet (the port has no address); problem why it cannot at all.
func (r *Reconciler) tenantPort(ctx context.Context, vm *computev1alpha1.VirtualMachine) (port *networkingv1alpha1.Port, waiting string, problem *Problem, err error) {
	name, ours := wantedPort(vm)
	if name == "" {
		return nil, "", nil, nil
	}
	port = &networkingv1alpha1.Port{}
	err = r.Client.Get(ctx, types.NamespacedName{Namespace: vm.Namespace, Name: name}, port)
	switch {
	case apierrors.IsNotFound(err) && ours:
		port = PortFor(vm, vm.Spec.Networks[0].Network)
		if err := r.Client.Create(ctx, port); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, "", nil, fmt.Errorf("create port %s: %w", name, err)
		}
		return port, fmt.Sprintf("waiting for port %s to get an address", name), nil, nil
	case apierrors.IsNotFound(err):
		return nil, "", &Problem{"PortNotFound", fmt.Sprintf("port %s does not exist in namespace %s", name, vm.Namespace)}, nil
	case err != nil:
		return nil, "", nil, err
	}
	if ours && !metav1.IsControlledBy(port, vm) {
		return nil, "", &Problem{"PortNameTaken", fmt.Sprintf("port %s exists and does not belong to this VM; delete or rename it", name)}, nil
	}
	if d := port.Spec.Device; d != nil && !(d.Kind == networkingv1alpha1.DeviceVirtualMachine && d.Name == vm.Name) {
		return nil, "", &Problem{"PortInUse", fmt.Sprintf("port %s is used by %s %s", name, d.Kind, d.Name)}, nil
	}
	if len(port.Status.FixedIPs) == 0 {
		if c := meta.FindStatusCondition(port.Status.Conditions, networkingv1alpha1.ConditionReady); c != nil && c.Status == metav1.ConditionFalse && port.Status.Status == networkingv1alpha1.StatusError {
			return nil, "", &Problem{"PortError", fmt.Sprintf("port %s: %s", name, c.Message)}, nil
		}
		return port, fmt.Sprintf("waiting for port %s to get an address", name), nil, nil
	}
	return port, "", nil, nil
}

// UsePort puts the launcher pod on port instead of the pod network: the
// CNI plugin attaches eth0 to the port (its address and MAC), and the
// guest's NIC takes the port's MAC.
func UsePort(pod *corev1.Pod, port *networkingv1alpha1.Port) {
	delete(pod.Annotations, cni.AnnotationIP)
	delete(pod.Annotations, cni.AnnotationMAC)
	pod.Annotations[networkingv1alpha1.AnnotationPort] = port.Name
	if port.Status.MACAddress == "" {
		return
	}
	args := pod.Spec.Containers[0].Args
	for i, a := range args {
		if i > 0 && args[i-1] == "--nic" && strings.Contains(a, "pod=") {
			parts := strings.Split(a, ",")
			for j, p := range parts {
				if strings.HasPrefix(p, "mac=") {
					parts[j] = "mac=" + port.Status.MACAddress
				}
			}
			args[i] = strings.Join(parts, ",")
		}
	}
}

// portIPs are the addresses of port.
func portIPs(port *networkingv1alpha1.Port) []string {
	var out []string
	for _, f := range port.Status.FixedIPs {
		out = append(out, f.IPAddress)
	}
	return out
}

// vmsOfPort finds the VMs of a port's namespace that run on it.
func (r *Reconciler) vmsOfPort(ctx context.Context, obj client.Object) []reconcile.Request {
	var vms computev1alpha1.VirtualMachineList
	if err := r.Client.List(ctx, &vms, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil
	}
	var out []reconcile.Request
	for i := range vms.Items {
		if name, _ := wantedPort(&vms.Items[i]); name == obj.GetName() {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&vms.Items[i])})
		}
	}
	return out
}

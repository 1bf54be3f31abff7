// Package virtualmachine reconciles VirtualMachines: each becomes a
// launcher pod that runs the VM's QEMU on a node, and the VM's status is
// read back from that pod. The pod spec and the status are pure functions
// of their inputs (launcher.go, status.go); the reconciler (controller.go)
// only fetches, applies and writes.
package virtualmachine

import (
	"encoding/json"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	"github.com/strata-cloud/strata/internal/storage/diskimage"
)

// Labels and annotations on launcher pods.
const (
	// LabelVM names the VirtualMachine a launcher pod runs; Services and
	// NetworkPolicies can select VMs by the VM's own labels, which the pod
	// carries too.
	LabelVM = "compute.strata.io/vm"
	// LabelRole marks launcher pods.
	LabelRole = "compute.strata.io/role"
	// LauncherContainer is the name of the container running QEMU.
	LauncherContainer = "compute"
)

// Size is what a VM runs with, resolved from its flavor or resources.
type Size struct {
	VCPUs     int32
	MemoryMiB int64
	DiskGiB   int64
}

// ResolveSize returns the VM's size from its flavor (nil when it names
// none) or its explicit resources.
func ResolveSize(vm *computev1alpha1.VirtualMachine, flavor *computev1alpha1.Flavor) (Size, error) {
	s := vm.Spec
	switch {
	case s.Resources != nil:
		return Size{VCPUs: s.Resources.VCPUs, MemoryMiB: s.Resources.MemoryMiB, DiskGiB: s.RootDiskGiB}, nil
	case flavor != nil:
		disk := flavor.Spec.DiskGiB
		if s.RootDiskGiB > 0 {
			disk = s.RootDiskGiB
		}
		return Size{VCPUs: flavor.Spec.VCPUs, MemoryMiB: flavor.Spec.RAMMiB, DiskGiB: disk}, nil
	}
	return Size{}, fmt.Errorf("virtual machine %s/%s has neither a flavor nor resources", vm.Namespace, vm.Name)
}

// LauncherOptions are the cluster-wide choices for launcher pods.
type LauncherOptions struct {
	// Image is the launcher image every node builds for itself.
	Image string
	// CPUOvercommit divides a VM's vCPUs into the pod's CPU request, as
	// Nova's cpu_allocation_ratio (KubeVirt requests 1/10 of a CPU per vCPU).
	CPUOvercommit int
	// MemoryOverheadMiB is added to the guest memory for QEMU itself.
	MemoryOverheadMiB int64
	// GracePeriod is how long the guest has to power off when stopped.
	GracePeriod int64
}

// DefaultLauncherOptions are used where a field is zero.
var DefaultLauncherOptions = LauncherOptions{CPUOvercommit: 10, MemoryOverheadMiB: 128, GracePeriod: 60}

// SeedDir is where the launcher finds its spec file (the cloud-init seed's
// contents: user data and public keys), from the VM's seed Secret.
const SeedDir = "/etc/strata-vm"

// SeedSecretName is the name of the Secret with a VM's launcher spec.
func SeedSecretName(vm string) string { return "vm-" + vm + "-seed" }

// SeedSecret holds the launcher's spec file for vm: the NoCloud seed
// (instance ID, hostname, the key pairs' public keys, user data). It is a
// Secret because user data often carries credentials.
func SeedSecret(vm *computev1alpha1.VirtualMachine, publicKeys []string) (*corev1.Secret, error) {
	spec := map[string]any{"cloudInit": map[string]any{
		"instanceID": string(vm.UID),
		"hostname":   vm.Name,
		"publicKeys": publicKeys,
		"userData":   vm.Spec.UserData,
	}}
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: SeedSecretName(vm.Name), Namespace: vm.Namespace,
			Labels:          map[string]string{LabelVM: vm.Name},
			OwnerReferences: []metav1.OwnerReference{ownerRef(vm)},
		},
		Data: map[string][]byte{"spec.json": data},
	}, nil
}

func ownerRef(vm *computev1alpha1.VirtualMachine) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: computev1alpha1.GroupVersion.String(), Kind: "VirtualMachine",
		Name: vm.Name, UID: vm.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}
}

// LauncherPodName is the name of a VM's launcher pod.
func LauncherPodName(vm string) string { return "vm-" + vm }

// Paths inside the launcher container.
const (
	// BaseDir holds the VM image, mounted read-only from its OCI artifact:
	// the node pulls and caches it like any image.
	BaseDir = "/var/lib/strata-vm/base"
	// DisksDir holds the VM's writable disks (the root disk is a qcow2
	// overlay on the base).
	DisksDir = "/var/lib/strata-vm/disks"
)

// LauncherPod is the pod that runs vm with size, booting from the image
// artifact imageRef (an Image's status.reference).
func LauncherPod(vm *computev1alpha1.VirtualMachine, size Size, imageRef string, o LauncherOptions) *corev1.Pod {
	if o.CPUOvercommit <= 0 {
		o.CPUOvercommit = DefaultLauncherOptions.CPUOvercommit
	}
	if o.MemoryOverheadMiB <= 0 {
		o.MemoryOverheadMiB = DefaultLauncherOptions.MemoryOverheadMiB
	}
	if o.GracePeriod <= 0 {
		o.GracePeriod = DefaultLauncherOptions.GracePeriod
	}
	labels := map[string]string{}
	for k, v := range vm.Labels {
		labels[k] = v
	}
	labels[LabelVM] = vm.Name
	labels[LabelRole] = "launcher"
	cpuMilli := max(int64(size.VCPUs)*1000/int64(o.CPUOvercommit), 10)
	memory := resource.MustParse(strconv.FormatInt(size.MemoryMiB+o.MemoryOverheadMiB, 10) + "Mi")
	// The root disk: a qcow2 overlay on the image, created on first start.
	root := "path=" + DisksDir + "/root.qcow2,backing=" + BaseDir + "/" + diskimage.FileName
	if size.DiskGiB > 0 {
		root += ",size=" + strconv.FormatInt(size.DiskGiB, 10) + "G"
	}
	args := []string{
		"--spec", SeedDir + "/spec.json",
		"--name", vm.Name,
		"--vcpus", strconv.Itoa(int(size.VCPUs)),
		"--memory", strconv.FormatInt(size.MemoryMiB, 10),
		"--disk", root,
		// The guest's share of the pod's grace period; QEMU quits after it.
		"--grace-period", strconv.FormatInt(max(o.GracePeriod-10, 5), 10) + "s",
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            LauncherPodName(vm.Name),
			Namespace:       vm.Namespace,
			Labels:          labels,
			OwnerReferences: []metav1.OwnerReference{ownerRef(vm)},
		},
		Spec: corev1.PodSpec{
			// The VM restarts through the controller (runStrategy), not the kubelet.
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To(o.GracePeriod),
			Hostname:                      vm.Name,
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			Volumes: []corev1.Volume{
				{Name: "base", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: imageRef, PullPolicy: corev1.PullIfNotPresent}}},
				{Name: "disks", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "seed", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: SeedSecretName(vm.Name)}}},
			},
			Containers: []corev1.Container{{
				Name:  LauncherContainer,
				Image: o.Image,
				// The serial console: output to the log, input from an
				// attached client (kubectl attach -i; an interactive
				// `strata console` is still to come). A pipe, not a TTY:
				// QEMU runs in its own process group, which a terminal
				// would stop (SIGTTIN) the moment it reads.
				Stdin:           true,
				ImagePullPolicy: corev1.PullNever, // built on every node
				Args:            args,
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{
						corev1.ResourceCPU:    *resource.NewMilliQuantity(cpuMilli, resource.DecimalSI),
						corev1.ResourceMemory: memory,
					},
					Limits: corev1.ResourceList{corev1.ResourceMemory: memory},
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "base", MountPath: BaseDir, ReadOnly: true},
					{Name: "disks", MountPath: DisksDir},
					{Name: "seed", MountPath: SeedDir, ReadOnly: true},
				},
				SecurityContext: &corev1.SecurityContext{
					// The launcher plugs the VM's tap into the pod's interface.
					Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}},
				},
			}},
		},
	}
}

// Package virtualmachine reconciles VirtualMachines: each becomes a
// launcher pod that runs the VM's QEMU on a node, and the VM's status is
// read back from that pod. The pod spec and the status are pure functions
// of their inputs (launcher.go, status.go); the reconciler (controller.go)
// only fetches, applies and writes.
package virtualmachine

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"path"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/cni"
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
	// DiskDir is the directory on every node under which VMs' writable
	// disks live (<DiskDir>/<namespace>/<name>-<uid>), so that they outlive
	// the launcher pod: a stopped VM starts again on the same node with the
	// same disks.
	DiskDir string
	// VolumeDir, when set, is where every node shows its volume
	// directory (the parent of each Volume's directory; the server sets
	// volume.NodeDir, which each node agent bind-mounts): every launcher
	// pod mounts it, so that any VM can have volumes hot-plugged. Empty:
	// only VMs with volumes when their launcher pod is made get it (the
	// volumes' own paths on their node).
	VolumeDir string
}

// DefaultLauncherOptions are used where a field is zero.
var DefaultLauncherOptions = LauncherOptions{CPUOvercommit: 10, MemoryOverheadMiB: 128, GracePeriod: 60, DiskDir: "/var/lib/strata/vm-disks"}

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

// Annotations on launcher pods.
// (The pod network's requested address and MAC are cni.AnnotationIP and
// cni.AnnotationMAC.)
const (
	// AnnotationSize records the size a launcher pod runs the VM with; a
	// VM whose size changes (another flavor) is restarted.
	AnnotationSize = "compute.strata.io/size"
)

// ResourceTun gives the launcher /dev/net/tun (internal/agent/deviceplugin).
const ResourceTun = "devices.strata.io/tun"

// String renders a size for AnnotationSize.
func (s Size) String() string {
	return fmt.Sprintf("%dcpu-%dMi-%dGi", s.VCPUs, s.MemoryMiB, s.DiskGiB)
}

// MAC is the VM's MAC address on its first network, derived from its UID
// so that it never changes: 52:54:00 (QEMU's prefix) and three bytes of
// the UID's hash.
func MAC(vm *computev1alpha1.VirtualMachine) string {
	h := sha256.Sum256([]byte(vm.UID))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}

// DiskDirOf is the directory on node that holds vm's writable disks:
// <DiskDir>/<node>/<namespace>/<name>-<uid>. The node's name is part of it
// so that nodes sharing a filesystem (or a migration's two nodes on one
// test host) never share a VM's disks.
func DiskDirOf(o LauncherOptions, vm *computev1alpha1.VirtualMachine, node string) string {
	return path.Join(o.withDefaults().DiskDir, node, diskSubPath(vm))
}

func diskSubPath(vm *computev1alpha1.VirtualMachine) string {
	return path.Join(vm.Namespace, vm.Name+"-"+string(vm.UID))
}

func (o LauncherOptions) withDefaults() LauncherOptions {
	d := DefaultLauncherOptions
	if o.CPUOvercommit <= 0 {
		o.CPUOvercommit = d.CPUOvercommit
	}
	if o.MemoryOverheadMiB <= 0 {
		o.MemoryOverheadMiB = d.MemoryOverheadMiB
	}
	if o.GracePeriod <= 0 {
		o.GracePeriod = d.GracePeriod
	}
	if o.DiskDir == "" {
		o.DiskDir = d.DiskDir
	}
	return o
}

// LauncherPod is the pod that runs vm with size, booting from the image
// artifact imageRef (an Image's status.reference). A VM that ran before
// (status.nodeName and status.ips set) goes back to its node, where its
// disks are, and asks for its address again.
func LauncherPod(vm *computev1alpha1.VirtualMachine, size Size, imageRef string, o LauncherOptions) *corev1.Pod {
	o = o.withDefaults()
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
		// The pod network: the guest owns the pod's address.
		"--nic", "tap=tap0,pod=eth0,mac=" + MAC(vm),
	}
	annotations := map[string]string{AnnotationSize: size.String(), cni.AnnotationMAC: MAC(vm)}
	if len(vm.Status.IPs) > 0 {
		annotations[cni.AnnotationIP] = vm.Status.IPs[0]
	}
	var affinity *corev1.Affinity
	if vm.Status.NodeName != "" {
		// Its disks are on that node.
		affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{vm.Status.NodeName}}},
			}}},
		}}
	}
	tun := resource.MustParse("1")
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            LauncherPodName(vm.Name),
			Namespace:       vm.Namespace,
			Labels:          labels,
			Annotations:     annotations,
			OwnerReferences: []metav1.OwnerReference{ownerRef(vm)},
		},
		Spec: corev1.PodSpec{
			Affinity: affinity,
			// The VM restarts through the controller (runStrategy), not the kubelet.
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To(o.GracePeriod),
			Hostname:                      vm.Name,
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			Volumes: []corev1.Volume{
				{Name: "base", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: imageRef, PullPolicy: corev1.PullIfNotPresent}}},
				{Name: "disks", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: o.DiskDir, Type: ptr.To(corev1.HostPathDirectoryOrCreate)}}},
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
				Env: []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{
					FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"},
				}}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{
						corev1.ResourceCPU:    *resource.NewMilliQuantity(cpuMilli, resource.DecimalSI),
						corev1.ResourceMemory: memory,
						ResourceTun:           tun,
					},
					Limits: corev1.ResourceList{corev1.ResourceMemory: memory, ResourceTun: tun},
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "base", MountPath: BaseDir, ReadOnly: true},
					// The node's own directory for this VM (see DiskDirOf).
					{Name: "disks", MountPath: DisksDir, SubPathExpr: "$(NODE_NAME)/" + diskSubPath(vm)},
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

// CleanupPodName is the name of the pod that removes a deleted VM's disks.
func CleanupPodName(vm string) string { return "vm-" + vm + "-cleanup" }

// CleanupPod removes vm's disk directory on the node it last ran on: the
// launcher image's "remove-disks" mode, with the namespace's disk
// directory mounted.
func CleanupPod(vm *computev1alpha1.VirtualMachine, o LauncherOptions) *corev1.Pod {
	o = o.withDefaults()
	dir := DiskDirOf(o, vm, vm.Status.NodeName)
	const mnt = "/var/lib/strata-vm/namespace"
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: CleanupPodName(vm.Name), Namespace: vm.Namespace,
			Labels:          map[string]string{LabelVM: vm.Name, LabelRole: "cleanup"},
			OwnerReferences: []metav1.OwnerReference{ownerRef(vm)},
		},
		Spec: corev1.PodSpec{
			NodeName:                     vm.Status.NodeName,
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: ptr.To(false),
			EnableServiceLinks:           ptr.To(false),
			Tolerations:                  []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Volumes: []corev1.Volume{{Name: "disks", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: path.Dir(dir), Type: ptr.To(corev1.HostPathDirectoryOrCreate)},
			}}},
			Containers: []corev1.Container{{
				Name: "cleanup", Image: o.Image, ImagePullPolicy: corev1.PullNever,
				Args:         []string{"remove-disks", path.Join(mnt, path.Base(dir))},
				VolumeMounts: []corev1.VolumeMount{{Name: "disks", MountPath: mnt}},
			}},
		},
	}
}

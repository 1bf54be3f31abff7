package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RunStrategy says when a virtual machine should be running.
// +kubebuilder:validation:Enum=Always;Halted;Manual;RerunOnFailure
type RunStrategy string

const (
	// RunStrategyAlways keeps the VM running: it is started again whenever it stops.
	RunStrategyAlways RunStrategy = "Always"
	// RunStrategyHalted keeps the VM stopped.
	RunStrategyHalted RunStrategy = "Halted"
	// RunStrategyManual leaves starting and stopping to the start/stop actions.
	RunStrategyManual RunStrategy = "Manual"
	// RunStrategyRerunOnFailure restarts the VM when it fails, not when the guest powers off.
	RunStrategyRerunOnFailure RunStrategy = "RerunOnFailure"
)

// VirtualMachineSpec is what a virtual machine should be.
// +kubebuilder:validation:XValidation:rule="has(self.flavor) != has(self.resources)",message="set exactly one of flavor and resources"
// +kubebuilder:validation:XValidation:rule="has(self.image) != has(self.rootVolume)",message="set exactly one of image and rootVolume"
// +kubebuilder:validation:XValidation:rule="!has(self.rootVolume) || !has(self.volumes) || self.volumes.all(v, v.volume != self.rootVolume)",message="the root volume cannot also be in volumes"
type VirtualMachineSpec struct {
	// flavor names the Flavor that gives the VM its CPUs, memory and root
	// disk size. Changing it resizes the VM (a restart).
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Flavor string `json:"flavor,omitempty"`

	// resources sizes the VM explicitly, instead of a flavor.
	// +optional
	Resources *VirtualMachineResources `json:"resources,omitempty"`

	// image names the Image (storage.strata.io) in the VM's namespace that
	// the root disk is created from (a qcow2 overlay on it). Exactly one
	// of image and rootVolume is set.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Image string `json:"image,omitempty"`

	// rootVolume names a Volume (storage.strata.io) in the VM's namespace
	// to boot from instead of an image: the volume itself is the root disk
	// (vda), so what the guest writes stays in the Volume. Typically a
	// Volume made from an Image (spec.source.image). Fixed after creation.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	RootVolume string `json:"rootVolume,omitempty"`

	// volumes are Volumes (storage.strata.io) of the VM's namespace
	// attached as virtio disks after the root disk, in order. Adding one
	// to a running VM hot-plugs it, removing one unplugs it. Every volume
	// must be on the VM's node.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +kubebuilder:validation:XValidation:rule="self.all(v, self.exists_one(w, w.volume == v.volume))",message="a volume can be attached only once"
	Volumes []VirtualMachineVolume `json:"volumes,omitempty"`

	// rootDiskGiB overrides the root disk size; 0 takes the flavor's, or the
	// image's size when that is 0 too.
	// +optional
	// +kubebuilder:validation:Minimum=0
	RootDiskGiB int64 `json:"rootDiskGiB,omitempty"`

	// networks the VM is attached to, in order (eth0 first). Empty means
	// the pod network. One for now: a tenant network (the VM gets a Port
	// named <vm>-<network>, which goes with it) or an existing Port.
	// +optional
	// +kubebuilder:validation:MaxItems=1
	// +listType=atomic
	Networks []VirtualMachineNetwork `json:"networks,omitempty"`

	// userData is passed to cloud-init as user-data (at most 64 KiB, as in Nova).
	// +optional
	// +kubebuilder:validation:MaxLength=65535
	UserData string `json:"userData,omitempty"`

	// keyPairs name KeyPairs in the VM's namespace whose public keys the
	// guest receives (cloud-init public-keys).
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	KeyPairs []string `json:"keyPairs,omitempty"`

	// runStrategy says when the VM runs. Defaults to Always.
	// +optional
	// +kubebuilder:default=Always
	RunStrategy RunStrategy `json:"runStrategy,omitempty"`
}

// VirtualMachineVolume attaches a Volume to a VM.
type VirtualMachineVolume struct {
	// volume names a Volume in the VM's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Volume string `json:"volume"`
}

// VolumeAttachmentPhase is where a volume's attachment to a VM is.
type VolumeAttachmentPhase string

// The phases of a VM's volume.
const (
	VolumeAttaching   VolumeAttachmentPhase = "Attaching"
	VolumeAttached    VolumeAttachmentPhase = "Attached"
	VolumeDetaching   VolumeAttachmentPhase = "Detaching"
	VolumeAttachError VolumeAttachmentPhase = "Error"
)

// VirtualMachineVolumeStatus is one volume of a VM as its launcher has it.
type VirtualMachineVolumeStatus struct {
	// volume names the Volume.
	Volume string `json:"volume"`
	// phase is Attaching, Attached, Detaching or Error.
	Phase VolumeAttachmentPhase `json:"phase"`
	// target is the guest's device name the volume should get (vdc, ...;
	// vda is the root disk, vdb the cloud-init seed). The guest names
	// disks in the order it finds them; the disk's serial is the
	// volume's name (truncated to 20 bytes), in
	// /sys/block/vdX/serial and /dev/disk/by-id/virtio-SERIAL.
	// +optional
	Target string `json:"target,omitempty"`
	// message says what went wrong (Error) or what is awaited.
	// +optional
	Message string `json:"message,omitempty"`
}

// VirtualMachineResources is an explicit VM size.
type VirtualMachineResources struct {
	// vcpus is the number of virtual CPUs.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	VCPUs int32 `json:"vcpus"`

	// memoryMiB is the guest memory in MiB.
	// +required
	// +kubebuilder:validation:Minimum=16
	MemoryMiB int64 `json:"memoryMiB"`
}

// VirtualMachineNetwork attaches the VM to a network, or to a given port
// of one.
// +kubebuilder:validation:XValidation:rule="has(self.network) != has(self.port)",message="set exactly one of network and port"
type VirtualMachineNetwork struct {
	// network names a Network (networking.strata.io) in the VM's namespace;
	// "pod" is the pod network.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Network string `json:"network,omitempty"`

	// port names an existing Port to use, with its addresses.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Port string `json:"port,omitempty"`
}

// VirtualMachinePhase is where a VM is in its life.
type VirtualMachinePhase string

// The phases of a VM.
const (
	VirtualMachinePending      VirtualMachinePhase = "Pending"
	VirtualMachineProvisioning VirtualMachinePhase = "Provisioning"
	VirtualMachineRunning      VirtualMachinePhase = "Running"
	VirtualMachineStopped      VirtualMachinePhase = "Stopped"
	VirtualMachineMigrating    VirtualMachinePhase = "Migrating"
	VirtualMachineError        VirtualMachinePhase = "Error"
)

// VirtualMachineStatus is what the VM controller observes.
type VirtualMachineStatus struct {
	// phase summarises the VM's state.
	// +optional
	Phase VirtualMachinePhase `json:"phase,omitempty"`

	// conditions: Ready (the guest runs), Scheduled, and others as they apply.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// nodeName is the node the VM runs on.
	// +optional
	NodeName string `json:"nodeName,omitempty"`

	// ips are the VM's addresses, first network first.
	// +optional
	// +listType=atomic
	IPs []string `json:"ips,omitempty"`

	// launcherPod is the pod that runs the VM's QEMU.
	// +optional
	LauncherPod string `json:"launcherPod,omitempty"`

	// vcpus and memoryMiB are the size the VM runs with (from its flavor or resources).
	// +optional
	VCPUs int32 `json:"vcpus,omitempty"`
	// +optional
	MemoryMiB int64 `json:"memoryMiB,omitempty"`

	// volumes are the VM's attached volumes (spec.volumes) as its running
	// launcher has them; empty while the VM does not run.
	// +optional
	// +listType=map
	// +listMapKey=volume
	Volumes []VirtualMachineVolumeStatus `json:"volumes,omitempty"`

	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// VirtualMachine is a virtual machine, run by QEMU in a launcher pod on a
// node, scheduled, networked and accounted like any pod.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vm;vms,categories=strata
// +kubebuilder:printcolumn:name="PHASE",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="FLAVOR",type=string,JSONPath=`.spec.flavor`
// +kubebuilder:printcolumn:name="IMAGE",type=string,JSONPath=`.spec.image`
// +kubebuilder:printcolumn:name="IP",type=string,JSONPath=`.status.ips[0]`
// +kubebuilder:printcolumn:name="NODE",type=string,JSONPath=`.status.nodeName`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type VirtualMachine struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// The image rule sits on this field, not on VirtualMachineSpec, so that
	// a VirtualMachinePool's template (which embeds the spec) can change
	// its image: a pool replaces its VMs instead.

	// spec is the VM the user asks for.
	// +required
	// +kubebuilder:validation:XValidation:rule="!has(oldSelf.image) || (has(self.image) && self.image == oldSelf.image)",message="image cannot change: it is the root disk's base; rebuild the VM instead"
	// +kubebuilder:validation:XValidation:rule="has(self.rootVolume) == has(oldSelf.rootVolume) && (!has(self.rootVolume) || self.rootVolume == oldSelf.rootVolume)",message="rootVolume cannot change: it is the root disk; rebuild the VM instead"
	Spec VirtualMachineSpec `json:"spec"`

	// status is what the controller observes.
	// +optional
	Status VirtualMachineStatus `json:"status,omitempty"`
}

// VirtualMachineList is a list of VirtualMachines.
//
// +kubebuilder:object:root=true
type VirtualMachineList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []VirtualMachine `json:"items"`
}

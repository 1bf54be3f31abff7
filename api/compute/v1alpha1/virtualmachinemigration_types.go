package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VirtualMachineMigrationSpec says which VM to move, and optionally where.
type VirtualMachineMigrationSpec struct {
	// vmName names the VirtualMachine, in the migration's namespace, to move
	// while it runs.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="vmName cannot change"
	VMName string `json:"vmName"`

	// targetNode, when set, is the node to move it to; otherwise the
	// scheduler picks one other than the VM's node.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="targetNode cannot change"
	TargetNode string `json:"targetNode,omitempty"`
}

// VirtualMachineMigrationPhase is where a migration is.
type VirtualMachineMigrationPhase string

// The phases of a migration: Pending (checked, target pod created),
// Scheduling (waiting for the target pod), TargetReady (the target QEMU
// waits for the guest), Running (disks and memory moving), then
// Succeeded, Failed or Cancelled.
const (
	MigrationPending     VirtualMachineMigrationPhase = "Pending"
	MigrationScheduling  VirtualMachineMigrationPhase = "Scheduling"
	MigrationTargetReady VirtualMachineMigrationPhase = "TargetReady"
	MigrationRunning     VirtualMachineMigrationPhase = "Running"
	MigrationSucceeded   VirtualMachineMigrationPhase = "Succeeded"
	MigrationFailed      VirtualMachineMigrationPhase = "Failed"
	MigrationCancelled   VirtualMachineMigrationPhase = "Cancelled"
)

// Finished reports whether the phase is final.
func (p VirtualMachineMigrationPhase) Finished() bool {
	return p == MigrationSucceeded || p == MigrationFailed || p == MigrationCancelled
}

// VirtualMachineMigrationProgress is what the source node reports while the
// guest moves.
type VirtualMachineMigrationProgress struct {
	// stage is "mirroring" (the disks) or QEMU's migration status
	// ("setup", "active", "device", "completed", ...).
	// +optional
	Stage string `json:"stage,omitempty"`
	// +optional
	DiskTotalBytes int64 `json:"diskTotalBytes,omitempty"`
	// +optional
	DiskDoneBytes int64 `json:"diskDoneBytes,omitempty"`
	// +optional
	MemoryTotalBytes int64 `json:"memoryTotalBytes,omitempty"`
	// +optional
	MemoryTransferredBytes int64 `json:"memoryTransferredBytes,omitempty"`
	// +optional
	MemoryRemainingBytes int64 `json:"memoryRemainingBytes,omitempty"`
	// passes over guest memory so far.
	// +optional
	Passes int64 `json:"passes,omitempty"`
	// percent is a summary for printing: disks, then memory.
	// +optional
	Percent int32 `json:"percent,omitempty"`
}

// VirtualMachineMigrationStatus is what the controller and the nodes observe.
type VirtualMachineMigrationStatus struct {
	// +optional
	Phase VirtualMachineMigrationPhase `json:"phase,omitempty"`
	// message explains the phase (why it failed, what it waits for).
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	SourceNode string `json:"sourceNode,omitempty"`
	// +optional
	SourcePod string `json:"sourcePod,omitempty"`
	// +optional
	TargetNode string `json:"targetNode,omitempty"`
	// +optional
	TargetPod string `json:"targetPod,omitempty"`
	// vmIP is the address the guest keeps.
	// +optional
	VMIP string `json:"vmIP,omitempty"`
	// +optional
	Progress *VirtualMachineMigrationProgress `json:"progress,omitempty"`
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// downtimeMillis is how long the guest was paused for the switch, as
	// QEMU measured it.
	// +optional
	DowntimeMillis int64 `json:"downtimeMillis,omitempty"`
	// totalMillis is the whole migration, disks and memory, as measured by
	// QEMU for the memory and by the source node for the rest.
	// +optional
	TotalMillis int64 `json:"totalMillis,omitempty"`
}

// VirtualMachineMigration moves a running VM to another node without
// stopping it: its disks and memory are copied while it runs, then it
// resumes on the target with the same IP and MAC. Deleting a migration that
// has not finished cancels it; the VM keeps running on its node.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vmmigration;vmmigrations;vmim,categories=strata
// +kubebuilder:printcolumn:name="PHASE",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="VM",type=string,JSONPath=`.spec.vmName`
// +kubebuilder:printcolumn:name="SOURCE",type=string,JSONPath=`.status.sourceNode`
// +kubebuilder:printcolumn:name="TARGET",type=string,JSONPath=`.status.targetNode`
// +kubebuilder:printcolumn:name="PROGRESS",type=string,JSONPath=`.status.progress.stage`
// +kubebuilder:printcolumn:name="DOWNTIME(MS)",type=integer,JSONPath=`.status.downtimeMillis`,priority=1
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type VirtualMachineMigration struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec VirtualMachineMigrationSpec `json:"spec"`
	// +optional
	Status VirtualMachineMigrationStatus `json:"status,omitempty"`
}

// VirtualMachineMigrationList is a list of VirtualMachineMigrations.
//
// +kubebuilder:object:root=true
type VirtualMachineMigrationList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []VirtualMachineMigration `json:"items"`
}

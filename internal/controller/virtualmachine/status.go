package virtualmachine

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
)

// Condition types of a VirtualMachine.
const (
	ConditionReady     = "Ready"
	ConditionScheduled = "Scheduled"
	// ConditionPaused is True while the guest's CPUs are stopped
	// (`strata vm pause`, which marks the launcher pod AnnotationPaused).
	ConditionPaused = "Paused"
)

// AnnotationPaused on a launcher pod says its guest is paused.
const AnnotationPaused = "compute.strata.io/paused"

// Problem is why a VM cannot be made to run (a missing flavor...), or nil.
type Problem struct {
	Reason, Message string
}

// Status derives a VM's status from its launcher pod (nil when there is
// none), its size and any problem preparing it. Conditions keep their
// transition times when unchanged.
func Status(vm *computev1alpha1.VirtualMachine, pod *corev1.Pod, size Size, problem *Problem) computev1alpha1.VirtualMachineStatus {
	st := computev1alpha1.VirtualMachineStatus{
		Conditions:         append([]metav1.Condition(nil), vm.Status.Conditions...),
		ObservedGeneration: vm.Generation,
		VCPUs:              size.VCPUs,
		MemoryMiB:          size.MemoryMiB,
		// A VM keeps its node (where its disks are) and its address while
		// stopped or restarting; the next launcher pod asks for both.
		NodeName: vm.Status.NodeName,
		IPs:      vm.Status.IPs,
	}
	set := func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: vm.Generation})
	}
	switch {
	case problem != nil:
		st.Phase = computev1alpha1.VirtualMachineError
		set(ConditionReady, false, problem.Reason, problem.Message)
		return st
	case pod == nil:
		if vm.Spec.RunStrategy == computev1alpha1.RunStrategyHalted {
			st.Phase = computev1alpha1.VirtualMachineStopped
			set(ConditionReady, false, "Halted", "runStrategy is Halted")
		} else {
			st.Phase = computev1alpha1.VirtualMachinePending
			set(ConditionReady, false, "Creating", "creating the launcher pod")
		}
		return st
	}
	st.LauncherPod = pod.Name
	if pod.Spec.NodeName != "" {
		st.NodeName = pod.Spec.NodeName
	}
	if len(pod.Status.PodIPs) > 0 {
		st.IPs = nil
		for _, ip := range pod.Status.PodIPs {
			st.IPs = append(st.IPs, ip.IP)
		}
	}
	scheduled := podCondition(pod, corev1.PodScheduled)
	if scheduled != nil && scheduled.Status == corev1.ConditionFalse {
		set(ConditionScheduled, false, scheduled.Reason, scheduled.Message)
	} else if pod.Spec.NodeName != "" {
		set(ConditionScheduled, true, "Scheduled", "on node "+pod.Spec.NodeName)
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded:
		st.Phase = computev1alpha1.VirtualMachineStopped
		set(ConditionReady, false, "Stopped", "the guest powered off")
	case corev1.PodFailed:
		st.Phase = computev1alpha1.VirtualMachineError
		set(ConditionReady, false, "LauncherFailed", terminationMessage(pod))
	case corev1.PodRunning:
		if ready := podCondition(pod, corev1.ContainersReady); ready != nil && ready.Status == corev1.ConditionTrue {
			st.Phase = computev1alpha1.VirtualMachineRunning
			set(ConditionReady, true, "Running", "the guest is running")
			if pod.Annotations[AnnotationPaused] == "true" {
				set(ConditionPaused, true, "PausedByUser", "the guest's CPUs are stopped (strata vm unpause resumes them)")
			} else if meta.FindStatusCondition(st.Conditions, ConditionPaused) != nil {
				set(ConditionPaused, false, "Running", "")
			}
		} else {
			st.Phase = computev1alpha1.VirtualMachineProvisioning
			set(ConditionReady, false, "Booting", "the launcher is starting the guest")
		}
	default:
		if pod.Spec.NodeName == "" {
			st.Phase = computev1alpha1.VirtualMachinePending
			if scheduled != nil && scheduled.Reason == corev1.PodReasonUnschedulable {
				// Larger than any node's free room, or no node at all: say
				// which (the scheduler's reasons), until that changes.
				set(ConditionReady, false, "Unschedulable", "no node can run this VM now: "+scheduled.Message)
			} else {
				set(ConditionReady, false, "Unscheduled", "waiting for a node")
			}
		} else {
			st.Phase = computev1alpha1.VirtualMachineProvisioning
			set(ConditionReady, false, "Provisioning", waitingMessage(pod))
		}
	}
	return st
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

func terminationMessage(pod *corev1.Pod) string {
	for _, c := range pod.Status.ContainerStatuses {
		if t := c.State.Terminated; t != nil {
			msg := t.Reason
			if t.Message != "" {
				msg += ": " + t.Message
			}
			return msg
		}
	}
	return "the launcher pod failed"
}

func waitingMessage(pod *corev1.Pod) string {
	for _, c := range pod.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil && w.Reason != "" {
			if w.Message != "" {
				return w.Reason + ": " + w.Message
			}
			return w.Reason
		}
	}
	return "the launcher pod is starting"
}

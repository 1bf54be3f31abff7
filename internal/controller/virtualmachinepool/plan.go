// Package virtualmachinepool is the controller of VirtualMachinePools: it
// keeps spec.replicas VMs of the pool's template, records each template
// as a ControllerRevision, and rolls VMs to a new template within the
// strategy's maxUnavailable and maxSurge, as the Deployment controller
// does with pods.
//
// The decisions are pure functions (Limits, Plan, Status, the revision
// helpers) over the pool and its VMs; the Reconciler only reads, applies
// and records.
package virtualmachinepool

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/virtualmachine"
)

// Defaults of a pool whose API defaults were not applied (a client-side
// object, or a strategy without rollingUpdate).
var (
	defaultMaxUnavailable = intstr.FromInt32(1)
	defaultMaxSurge       = intstr.FromInt32(0)
)

// Replicas is the pool's desired VM count (spec.replicas, default 1).
func Replicas(pool *computev1alpha1.VirtualMachinePool) int {
	if pool.Spec.Replicas == nil {
		return 1
	}
	return int(*pool.Spec.Replicas)
}

// Limits resolves the rolling update's maxSurge and maxUnavailable against
// the replicas as Deployment does: a surge percentage rounds up, an
// unavailable one down, and when both come to 0 one VM may be unavailable
// (so a rollout can always progress).
func Limits(pool *computev1alpha1.VirtualMachinePool) (surge, unavailable int, err error) {
	maxSurge, maxUnavailable := &defaultMaxSurge, &defaultMaxUnavailable
	if ru := pool.Spec.Strategy.RollingUpdate; ru != nil {
		if ru.MaxSurge != nil {
			maxSurge = ru.MaxSurge
		}
		if ru.MaxUnavailable != nil {
			maxUnavailable = ru.MaxUnavailable
		}
	}
	replicas := Replicas(pool)
	if surge, err = intstr.GetScaledValueFromIntOrPercent(maxSurge, replicas, true); err != nil {
		return 0, 0, fmt.Errorf("maxSurge: %w", err)
	}
	if unavailable, err = intstr.GetScaledValueFromIntOrPercent(maxUnavailable, replicas, false); err != nil {
		return 0, 0, fmt.Errorf("maxUnavailable: %w", err)
	}
	if surge < 0 || unavailable < 0 {
		return 0, 0, fmt.Errorf("maxSurge %s and maxUnavailable %s must not be negative", maxSurge, maxUnavailable)
	}
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return surge, unavailable, nil
}

// TemplateHash names a template revision: a short, label-safe hash of its
// JSON, like a pod's pod-template-hash.
func TemplateHash(t *computev1alpha1.VirtualMachineTemplate) string {
	data, err := json.Marshal(t)
	if err != nil {
		panic(fmt.Sprintf("marshal VM template: %v", err)) // plain data: cannot fail
	}
	h := fnv.New32a()
	h.Write(data)
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// Ready reports whether a VM's Ready condition is True.
func Ready(vm *computev1alpha1.VirtualMachine) bool {
	return meta.IsStatusConditionTrue(vm.Status.Conditions, virtualmachine.ConditionReady)
}

// Changes is one step towards the desired VMs: how many VMs of the update
// revision to create, and which VMs to delete.
type Changes struct {
	Create int
	Delete []*computev1alpha1.VirtualMachine
}

// Plan is the next step for a pool of replicas VMs, given its live VMs
// (owned by it, not being deleted), the update revision's hash and the
// resolved limits. It follows the Deployment controller's rolling update:
//
//   - with only update-revision VMs, it scales to replicas, deleting
//     not-ready and then newest VMs first;
//   - otherwise it first removes VMs beyond replicas+surge (old ones
//     first), then creates update-revision VMs up to replicas+surge, then
//     deletes old VMs: not-ready ones as far as the total may drop
//     (replicas-unavailable plus the update VMs not yet ready), ready ones
//     as far as the ready count may drop (to replicas-unavailable).
//
// So with maxSurge 0 and maxUnavailable 1, a rollout deletes one old VM,
// creates one new one, waits until it is Ready, and goes on.
func Plan(replicas, surge, unavailable int, updateHash string, vms []*computev1alpha1.VirtualMachine) Changes {
	var updated, old []*computev1alpha1.VirtualMachine
	for _, vm := range vms {
		if vm.Labels[computev1alpha1.PoolRevisionLabel] == updateHash {
			updated = append(updated, vm)
		} else {
			old = append(old, vm)
		}
	}
	rankForDeletion(updated)
	rankForDeletion(old)
	total := len(vms)

	if len(old) == 0 { // scaling
		if len(updated) > replicas {
			return Changes{Delete: updated[:len(updated)-replicas]}
		}
		return Changes{Create: replicas - len(updated)}
	}
	if excess := total - (replicas + surge); excess > 0 {
		return Changes{Delete: append(old, updated...)[:excess]}
	}
	if len(updated) > replicas {
		return Changes{Delete: updated[:len(updated)-replicas]}
	}
	if create := min(replicas+surge-total, replicas-len(updated)); create > 0 {
		return Changes{Create: create}
	}

	minAvailable := replicas - unavailable
	updatedUnready := len(updated) - countReady(updated)
	var del []*computev1alpha1.VirtualMachine
	for _, vm := range old {
		if !Ready(vm) && len(del) < total-minAvailable-updatedUnready {
			del = append(del, vm)
		}
	}
	ready := countReady(vms)
	for _, vm := range old {
		if Ready(vm) && ready > minAvailable {
			del = append(del, vm)
			ready--
		}
	}
	return Changes{Delete: del}
}

func countReady(vms []*computev1alpha1.VirtualMachine) int {
	n := 0
	for _, vm := range vms {
		if Ready(vm) {
			n++
		}
	}
	return n
}

// rankForDeletion orders VMs best-to-delete first: not ready before ready,
// newer before older (as a ReplicaSet picks pods), then by name.
func rankForDeletion(vms []*computev1alpha1.VirtualMachine) {
	slices.SortStableFunc(vms, func(a, b *computev1alpha1.VirtualMachine) int {
		if ra, rb := Ready(a), Ready(b); ra != rb {
			if rb {
				return -1
			}
			return 1
		}
		if c := b.CreationTimestamp.Compare(a.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
}

// NewVM is a VM of the pool's template at the given revision hash, named
// POOL-<5 random characters> by the API server, controlled by the pool.
func NewVM(pool *computev1alpha1.VirtualMachinePool, hash string) *computev1alpha1.VirtualMachine {
	t := pool.Spec.Template.DeepCopy()
	labels := t.Metadata.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	labels[computev1alpha1.PoolLabel] = pool.Name
	labels[computev1alpha1.PoolRevisionLabel] = hash
	return &computev1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    pool.Name + "-",
			Namespace:       pool.Namespace,
			Labels:          labels,
			Annotations:     t.Metadata.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(pool, computev1alpha1.GroupVersion.WithKind("VirtualMachinePool"))},
		},
		Spec: t.Spec,
	}
}

// Problem is why a pool cannot be reconciled (an invalid selector...).
type Problem struct {
	Reason, Message string
}

// Status derives a pool's status from its live VMs and revisions.
// Conditions keep their transition times when unchanged.
func Status(pool *computev1alpha1.VirtualMachinePool, vms []*computev1alpha1.VirtualMachine, updateRevision string, updateHash string, unavailable int, problem *Problem) computev1alpha1.VirtualMachinePoolStatus {
	replicas := Replicas(pool)
	st := computev1alpha1.VirtualMachinePoolStatus{
		Replicas:           int32(len(vms)),
		ObservedGeneration: pool.Generation,
		CurrentRevision:    pool.Status.CurrentRevision,
		UpdateRevision:     updateRevision,
		Conditions:         append([]metav1.Condition(nil), pool.Status.Conditions...),
		Selector:           metav1.FormatLabelSelector(pool.Spec.Selector),
	}
	for _, vm := range vms {
		if vm.Labels[computev1alpha1.PoolRevisionLabel] == updateHash {
			st.UpdatedReplicas++
		}
		if Ready(vm) {
			st.ReadyReplicas++
		}
	}
	st.AvailableReplicas = st.ReadyReplicas
	set := func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: pool.Generation})
	}
	if problem != nil {
		set(computev1alpha1.PoolProgressing, false, problem.Reason, problem.Message)
		return st
	}
	allUpdated := int(st.UpdatedReplicas) == replicas && len(vms) == replicas
	if allUpdated {
		st.CurrentRevision = updateRevision
	}
	if int(st.AvailableReplicas) >= replicas-unavailable {
		set(computev1alpha1.PoolAvailable, true, "MinimumReplicasAvailable", "the pool has minimum availability")
	} else {
		set(computev1alpha1.PoolAvailable, false, "MinimumReplicasUnavailable",
			fmt.Sprintf("%d of %d VMs are ready; the pool needs at least %d", st.AvailableReplicas, replicas, replicas-unavailable))
	}
	switch {
	case allUpdated && int(st.AvailableReplicas) == replicas:
		set(computev1alpha1.PoolProgressing, true, "NewRevisionAvailable", fmt.Sprintf("revision %s is rolled out: %d VMs ready", updateRevision, replicas))
	case int(st.UpdatedReplicas) < len(vms):
		set(computev1alpha1.PoolProgressing, true, "RollingUpdate",
			fmt.Sprintf("rolling out revision %s: %d of %d VMs updated, %d ready", updateRevision, st.UpdatedReplicas, replicas, st.ReadyReplicas))
	default:
		set(computev1alpha1.PoolProgressing, true, "Scaling",
			fmt.Sprintf("scaling to %d VMs: %d exist, %d ready", replicas, len(vms), st.ReadyReplicas))
	}
	return st
}

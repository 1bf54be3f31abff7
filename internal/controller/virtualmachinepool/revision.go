package virtualmachinepool

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
)

// Each template a pool has had is an apps/v1 ControllerRevision owned by
// the pool, named POOL-HASH, labelled with the pool and the hash, whose
// data is the template's JSON and whose revision number grows with each
// rollout (a rollback to an old template renumbers its revision, as a
// Deployment does with its ReplicaSets).

// RevisionName is the name of the ControllerRevision of a template hash.
func RevisionName(pool, hash string) string { return pool + "-" + hash }

// NewRevision is the ControllerRevision recording the pool's template.
func NewRevision(pool *computev1alpha1.VirtualMachinePool, hash string, number int64) (*appsv1.ControllerRevision, error) {
	data, err := json.Marshal(pool.Spec.Template)
	if err != nil {
		return nil, err
	}
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name:      RevisionName(pool.Name, hash),
			Namespace: pool.Namespace,
			Labels: map[string]string{
				computev1alpha1.PoolLabel:         pool.Name,
				computev1alpha1.PoolRevisionLabel: hash,
			},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(pool, computev1alpha1.GroupVersion.WithKind("VirtualMachinePool"))},
		},
		Data:     runtime.RawExtension{Raw: data},
		Revision: number,
	}, nil
}

// Template decodes the template a ControllerRevision records.
func Template(rev *appsv1.ControllerRevision) (*computev1alpha1.VirtualMachineTemplate, error) {
	t := &computev1alpha1.VirtualMachineTemplate{}
	if err := json.Unmarshal(rev.Data.Raw, t); err != nil {
		return nil, fmt.Errorf("controllerrevision %s holds no VM template: %w", rev.Name, err)
	}
	return t, nil
}

// SortRevisions orders revisions by number, oldest first.
func SortRevisions(revs []*appsv1.ControllerRevision) {
	slices.SortFunc(revs, func(a, b *appsv1.ControllerRevision) int {
		if c := cmp.Compare(a.Revision, b.Revision); c != 0 {
			return c
		}
		return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
	})
}

// LatestRevision is the highest revision number, 0 with none.
func LatestRevision(revs []*appsv1.ControllerRevision) int64 {
	var n int64
	for _, r := range revs {
		n = max(n, r.Revision)
	}
	return n
}

// PreviousRevision is the newest revision whose template differs from
// current's hash (what a rollback returns to), or nil.
func PreviousRevision(revs []*appsv1.ControllerRevision, currentHash string) *appsv1.ControllerRevision {
	var prev *appsv1.ControllerRevision
	for _, r := range revs {
		if r.Labels[computev1alpha1.PoolRevisionLabel] != currentHash && (prev == nil || r.Revision > prev.Revision) {
			prev = r
		}
	}
	return prev
}

// RevisionsToPrune are the oldest revisions beyond the history limit,
// never the update revision nor one that live VMs still run.
func RevisionsToPrune(revs []*appsv1.ControllerRevision, limit int, updateHash string, vms []*computev1alpha1.VirtualMachine) []*appsv1.ControllerRevision {
	inUse := map[string]bool{updateHash: true}
	for _, vm := range vms {
		inUse[vm.Labels[computev1alpha1.PoolRevisionLabel]] = true
	}
	var history []*appsv1.ControllerRevision
	for _, r := range revs {
		if !inUse[r.Labels[computev1alpha1.PoolRevisionLabel]] {
			history = append(history, r)
		}
	}
	if len(history) <= limit {
		return nil
	}
	history = slices.Clone(history)
	SortRevisions(history)
	return history[:len(history)-limit]
}

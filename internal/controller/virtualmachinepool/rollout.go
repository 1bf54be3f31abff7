package virtualmachinepool

import (
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
)

// What `strata vmpool rollback` and `strata vmpool status` decide, kept
// here with the controller's view of revisions and status.

// RollbackTarget picks the revision to roll back to: toRevision, or (0)
// the newest one with another template than current's.
func RollbackTarget(revs []*appsv1.ControllerRevision, currentHash string, toRevision int64) (*appsv1.ControllerRevision, error) {
	if toRevision == 0 {
		if prev := PreviousRevision(revs, currentHash); prev != nil {
			return prev, nil
		}
		return nil, errors.New("no rollout history found: the pool has had no other template")
	}
	for _, r := range revs {
		if r.Revision == toRevision {
			return r, nil
		}
	}
	return nil, fmt.Errorf("unable to find specified revision %d in history (strata vmpool history lists them)", toRevision)
}

// RolloutStatus describes a pool's rollout as kubectl rollout status does
// a Deployment's; done when it has completed; an error when it cannot.
func RolloutStatus(pool *computev1alpha1.VirtualMachinePool) (msg string, done bool, err error) {
	if pool.Generation > pool.Status.ObservedGeneration {
		return "Waiting for virtualmachinepool spec update to be observed...", false, nil
	}
	if c := meta.FindStatusCondition(pool.Status.Conditions, computev1alpha1.PoolProgressing); c != nil && c.Status == metav1.ConditionFalse {
		return "", false, fmt.Errorf("virtualmachinepool %q cannot roll out: %s: %s", pool.Name, c.Reason, c.Message)
	}
	st, replicas := pool.Status, int32(Replicas(pool))
	switch {
	case st.UpdatedReplicas < replicas:
		return fmt.Sprintf("Waiting for virtualmachinepool %q rollout to finish: %d out of %d new VMs have been updated...", pool.Name, st.UpdatedReplicas, replicas), false, nil
	case st.Replicas > st.UpdatedReplicas:
		return fmt.Sprintf("Waiting for virtualmachinepool %q rollout to finish: %d old VMs are pending termination...", pool.Name, st.Replicas-st.UpdatedReplicas), false, nil
	case st.AvailableReplicas < st.UpdatedReplicas:
		return fmt.Sprintf("Waiting for virtualmachinepool %q rollout to finish: %d of %d updated VMs are available...", pool.Name, st.AvailableReplicas, st.UpdatedReplicas), false, nil
	}
	return fmt.Sprintf("virtualmachinepool %q successfully rolled out", pool.Name), true, nil
}

package virtualmachinepool

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
)

func TestRollbackTarget(t *testing.T) {
	revs := []*appsv1.ControllerRevision{revision("a", 1), revision("b", 2), revision("c", 3)}
	for _, c := range []struct {
		name    string
		current string
		to      int64
		want    string
		err     string
	}{
		{name: "previous", current: "c", want: "web-b"},
		{name: "previous after a rollback", current: "a", want: "web-c"},
		{name: "a given revision", current: "c", to: 1, want: "web-a"},
		{name: "the current one", current: "c", to: 3, want: "web-c"},
		{name: "no such revision", current: "c", to: 7, err: "unable to find specified revision 7"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := RollbackTarget(revs, c.current, c.to)
			switch {
			case c.err != "":
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Errorf("err %v, want %q", err, c.err)
				}
			case err != nil || got.Name != c.want:
				t.Errorf("RollbackTarget = %v, %v; want %s", got, err, c.want)
			}
		})
	}
	if _, err := RollbackTarget(revs[:1], "a", 0); err == nil || !strings.Contains(err.Error(), "no rollout history") {
		t.Errorf("rollback with one revision: %v", err)
	}
}

func TestRolloutStatus(t *testing.T) {
	pool := func(gen, observed int64, replicas, updated, available int32, conds ...metav1.Condition) *computev1alpha1.VirtualMachinePool {
		p := testPool(3, "debian")
		p.Generation = gen
		p.Status = computev1alpha1.VirtualMachinePoolStatus{ObservedGeneration: observed, Replicas: replicas, UpdatedReplicas: updated, AvailableReplicas: available, Conditions: conds}
		return p
	}
	for _, c := range []struct {
		name string
		pool *computev1alpha1.VirtualMachinePool
		want string
		done bool
		err  string
	}{
		{name: "unobserved", pool: pool(2, 1, 3, 3, 3), want: "spec update to be observed"},
		{name: "updating", pool: pool(2, 2, 3, 1, 2), want: "1 out of 3 new VMs have been updated"},
		{name: "old pending", pool: pool(2, 2, 4, 3, 3), want: "1 old VMs are pending termination"},
		{name: "booting", pool: pool(2, 2, 3, 3, 2), want: "2 of 3 updated VMs are available"},
		{name: "done", pool: pool(2, 2, 3, 3, 3), want: `virtualmachinepool "web" successfully rolled out`, done: true},
		{name: "stuck", pool: pool(2, 2, 0, 0, 0, metav1.Condition{Type: "Progressing", Status: metav1.ConditionFalse, Reason: "InvalidSelector", Message: "no"}), err: "cannot roll out: InvalidSelector: no"},
	} {
		t.Run(c.name, func(t *testing.T) {
			msg, done, err := RolloutStatus(c.pool)
			switch {
			case c.err != "":
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Errorf("err %v, want %q", err, c.err)
				}
			case err != nil || !strings.Contains(msg, c.want) || done != c.done:
				t.Errorf("RolloutStatus = %q, %v, %v; want %q, %v", msg, done, err, c.want, c.done)
			}
		})
	}
}

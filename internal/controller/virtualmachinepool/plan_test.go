package virtualmachinepool

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
)

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// poolVM is a VM of revision hash, created age seconds after epoch.
func poolVM(name, hash string, ready bool, age int) *computev1alpha1.VirtualMachine {
	vm := &computev1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{
		Name: name, UID: types.UID("uid-" + name),
		Labels:            map[string]string{computev1alpha1.PoolRevisionLabel: hash},
		CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Second)),
	}}
	setReady(vm, ready)
	return vm
}

func setReady(vm *computev1alpha1.VirtualMachine, ready bool) {
	status := metav1.ConditionFalse
	if ready {
		status = metav1.ConditionTrue
	}
	vm.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: status, Reason: "Test"}}
}

func names(vms []*computev1alpha1.VirtualMachine) string {
	var out []string
	for _, vm := range vms {
		out = append(out, vm.Name)
	}
	return strings.Join(out, ",")
}

func TestPlan(t *testing.T) {
	for _, c := range []struct {
		name                  string
		replicas, surge, unav int
		vms                   []*computev1alpha1.VirtualMachine
		create                int
		del                   string
	}{
		{name: "create from nothing", replicas: 3, unav: 1, create: 3},
		{name: "steady", replicas: 2, unav: 1, vms: []*computev1alpha1.VirtualMachine{poolVM("a", "new", true, 1), poolVM("b", "new", false, 2)}},
		{name: "scale up", replicas: 4, unav: 1, vms: []*computev1alpha1.VirtualMachine{poolVM("a", "new", true, 1), poolVM("b", "new", false, 2)}, create: 2},
		{
			name: "scale down removes not-ready then newest", replicas: 1, unav: 1,
			vms: []*computev1alpha1.VirtualMachine{poolVM("a", "new", true, 1), poolVM("b", "new", true, 2), poolVM("c", "new", false, 0)},
			del: "c,b",
		},
		{name: "scale to zero", replicas: 0, unav: 1, vms: []*computev1alpha1.VirtualMachine{poolVM("a", "new", true, 1), poolVM("o", "old", true, 0)}, del: "o,a"},
		{
			name: "rollout starts by deleting one ready old VM", replicas: 3, unav: 1,
			vms: []*computev1alpha1.VirtualMachine{poolVM("o1", "old", true, 1), poolVM("o2", "old", true, 2), poolVM("o3", "old", true, 3)},
			del: "o3",
		},
		{
			name: "then creates its replacement", replicas: 3, unav: 1,
			vms:    []*computev1alpha1.VirtualMachine{poolVM("o1", "old", true, 1), poolVM("o2", "old", true, 2)},
			create: 1,
		},
		{
			name: "then waits for it to be ready", replicas: 3, unav: 1,
			vms: []*computev1alpha1.VirtualMachine{poolVM("o1", "old", true, 1), poolVM("o2", "old", true, 2), poolVM("n1", "new", false, 4)},
		},
		{
			name: "and goes on when it is", replicas: 3, unav: 1,
			vms: []*computev1alpha1.VirtualMachine{poolVM("o1", "old", true, 1), poolVM("o2", "old", true, 2), poolVM("n1", "new", true, 4)},
			del: "o2",
		},
		{
			name: "no VM ever ready: one old VM replaced, no more", replicas: 3, unav: 1,
			vms: []*computev1alpha1.VirtualMachine{poolVM("o1", "old", false, 1), poolVM("o2", "old", false, 2), poolVM("o3", "old", false, 3)},
			del: "o3",
		},
		{
			name: "no VM ever ready: stuck with one new VM", replicas: 3, unav: 1,
			vms: []*computev1alpha1.VirtualMachine{poolVM("o1", "old", false, 1), poolVM("o2", "old", false, 2), poolVM("n1", "new", false, 4)},
		},
		{
			name: "unready old VMs go before ready ones", replicas: 3, unav: 1,
			vms: []*computev1alpha1.VirtualMachine{poolVM("o1", "old", true, 1), poolVM("o2", "old", false, 2), poolVM("o3", "old", true, 3)},
			del: "o2",
		},
		{
			name: "surge creates first", replicas: 3, surge: 1,
			vms:    []*computev1alpha1.VirtualMachine{poolVM("o1", "old", true, 1), poolVM("o2", "old", true, 2), poolVM("o3", "old", true, 3)},
			create: 1,
		},
		{
			name: "surge waits for the new VM", replicas: 3, surge: 1,
			vms: []*computev1alpha1.VirtualMachine{poolVM("o1", "old", true, 1), poolVM("o2", "old", true, 2), poolVM("o3", "old", true, 3), poolVM("n1", "new", false, 4)},
		},
		{
			name: "surge deletes an old VM once the new one is ready", replicas: 3, surge: 1,
			vms: []*computev1alpha1.VirtualMachine{poolVM("o1", "old", true, 1), poolVM("o2", "old", true, 2), poolVM("o3", "old", true, 3), poolVM("n1", "new", true, 4)},
			del: "o3",
		},
		{
			name: "scale down during a rollout removes old VMs first", replicas: 2, unav: 1,
			vms: []*computev1alpha1.VirtualMachine{poolVM("o1", "old", true, 1), poolVM("o2", "old", true, 2), poolVM("n1", "new", false, 4)},
			del: "o2",
		},
		{
			name: "too many new VMs during a rollout", replicas: 1, surge: 2, unav: 1,
			vms: []*computev1alpha1.VirtualMachine{poolVM("o1", "old", true, 1), poolVM("n1", "new", true, 3), poolVM("n2", "new", false, 4)},
			del: "n2",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Plan(c.replicas, c.surge, c.unav, "new", c.vms)
			if got.Create != c.create || names(got.Delete) != c.del {
				t.Errorf("Plan = create %d, delete [%s]; want create %d, delete [%s]", got.Create, names(got.Delete), c.create, c.del)
			}
		})
	}
}

// TestPlanRollsOut runs whole rollouts, with every new VM becoming ready
// one step after it is made, and checks the limits hold at every step.
func TestPlanRollsOut(t *testing.T) {
	for _, c := range []struct{ replicas, surge, unav int }{
		{3, 0, 1}, {3, 1, 0}, {5, 2, 2}, {1, 0, 1}, {4, 1, 1},
	} {
		t.Run(fmt.Sprintf("replicas=%d,surge=%d,unavailable=%d", c.replicas, c.surge, c.unav), func(t *testing.T) {
			var vms []*computev1alpha1.VirtualMachine
			for i := range c.replicas {
				vms = append(vms, poolVM(fmt.Sprintf("old%d", i), "old", true, i))
			}
			serial := 0
			for step := 0; ; step++ {
				if step > 100 {
					t.Fatalf("no end after 100 steps: %d VMs", len(vms))
				}
				for _, vm := range vms { // what was made last step has booted
					setReady(vm, true)
				}
				ch := Plan(c.replicas, c.surge, c.unav, "new", vms)
				if ch.Create == 0 && len(ch.Delete) == 0 {
					break
				}
				vms = slices.DeleteFunc(vms, func(vm *computev1alpha1.VirtualMachine) bool { return slices.Contains(ch.Delete, vm) })
				if ready := countReady(vms); ready < c.replicas-c.unav {
					t.Fatalf("step %d: %d VMs ready, fewer than %d", step, ready, c.replicas-c.unav)
				}
				for range ch.Create {
					serial++
					vms = append(vms, poolVM(fmt.Sprintf("new%d", serial), "new", false, 100+serial))
				}
				if len(vms) > c.replicas+c.surge {
					t.Fatalf("step %d: %d VMs, more than %d", step, len(vms), c.replicas+c.surge)
				}
			}
			for _, vm := range vms {
				if vm.Labels[computev1alpha1.PoolRevisionLabel] != "new" {
					t.Errorf("%s still on the old revision at the end", vm.Name)
				}
			}
			if len(vms) != c.replicas {
				t.Errorf("%d VMs at the end, want %d", len(vms), c.replicas)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	pool := func(replicas int32, ru *computev1alpha1.RollingUpdateVirtualMachinePool) *computev1alpha1.VirtualMachinePool {
		return &computev1alpha1.VirtualMachinePool{Spec: computev1alpha1.VirtualMachinePoolSpec{
			Replicas: &replicas,
			Strategy: computev1alpha1.VirtualMachinePoolStrategy{RollingUpdate: ru},
		}}
	}
	pct := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	num := func(n int32) *intstr.IntOrString { v := intstr.FromInt32(n); return &v }
	for _, c := range []struct {
		name        string
		pool        *computev1alpha1.VirtualMachinePool
		surge, unav int
		err         string
	}{
		{name: "defaults", pool: pool(3, nil), surge: 0, unav: 1},
		{name: "percentages round like Deployment", pool: pool(10, &computev1alpha1.RollingUpdateVirtualMachinePool{MaxSurge: pct("25%"), MaxUnavailable: pct("25%")}), surge: 3, unav: 2},
		{name: "both zero lets one go", pool: pool(3, &computev1alpha1.RollingUpdateVirtualMachinePool{MaxSurge: num(0), MaxUnavailable: pct("10%")}), surge: 0, unav: 1},
		{name: "bad percentage", pool: pool(3, &computev1alpha1.RollingUpdateVirtualMachinePool{MaxSurge: pct("lots")}), err: "maxSurge"},
	} {
		t.Run(c.name, func(t *testing.T) {
			surge, unav, err := Limits(c.pool)
			switch {
			case c.err != "":
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Errorf("err %v, want one naming %s", err, c.err)
				}
			case err != nil:
				t.Errorf("err %v", err)
			case surge != c.surge || unav != c.unav:
				t.Errorf("surge %d unavailable %d, want %d %d", surge, unav, c.surge, c.unav)
			}
		})
	}
}

func TestTemplateHash(t *testing.T) {
	a := &computev1alpha1.VirtualMachineTemplate{Spec: computev1alpha1.VirtualMachineSpec{Flavor: "m1", Image: "debian"}}
	b := a.DeepCopy()
	if TemplateHash(a) != TemplateHash(b) {
		t.Error("equal templates hash differently")
	}
	b.Spec.Image = "ubuntu"
	if TemplateHash(a) == TemplateHash(b) {
		t.Error("a new image keeps the hash")
	}
	if h := TemplateHash(a); len(h) == 0 || len(h) > 10 || strings.ToLower(h) != h {
		t.Errorf("hash %q is not a short lowercase label value", h)
	}
}

func revision(hash string, n int64) *appsv1.ControllerRevision {
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: RevisionName("web", hash), Labels: map[string]string{computev1alpha1.PoolRevisionLabel: hash}},
		Revision:   n,
	}
}

func TestRevisions(t *testing.T) {
	revs := []*appsv1.ControllerRevision{revision("c", 3), revision("a", 1), revision("d", 4), revision("b", 2)}
	if got := LatestRevision(revs); got != 4 {
		t.Errorf("LatestRevision = %d, want 4", got)
	}
	if got := PreviousRevision(revs, "d"); got == nil || got.Name != "web-c" {
		t.Errorf("PreviousRevision = %v, want web-c", got)
	}
	if got := PreviousRevision(revs[2:3], "d"); got != nil {
		t.Errorf("PreviousRevision with one revision = %s, want none", got.Name)
	}
	// Keep 1 of history; d is the update revision, a still runs a VM.
	prune := RevisionsToPrune(revs, 1, "d", []*computev1alpha1.VirtualMachine{poolVM("x", "a", true, 0)})
	if len(prune) != 1 || prune[0].Name != "web-b" {
		t.Errorf("RevisionsToPrune = %v, want [web-b]", prune)
	}
	if prune := RevisionsToPrune(revs, 10, "d", nil); len(prune) != 0 {
		t.Errorf("RevisionsToPrune within the limit = %v", prune)
	}
}

func TestNewVM(t *testing.T) {
	pool := &computev1alpha1.VirtualMachinePool{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "p1", UID: "pool-uid"},
		Spec: computev1alpha1.VirtualMachinePoolSpec{
			Replicas: ptr.To[int32](2),
			Template: computev1alpha1.VirtualMachineTemplate{
				Metadata: computev1alpha1.VirtualMachineTemplateMeta{Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"note": "x"}},
				Spec:     computev1alpha1.VirtualMachineSpec{Flavor: "m1", Image: "debian"},
			},
		},
	}
	vm := NewVM(pool, "h1")
	if vm.GenerateName != "web-" || vm.Namespace != "p1" || vm.Spec.Image != "debian" || vm.Annotations["note"] != "x" {
		t.Errorf("NewVM = %+v", vm.ObjectMeta)
	}
	if want := map[string]string{"app": "web", computev1alpha1.PoolLabel: "web", computev1alpha1.PoolRevisionLabel: "h1"}; fmt.Sprint(vm.Labels) != fmt.Sprint(want) {
		t.Errorf("labels %v, want %v", vm.Labels, want)
	}
	if !metav1.IsControlledBy(vm, pool) {
		t.Error("the VM is not controlled by the pool")
	}
	if _, ok := pool.Spec.Template.Metadata.Labels[computev1alpha1.PoolLabel]; ok {
		t.Error("NewVM changed the pool's template labels")
	}
}

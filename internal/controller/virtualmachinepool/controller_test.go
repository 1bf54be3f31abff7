package virtualmachinepool

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
)

func testScheme(t *testing.T) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := computev1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func testPool(replicas int32, image string) *computev1alpha1.VirtualMachinePool {
	return &computev1alpha1.VirtualMachinePool{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "p1", UID: "pool-uid", Generation: 1},
		Spec: computev1alpha1.VirtualMachinePoolSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: computev1alpha1.VirtualMachineTemplate{
				Metadata: computev1alpha1.VirtualMachineTemplateMeta{Labels: map[string]string{"app": "web"}},
				Spec:     computev1alpha1.VirtualMachineSpec{Flavor: "m1.small", Image: image, RunStrategy: computev1alpha1.RunStrategyAlways},
			},
			RevisionHistoryLimit: ptr.To[int32](10),
		},
	}
}

// fixture is a fake API with one pool and the pool's reconciler.
type fixture struct {
	t      *testing.T
	c      client.Client
	r      *Reconciler
	events *events.FakeRecorder
}

func newFixture(t *testing.T, pool *computev1alpha1.VirtualMachinePool) *fixture {
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).
		WithObjects(pool).
		WithStatusSubresource(pool, &computev1alpha1.VirtualMachine{}).
		Build()
	rec := events.NewFakeRecorder(1000)
	return &fixture{t: t, c: c, r: &Reconciler{Client: c, Recorder: rec}, events: rec}
}

func (f *fixture) reconcile() *computev1alpha1.VirtualMachinePool {
	f.t.Helper()
	key := types.NamespacedName{Namespace: "p1", Name: "web"}
	if _, err := f.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: key}); err != nil {
		f.t.Fatalf("reconcile: %v", err)
	}
	pool := &computev1alpha1.VirtualMachinePool{}
	if err := f.c.Get(context.Background(), key, pool); err != nil {
		f.t.Fatal(err)
	}
	return pool
}

func (f *fixture) vms() []computev1alpha1.VirtualMachine {
	f.t.Helper()
	var list computev1alpha1.VirtualMachineList
	if err := f.c.List(context.Background(), &list, client.InNamespace("p1")); err != nil {
		f.t.Fatal(err)
	}
	return list.Items
}

func (f *fixture) revisions() []*appsv1.ControllerRevision {
	f.t.Helper()
	var list appsv1.ControllerRevisionList
	if err := f.c.List(context.Background(), &list, client.InNamespace("p1")); err != nil {
		f.t.Fatal(err)
	}
	var out []*appsv1.ControllerRevision
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	SortRevisions(out)
	return out
}

// countByRevision counts the VMs per revision hash.
func (f *fixture) countByRevision() map[string]int {
	out := map[string]int{}
	for _, vm := range f.vms() {
		out[vm.Labels[computev1alpha1.PoolRevisionLabel]]++
	}
	return out
}

// makeReady marks every VM Ready, as the VM controller would once the guests run.
func (f *fixture) makeReady() {
	f.t.Helper()
	for _, vm := range f.vms() {
		setReady(&vm, true)
		if err := f.c.Status().Update(context.Background(), &vm); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) setTemplate(image string) {
	f.t.Helper()
	pool := &computev1alpha1.VirtualMachinePool{}
	if err := f.c.Get(context.Background(), types.NamespacedName{Namespace: "p1", Name: "web"}, pool); err != nil {
		f.t.Fatal(err)
	}
	pool.Spec.Template.Spec.Image = image
	if err := f.c.Update(context.Background(), pool); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) drainEvents() string {
	var out []string
	for {
		select {
		case e := <-f.events.Events:
			out = append(out, e)
		default:
			return strings.Join(out, "\n")
		}
	}
}

func TestReconcileCreatesVMsAndRevision(t *testing.T) {
	f := newFixture(t, testPool(3, "debian"))
	pool := f.reconcile()
	vms := f.vms()
	if len(vms) != 3 {
		t.Fatalf("%d VMs, want 3", len(vms))
	}
	hash := TemplateHash(&pool.Spec.Template)
	for _, vm := range vms {
		if !strings.HasPrefix(vm.Name, "web-") || vm.Spec.Image != "debian" {
			t.Errorf("VM %s boots %s", vm.Name, vm.Spec.Image)
		}
		if vm.Labels["app"] != "web" || vm.Labels[computev1alpha1.PoolLabel] != "web" || vm.Labels[computev1alpha1.PoolRevisionLabel] != hash {
			t.Errorf("VM %s labels %v", vm.Name, vm.Labels)
		}
		if !metav1.IsControlledBy(&vm, pool) {
			t.Errorf("VM %s is not controlled by the pool", vm.Name)
		}
	}
	revs := f.revisions()
	if len(revs) != 1 || revs[0].Name != "web-"+hash || revs[0].Revision != 1 || !metav1.IsControlledBy(revs[0], pool) {
		t.Fatalf("revisions %+v, want web-%s revision 1 owned by the pool", revs, hash)
	}
	if tmpl, err := Template(revs[0]); err != nil || tmpl.Spec.Image != "debian" {
		t.Errorf("revision template %+v, %v", tmpl, err)
	}
	st := pool.Status
	if st.Replicas != 3 || st.UpdatedReplicas != 3 || st.ReadyReplicas != 0 || st.Selector != "app=web" ||
		st.UpdateRevision != "web-"+hash || st.CurrentRevision != "web-"+hash || st.ObservedGeneration != 1 {
		t.Errorf("status %+v", st)
	}
	if c := meta.FindStatusCondition(st.Conditions, computev1alpha1.PoolAvailable); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("Available = %+v, want False with no VM ready", c)
	}
	if ev := f.drainEvents(); strings.Count(ev, "SuccessfulCreate") != 3 {
		t.Errorf("events:\n%s\nwant 3 SuccessfulCreate", ev)
	}

	// Once the VMs are ready, the pool is available and rolled out.
	f.makeReady()
	pool = f.reconcile()
	if pool.Status.ReadyReplicas != 3 || pool.Status.AvailableReplicas != 3 {
		t.Errorf("status %+v, want 3 ready", pool.Status)
	}
	if c := meta.FindStatusCondition(pool.Status.Conditions, computev1alpha1.PoolProgressing); c == nil || c.Reason != "NewRevisionAvailable" {
		t.Errorf("Progressing = %+v, want NewRevisionAvailable", c)
	}
}

func TestReconcileRollsOneAtATimeAndRollsBack(t *testing.T) {
	f := newFixture(t, testPool(3, "debian"))
	pool := f.reconcile()
	oldHash := TemplateHash(&pool.Spec.Template)
	f.makeReady()
	f.reconcile()

	f.setTemplate("ubuntu")
	pool = f.reconcile()
	newHash := TemplateHash(&pool.Spec.Template)
	// One old VM goes first (maxUnavailable 1, maxSurge 0).
	if got := f.countByRevision(); got[oldHash] != 2 || got[newHash] != 0 {
		t.Fatalf("after the first step: %v, want 2 old and 0 new", got)
	}
	revs := f.revisions()
	if len(revs) != 2 || revs[1].Name != "web-"+newHash || revs[1].Revision != 2 {
		t.Fatalf("revisions %v, want web-%s as revision 2", revs, newHash)
	}
	if pool.Status.UpdateRevision != "web-"+newHash || pool.Status.CurrentRevision != "web-"+oldHash {
		t.Errorf("revisions in status: current %s update %s", pool.Status.CurrentRevision, pool.Status.UpdateRevision)
	}
	f.reconcile()
	if got := f.countByRevision(); got[oldHash] != 2 || got[newHash] != 1 {
		t.Fatalf("after the second step: %v, want 2 old and 1 new", got)
	}
	// The new VM is not ready: nothing more happens.
	f.reconcile()
	if got := f.countByRevision(); got[oldHash] != 2 || got[newHash] != 1 {
		t.Fatalf("while the new VM boots: %v, want 2 old and 1 new", got)
	}
	for range 10 {
		f.makeReady()
		pool = f.reconcile()
	}
	if got := f.countByRevision(); got[newHash] != 3 || len(got) != 1 {
		t.Fatalf("at the end: %v, want 3 new", got)
	}
	if pool.Status.CurrentRevision != "web-"+newHash || pool.Status.UpdatedReplicas != 3 {
		t.Errorf("status %+v", pool.Status)
	}
	if ev := f.drainEvents(); !strings.Contains(ev, "Rolling out revision 2") || strings.Count(ev, "SuccessfulDelete") != 3 {
		t.Errorf("events:\n%s", ev)
	}

	// Back to the old template: its revision is renumbered, and the VMs roll back.
	f.setTemplate("debian")
	for range 10 {
		f.makeReady()
		pool = f.reconcile()
	}
	revs = f.revisions()
	if len(revs) != 2 || revs[1].Name != "web-"+oldHash || revs[1].Revision != 3 {
		t.Errorf("revisions after a rollback: %v, want web-%s renumbered 3", revs, oldHash)
	}
	if got := f.countByRevision(); got[oldHash] != 3 || len(got) != 1 {
		t.Errorf("after the rollback: %v, want 3 old", got)
	}
	if ev := f.drainEvents(); !strings.Contains(ev, "Rolling back to the template of web-"+oldHash) {
		t.Errorf("events:\n%s", ev)
	}
}

func TestReconcileScales(t *testing.T) {
	f := newFixture(t, testPool(3, "debian"))
	f.reconcile()
	pool := &computev1alpha1.VirtualMachinePool{}
	if err := f.c.Get(context.Background(), types.NamespacedName{Namespace: "p1", Name: "web"}, pool); err != nil {
		t.Fatal(err)
	}
	pool.Spec.Replicas = ptr.To[int32](1)
	if err := f.c.Update(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	if pool = f.reconcile(); len(f.vms()) != 1 || pool.Status.Replicas != 1 {
		t.Errorf("%d VMs and status.replicas %d after scaling to 1", len(f.vms()), pool.Status.Replicas)
	}
}

func TestReconcileRejectsSelectorNotMatchingTemplate(t *testing.T) {
	pool := testPool(2, "debian")
	pool.Spec.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"db"}}}}
	f := newFixture(t, pool)
	got := f.reconcile()
	if n := len(f.vms()); n != 0 {
		t.Errorf("%d VMs made for an invalid pool", n)
	}
	c := meta.FindStatusCondition(got.Status.Conditions, computev1alpha1.PoolProgressing)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "InvalidSelector" || !strings.Contains(c.Message, "does not match the template's labels") {
		t.Errorf("Progressing = %+v", c)
	}
	f.reconcile()
	if ev := f.drainEvents(); strings.Count(ev, "Warning InvalidSelector") != 1 {
		t.Errorf("events:\n%s\nwant one InvalidSelector warning", ev)
	}
}

func TestReconcileIgnoresVMsItDoesNotOwn(t *testing.T) {
	pool := testPool(1, "debian")
	stray := &computev1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{
		Name: "stray", Namespace: "p1", Labels: map[string]string{"app": "web", computev1alpha1.PoolLabel: "web"},
	}}
	f := newFixture(t, pool)
	if err := f.c.Create(context.Background(), stray); err != nil {
		t.Fatal(err)
	}
	f.reconcile()
	if vms := f.vms(); len(vms) != 2 {
		t.Errorf("%d VMs, want the stray one and one of the pool", len(vms))
	}
}

func TestReconcilePrunesHistory(t *testing.T) {
	pool := testPool(0, "img0")
	pool.Spec.RevisionHistoryLimit = ptr.To[int32](1)
	f := newFixture(t, pool)
	f.reconcile()
	for _, img := range []string{"img1", "img2", "img3"} {
		f.setTemplate(img)
		f.reconcile()
	}
	var got []string
	for _, r := range f.revisions() {
		tmpl, err := Template(r)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, tmpl.Spec.Image)
	}
	if strings.Join(got, ",") != "img2,img3" {
		t.Errorf("revisions kept: %v, want img2,img3 (limit 1 plus the current)", got)
	}
}

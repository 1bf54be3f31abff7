package volume

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
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
	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

func scheme(t *testing.T) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := computev1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := storagev1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func class(mode storagev1.VolumeBindingMode, reclaim corev1.PersistentVolumeReclaimPolicy) *storagev1.StorageClass {
	return &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: "strata"}, Provisioner: storagev1alpha1.Provisioner,
		VolumeBindingMode: &mode, ReclaimPolicy: &reclaim, AllowVolumeExpansion: ptr.To(true),
	}
}

func readyNode(name string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{hostnameLabel: name + "-host"}},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
}

func claim(name, size string, modes ...corev1.PersistentVolumeAccessMode) *corev1.PersistentVolumeClaim {
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: name, UID: types.UID("u-" + name)},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: ptr.To("strata"), AccessModes: modes,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
}

type fixture struct {
	t      *testing.T
	c      client.Client
	claims *ClaimReconciler
	pvs    *PVReconciler
	vols   *VolumeReconciler
	snaps  *SnapshotReconciler
	events *events.FakeRecorder
}

func newFixture(t *testing.T, objs ...client.Object) *fixture {
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(objs...).
		WithStatusSubresource(&storagev1alpha1.Volume{}, &storagev1alpha1.VolumeSnapshot{}, &corev1.PersistentVolumeClaim{}, &corev1.PersistentVolume{}).
		Build()
	rec := events.NewFakeRecorder(100)
	return &fixture{t: t, c: c, events: rec,
		claims: &ClaimReconciler{Client: c, Recorder: rec}, pvs: &PVReconciler{Client: c, Recorder: rec},
		vols: &VolumeReconciler{Client: c}, snaps: &SnapshotReconciler{Client: c}}
}

func (f *fixture) reconcile(r interface {
	Reconcile(context.Context, ctrl.Request) (ctrl.Result, error)
}, ns, name string) ctrl.Result {
	f.t.Helper()
	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}})
	if err != nil {
		f.t.Fatalf("reconcile %s/%s: %v", ns, name, err)
	}
	return res
}

func (f *fixture) get(obj client.Object, ns, name string) bool {
	f.t.Helper()
	err := f.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return true
}

func (f *fixture) drain() string {
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

// makeAvailable plays the node agent.
func (f *fixture) makeAvailable(ns, name, size string) *storagev1alpha1.Volume {
	f.t.Helper()
	v := &storagev1alpha1.Volume{}
	if !f.get(v, ns, name) {
		f.t.Fatalf("no volume %s/%s", ns, name)
	}
	q := resource.MustParse(size)
	v.Status = storagev1alpha1.VolumeStatus{Phase: storagev1alpha1.VolumeAvailable, Node: v.Spec.Node, Path: "/data/volumes/x/disk.raw",
		DevicePath: "/data/volumes/x/device", Format: storagev1alpha1.FormatRaw, Size: &q, ObservedGeneration: v.Generation}
	if err := f.c.Status().Update(context.Background(), v); err != nil {
		f.t.Fatal(err)
	}
	return v
}

func TestProvisionWaitsForTheSchedulerThenMakesVolumeAndLocalPV(t *testing.T) {
	pvc := claim("data", "1Gi")
	f := newFixture(t, class(storagev1.VolumeBindingWaitForFirstConsumer, corev1.PersistentVolumeReclaimDelete), readyNode("n1"), pvc)
	f.reconcile(f.claims, "p", "data")
	if f.get(&storagev1alpha1.Volume{}, "p", "pvc-u-data") {
		t.Fatal("a volume before the scheduler chose a node")
	}
	pvc.Annotations = map[string]string{SelectedNodeAnnotation: "n1"}
	if err := f.c.Update(context.Background(), pvc); err != nil {
		t.Fatal(err)
	}
	f.reconcile(f.claims, "p", "data")
	v := &storagev1alpha1.Volume{}
	if !f.get(v, "p", "pvc-u-data") {
		t.Fatal("no volume after the node was selected")
	}
	if v.Spec.Node != "n1" || v.Labels[storagev1alpha1.NodeLabel] != "n1" || v.Spec.Size.String() != "1Gi" ||
		v.Spec.VolumeMode != storagev1alpha1.VolumeFilesystem || v.Annotations[storagev1alpha1.ClaimAnnotation] != "p/data" {
		t.Errorf("volume %+v %+v", v.ObjectMeta, v.Spec)
	}
	f.reconcile(f.claims, "p", "data") // still Creating: no PV
	if f.get(&corev1.PersistentVolume{}, "", "pvc-u-data") {
		t.Fatal("a PV before the node made the volume")
	}
	f.makeAvailable("p", "pvc-u-data", "1Gi")
	f.reconcile(f.claims, "p", "data")
	pv := &corev1.PersistentVolume{}
	if !f.get(pv, "", "pvc-u-data") {
		t.Fatal("no PV")
	}
	if pv.Spec.Local == nil || pv.Spec.Local.Path != "/data/volumes/x/device" || *pv.Spec.Local.FSType != "ext4" {
		t.Errorf("PV source %+v", pv.Spec.PersistentVolumeSource)
	}
	if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != "u-data" || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete ||
		pv.Spec.StorageClassName != "strata" || *pv.Spec.VolumeMode != corev1.PersistentVolumeFilesystem {
		t.Errorf("PV spec %+v", pv.Spec)
	}
	terms := pv.Spec.NodeAffinity.Required.NodeSelectorTerms
	if len(terms) != 1 || terms[0].MatchExpressions[0].Values[0] != "n1-host" {
		t.Errorf("PV node affinity %+v, want the node's hostname label", terms)
	}
	if ev := f.drain(); !strings.Contains(ev, "Provisioning") || !strings.Contains(ev, "ProvisioningSucceeded") {
		t.Errorf("events:\n%s", ev)
	}
}

func TestProvisionImmediateBlock(t *testing.T) {
	pvc := claim("raw", "2Gi")
	pvc.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock)
	f := newFixture(t, class(storagev1.VolumeBindingImmediate, corev1.PersistentVolumeReclaimRetain), readyNode("n1"), pvc)
	f.reconcile(f.claims, "p", "raw")
	f.makeAvailable("p", "pvc-u-raw", "2Gi")
	f.reconcile(f.claims, "p", "raw")
	pv := &corev1.PersistentVolume{}
	if !f.get(pv, "", "pvc-u-raw") {
		t.Fatal("no PV")
	}
	if *pv.Spec.VolumeMode != corev1.PersistentVolumeBlock || pv.Spec.Local.FSType != nil || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		t.Errorf("PV %+v", pv.Spec)
	}
}

func TestProvisionFailureIsReportedAndRescheduled(t *testing.T) {
	pvc := claim("huge", "100Ti")
	pvc.Annotations = map[string]string{SelectedNodeAnnotation: "n1"}
	f := newFixture(t, class(storagev1.VolumeBindingWaitForFirstConsumer, corev1.PersistentVolumeReclaimDelete), readyNode("n1"), pvc)
	f.reconcile(f.claims, "p", "huge")
	v := &storagev1alpha1.Volume{}
	f.get(v, "p", "pvc-u-huge")
	v.Status = storagev1alpha1.VolumeStatus{Phase: storagev1alpha1.VolumeError, Message: "not enough space on node n1: 100Ti asked, 40Gi free"}
	if err := f.c.Status().Update(context.Background(), v); err != nil {
		t.Fatal(err)
	}
	f.drain()
	f.reconcile(f.claims, "p", "huge")
	if ev := f.drain(); !strings.Contains(ev, "Warning ProvisioningFailed volume pvc-u-huge on node n1: not enough space on node n1: 100Ti asked, 40Gi free") {
		t.Errorf("events:\n%s", ev)
	}
	if f.get(&storagev1alpha1.Volume{}, "p", "pvc-u-huge") {
		t.Error("the failed volume is still there")
	}
	f.get(pvc, "p", "huge")
	if _, ok := pvc.Annotations[SelectedNodeAnnotation]; ok {
		t.Error("the selected node was not cleared for the scheduler to choose again")
	}
}

func TestUnsupportedClaims(t *testing.T) {
	rwx := claim("shared", "1Gi", corev1.ReadWriteMany)
	rwx.Annotations = map[string]string{SelectedNodeAnnotation: "n1"}
	other := claim("other", "1Gi")
	other.Spec.StorageClassName = ptr.To("someone-else")
	f := newFixture(t, class(storagev1.VolumeBindingWaitForFirstConsumer, corev1.PersistentVolumeReclaimDelete), readyNode("n1"), rwx, other,
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "someone-else"}, Provisioner: "example.com/nfs"})
	f.reconcile(f.claims, "p", "shared")
	f.reconcile(f.claims, "p", "other")
	if ev := f.drain(); !strings.Contains(ev, "access mode ReadWriteMany is not supported") || strings.Count(ev, "\n") != 0 {
		t.Errorf("events:\n%s", ev)
	}
	var vols storagev1alpha1.VolumeList
	f.c.List(context.Background(), &vols)
	if len(vols.Items) != 0 {
		t.Errorf("volumes made: %d", len(vols.Items))
	}
}

// bound sets up a claim bound to its PV and Volume.
func bound(t *testing.T, reclaim corev1.PersistentVolumeReclaimPolicy, extra ...client.Object) (*fixture, *corev1.PersistentVolumeClaim) {
	pvc := claim("data", "1Gi")
	pvc.Annotations = map[string]string{SelectedNodeAnnotation: "n1"}
	f := newFixture(t, append([]client.Object{class(storagev1.VolumeBindingWaitForFirstConsumer, reclaim), readyNode("n1"), pvc}, extra...)...)
	f.reconcile(f.claims, "p", "data")
	f.makeAvailable("p", "pvc-u-data", "1Gi")
	f.reconcile(f.claims, "p", "data")
	f.get(pvc, "p", "data")
	pvc.Spec.VolumeName = "pvc-u-data"
	if err := f.c.Update(context.Background(), pvc); err != nil {
		t.Fatal(err)
	}
	pvc.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}
	if err := f.c.Status().Update(context.Background(), pvc); err != nil {
		t.Fatal(err)
	}
	f.drain()
	return f, pvc
}

func TestExpansion(t *testing.T) {
	f, pvc := bound(t, corev1.PersistentVolumeReclaimDelete)
	pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("3Gi")
	if err := f.c.Update(context.Background(), pvc); err != nil {
		t.Fatal(err)
	}
	f.reconcile(f.claims, "p", "data")
	v := &storagev1alpha1.Volume{}
	f.get(v, "p", "pvc-u-data")
	if v.Spec.Size.String() != "3Gi" {
		t.Fatalf("volume size %s, want 3Gi", v.Spec.Size.String())
	}
	f.reconcile(f.claims, "p", "data") // the node has not grown it yet
	f.get(pvc, "p", "data")
	if c := pvc.Status.Capacity[corev1.ResourceStorage]; c.String() != "1Gi" {
		t.Fatalf("claim capacity %s before the node grew the volume", c.String())
	}
	f.makeAvailable("p", "pvc-u-data", "3Gi")
	f.reconcile(f.claims, "p", "data")
	f.get(pvc, "p", "data")
	pv := &corev1.PersistentVolume{}
	f.get(pv, "", "pvc-u-data")
	if c, p := pvc.Status.Capacity[corev1.ResourceStorage], pv.Spec.Capacity[corev1.ResourceStorage]; c.String() != "3Gi" || p.String() != "3Gi" {
		t.Errorf("claim capacity %s, PV capacity %s, want 3Gi", c.String(), p.String())
	}
	if ev := f.drain(); !strings.Contains(ev, "Resizing") || !strings.Contains(ev, "VolumeResizeSuccessful") {
		t.Errorf("events:\n%s", ev)
	}
}

func TestAttachmentsFollowPods(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "db-0"}, Spec: corev1.PodSpec{NodeName: "n1",
		Volumes: []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}}}
	f, _ := bound(t, corev1.PersistentVolumeReclaimDelete, pod)
	f.reconcile(f.claims, "p", "data")
	v := &storagev1alpha1.Volume{}
	f.get(v, "p", "pvc-u-data")
	if len(v.Status.Attachments) != 1 || v.Status.Attachments[0].Name != "db-0" || v.Status.Attachments[0].Node != "n1" {
		t.Fatalf("attachments %+v", v.Status.Attachments)
	}
	if err := f.c.Delete(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	f.reconcile(f.claims, "p", "data")
	f.get(v, "p", "pvc-u-data")
	if len(v.Status.Attachments) != 0 {
		t.Errorf("attachments after the pod went: %+v", v.Status.Attachments)
	}
	if got := claimsOfPod(context.Background(), pod); len(got) != 1 || got[0].Name != "data" {
		t.Errorf("claimsOfPod = %v", got)
	}
}

func release(t *testing.T, f *fixture) {
	pv := &corev1.PersistentVolume{}
	f.get(pv, "", "pvc-u-data")
	pv.Status.Phase = corev1.VolumeReleased
	if err := f.c.Status().Update(context.Background(), pv); err != nil {
		t.Fatal(err)
	}
}

func TestReclaimDelete(t *testing.T) {
	f, _ := bound(t, corev1.PersistentVolumeReclaimDelete)
	v := &storagev1alpha1.Volume{}
	f.get(v, "p", "pvc-u-data")
	v.Finalizers = []string{storagev1alpha1.BackendFinalizer} // as the agent adds
	f.c.Update(context.Background(), v)
	f.reconcile(f.pvs, "", "pvc-u-data") // Bound: nothing
	if !f.get(v, "p", "pvc-u-data") || v.DeletionTimestamp != nil {
		t.Fatal("a bound PV's volume is being deleted")
	}
	release(t, f)
	f.reconcile(f.pvs, "", "pvc-u-data")
	f.get(v, "p", "pvc-u-data")
	if v.DeletionTimestamp == nil {
		t.Fatal("the released volume is not being deleted")
	}
	if !f.get(&corev1.PersistentVolume{}, "", "pvc-u-data") {
		t.Fatal("the PV went before its volume")
	}
	v.Finalizers = nil // the agent removed the file
	f.c.Update(context.Background(), v)
	f.reconcile(f.pvs, "", "pvc-u-data")
	if f.get(&corev1.PersistentVolume{}, "", "pvc-u-data") {
		t.Error("the PV is still there after its volume went")
	}
}

func TestReclaimRetain(t *testing.T) {
	f, _ := bound(t, corev1.PersistentVolumeReclaimRetain)
	release(t, f)
	f.reconcile(f.pvs, "", "pvc-u-data")
	if v := (&storagev1alpha1.Volume{}); !f.get(v, "p", "pvc-u-data") || v.DeletionTimestamp != nil {
		t.Error("a retained volume is deleted")
	}
	if !f.get(&corev1.PersistentVolume{}, "", "pvc-u-data") {
		t.Error("a retained PV is deleted")
	}
}

func TestVolumePlacementAndOrphans(t *testing.T) {
	free := &storagev1alpha1.Volume{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "free", UID: "u1"}, Spec: storagev1alpha1.VolumeSpec{Size: resource.MustParse("1Gi")}}
	snap := &storagev1alpha1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "s"}, Spec: storagev1alpha1.VolumeSnapshotSpec{Volume: "free"}}
	fromSnap := &storagev1alpha1.Volume{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "restored"},
		Spec: storagev1alpha1.VolumeSpec{Size: resource.MustParse("1Gi"), Source: &storagev1alpha1.VolumeSource{Snapshot: "s"}}}
	gone := &storagev1alpha1.Volume{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "gone", Finalizers: []string{storagev1alpha1.BackendFinalizer}},
		Spec: storagev1alpha1.VolumeSpec{Size: resource.MustParse("1Gi"), Node: "dead"}}
	notReady := readyNode("n0")
	notReady.Status.Conditions[0].Status = corev1.ConditionFalse
	f := newFixture(t, readyNode("n1"), notReady, free, snap, fromSnap, gone)
	f.reconcile(f.vols, "p", "free")
	f.get(free, "p", "free")
	if free.Spec.Node != "n1" || free.Labels[storagev1alpha1.NodeLabel] != "n1" {
		t.Errorf("placed on %q (label %q), want the Ready node n1", free.Spec.Node, free.Labels[storagev1alpha1.NodeLabel])
	}
	f.reconcile(f.snaps, "p", "s")
	f.get(snap, "p", "s")
	if snap.Labels[storagev1alpha1.NodeLabel] != "n1" {
		t.Errorf("snapshot labels %v", snap.Labels)
	}
	f.reconcile(f.vols, "p", "restored")
	f.get(fromSnap, "p", "restored")
	if fromSnap.Spec.Node != "n1" {
		t.Errorf("volume from a snapshot placed on %q, want the snapshot's node", fromSnap.Spec.Node)
	}
	if err := f.c.Delete(context.Background(), gone); err != nil {
		t.Fatal(err)
	}
	f.reconcile(f.vols, "p", "gone")
	if f.get(gone, "p", "gone") {
		t.Errorf("a volume on a node that no longer exists keeps its finalizer: %v", gone.Finalizers)
	}
}

func TestAbandonedClaimVolumeIsDeleted(t *testing.T) {
	mk := func(name, claim string) *storagev1alpha1.Volume {
		return &storagev1alpha1.Volume{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: name,
			Labels: map[string]string{storagev1alpha1.NodeLabel: "n1"}, Annotations: map[string]string{storagev1alpha1.ClaimAnnotation: "p/" + claim}},
			Spec: storagev1alpha1.VolumeSpec{Size: resource.MustParse("1Gi"), Node: "n1"}}
	}
	live := claim("live", "1Gi")
	withPV := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-u-retained"}}
	f := newFixture(t, readyNode("n1"), live, withPV, mk("pvc-u-live", "live"), mk("pvc-u-gone", "gone"), mk("pvc-u-retained", "retained"))
	for _, n := range []string{"pvc-u-live", "pvc-u-gone", "pvc-u-retained"} {
		f.reconcile(f.vols, "p", n)
	}
	if !f.get(&storagev1alpha1.Volume{}, "p", "pvc-u-live") || !f.get(&storagev1alpha1.Volume{}, "p", "pvc-u-retained") {
		t.Error("a volume with a claim or a PV was deleted")
	}
	if f.get(&storagev1alpha1.Volume{}, "p", "pvc-u-gone") {
		t.Error("the volume of a deleted claim, with no PV, is still there")
	}
}

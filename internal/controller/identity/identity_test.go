package identity

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
)

func scheme(t *testing.T) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := identityv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestProjectAndAssignment(t *testing.T) {
	ctx := context.Background()
	p := &identityv1alpha1.Project{ObjectMeta: metav1.ObjectMeta{Name: "p1", UID: "u-p1"}}
	ra := &identityv1alpha1.RoleAssignment{
		ObjectMeta: metav1.ObjectMeta{Name: "ra1", UID: "u-ra1"},
		Spec:       identityv1alpha1.RoleAssignmentSpec{User: "alice", Role: "member", Project: "p1"},
	}
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(p, ra).WithStatusSubresource(p).Build()
	rr := &RoleAssignmentReconciler{Client: c}
	req := ctrl.Request{NamespacedName: types.NamespacedName{Name: "ra1"}}
	// Before the namespace exists: nothing, no error.
	if _, err := rr.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := (&ProjectReconciler{Client: c}).Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Name: "p1"}}); err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, types.NamespacedName{Name: "p1"}, ns); err != nil {
		t.Fatalf("namespace: %v", err)
	}
	if o := metav1.GetControllerOf(ns); o == nil || o.Kind != "Project" || o.Name != "p1" {
		t.Errorf("namespace controller %v", o)
	}
	got := &identityv1alpha1.Project{}
	if err := c.Get(ctx, types.NamespacedName{Name: "p1"}, got); err != nil || got.Status.Namespace != "p1" {
		t.Errorf("status.namespace %q (%v)", got.Status.Namespace, err)
	}
	if reqs := rr.forNamespace(ctx, ns); len(reqs) != 1 || reqs[0] != req {
		t.Errorf("namespace maps to %v", reqs)
	}
	if _, err := rr.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "p1", Name: "keystone-ra1"}, rb); err != nil {
		t.Fatalf("role binding: %v", err)
	}
	if rb.RoleRef.Name != "strata:project-member" || len(rb.Subjects) != 1 || rb.Subjects[0].Name != "keystone:alice" || rb.Subjects[0].Kind != "User" {
		t.Errorf("role binding %+v %+v", rb.RoleRef, rb.Subjects)
	}
}

func TestProjectDoesNotTakeOverOwnedNamespace(t *testing.T) {
	ctx := context.Background()
	p := &identityv1alpha1.Project{ObjectMeta: metav1.ObjectMeta{Name: "p1", UID: "u-p1"}}
	ctl := true
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "p1", OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Thing", Name: "x", UID: "other", Controller: &ctl}}}}
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(p, ns).WithStatusSubresource(p).Build()
	if _, err := (&ProjectReconciler{Client: c}).Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Name: "p1"}}); err == nil {
		t.Error("a project took over a namespace another object controls")
	}
}

func TestClusterRoleFor(t *testing.T) {
	for role, want := range map[string]string{"admin": "strata:project-admin", "member": "strata:project-member", "reader": "strata:project-reader", "auditor": "strata:project-reader"} {
		if got := identityv1alpha1.ClusterRoleFor(role); got != want {
			t.Errorf("ClusterRoleFor(%s) = %s, want %s", role, got, want)
		}
	}
}

func TestApplicationCredentialBindings(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "p1", Labels: map[string]string{identityv1alpha1.LabelProject: "p1"}}}
	ac := &identityv1alpha1.ApplicationCredential{
		ObjectMeta: metav1.ObjectMeta{Name: "0123abcd", UID: "u-ac"},
		Spec:       identityv1alpha1.ApplicationCredentialSpec{User: "alice", Name: "ci", Project: "p1", Roles: []string{"member", "reader", "custom"}},
	}
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(ns, ac).Build()
	r := &ApplicationCredentialReconciler{Client: c}
	if reqs := r.forNamespace(ctx, ns); len(reqs) != 1 || reqs[0].Name != ac.Name {
		t.Errorf("forNamespace = %v", reqs)
	}
	req := ctrl.Request{NamespacedName: types.NamespacedName{Name: ac.Name}}
	for range 2 {
		if _, err := r.Reconcile(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	list := &rbacv1.RoleBindingList{}
	if err := c.List(ctx, list); err != nil {
		t.Fatal(err)
	}
	// reader and custom both bind strata:project-reader: one binding.
	if len(list.Items) != 2 {
		t.Fatalf("bindings %+v", list.Items)
	}
	for _, rb := range list.Items {
		if rb.Namespace != "p1" || rb.Subjects[0].Name != "keystone-appcred:0123abcd" || rb.Subjects[0].Kind != rbacv1.UserKind ||
			metav1.GetControllerOf(&rb) == nil || metav1.GetControllerOf(&rb).UID != "u-ac" {
			t.Errorf("binding %+v", rb)
		}
	}
	// Expired: gone.
	past := metav1.NewTime(time.Now().Add(-time.Minute))
	ac.Spec.ExpiresAt = &past
	if err := c.Update(ctx, ac); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := c.List(ctx, list); err != nil || len(list.Items) != 0 {
		t.Errorf("expired credential's bindings: %v %v", list.Items, err)
	}
}

func TestGroupAssignmentBinding(t *testing.T) {
	rb := Binding(&identityv1alpha1.RoleAssignment{
		ObjectMeta: metav1.ObjectMeta{Name: "g-1"},
		Spec:       identityv1alpha1.RoleAssignmentSpec{Group: "devs", Role: "member", Project: "p1"},
	})
	if s := rb.Subjects[0]; s.Kind != rbacv1.GroupKind || s.Name != "keystone-group:devs" || rb.RoleRef.Name != "strata:project-member" {
		t.Errorf("group binding %+v", rb)
	}
}

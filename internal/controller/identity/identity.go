// Package identity keeps Kubernetes in step with Keystone's objects: a
// Project's namespace (created with it, deleted with it through its owner
// reference), a RoleAssignment's RoleBinding in that namespace (to a user,
// or to a group's Kubernetes group keystone-group:NAME) and an
// ApplicationCredential's RoleBindings (one per role, to its own subject
// keystone-appcred:ID).
package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"

	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
)

// Setup registers the project and role assignment reconcilers.
func Setup(mgr ctrl.Manager) error {
	if err := (&ProjectReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&RoleAssignmentReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&ApplicationCredentialReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr)
}

// ProjectReconciler creates each Project's namespace.
type ProjectReconciler struct {
	Client client.Client
}

// SetupWithManager registers the reconciler.
func (r *ProjectReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("identity-project").
		For(&identityv1alpha1.Project{}).
		Owns(&corev1.Namespace{}).
		Complete(r)
}

// Reconcile makes one Project's namespace exist and records it.
func (r *ProjectReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	p := &identityv1alpha1.Project{}
	if err := r.Client.Get(ctx, req.NamespacedName, p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !p.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // the garbage collector deletes the namespace
	}
	ns := &corev1.Namespace{}
	err := r.Client.Get(ctx, types.NamespacedName{Name: p.Name}, ns)
	switch {
	case apierrors.IsNotFound(err):
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   p.Name,
			Labels: map[string]string{identityv1alpha1.LabelProject: p.Name},
		}}
		if err := controllerutil.SetControllerReference(p, ns, r.Client.Scheme()); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			return ctrl.Result{}, fmt.Errorf("create namespace %s: %w", p.Name, err)
		}
	case err != nil:
		return ctrl.Result{}, err
	default:
		// An existing namespace becomes the project's only if nothing else
		// owns it: a project never takes over (and later deletes) another's.
		if owner := metav1.GetControllerOf(ns); owner == nil {
			patched := ns.DeepCopy()
			if patched.Labels == nil {
				patched.Labels = map[string]string{}
			}
			patched.Labels[identityv1alpha1.LabelProject] = p.Name
			if err := controllerutil.SetControllerReference(p, patched, r.Client.Scheme()); err != nil {
				return ctrl.Result{}, err
			}
			if err := r.Client.Patch(ctx, patched, client.MergeFrom(ns)); err != nil {
				return ctrl.Result{}, fmt.Errorf("adopt namespace %s: %w", p.Name, err)
			}
		} else if owner.UID != p.UID {
			return ctrl.Result{}, fmt.Errorf("namespace %s belongs to %s %s", p.Name, owner.Kind, owner.Name)
		}
	}
	if p.Status.Namespace == p.Name {
		return ctrl.Result{}, nil
	}
	p = p.DeepCopy()
	p.Status.Namespace = p.Name
	err = r.Client.Status().Update(ctx, p)
	if apierrors.IsConflict(err) {
		// Read a stale Project (Keystone just changed it): the change
		// brings another reconcile; no error to log.
		return ctrl.Result{Requeue: true}, nil
	}
	return ctrl.Result{}, client.IgnoreNotFound(err)
}

// RoleAssignmentReconciler keeps each RoleAssignment's RoleBinding.
type RoleAssignmentReconciler struct {
	Client client.Client
}

// SetupWithManager registers the reconciler; a project's namespace
// appearing retries its assignments.
func (r *RoleAssignmentReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("identity-roleassignment").
		For(&identityv1alpha1.RoleAssignment{}).
		Owns(&rbacv1.RoleBinding{}).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.forNamespace)).
		Complete(r)
}

func (r *RoleAssignmentReconciler) forNamespace(ctx context.Context, obj client.Object) []ctrl.Request {
	if obj.GetLabels()[identityv1alpha1.LabelProject] == "" {
		return nil
	}
	list := &identityv1alpha1.RoleAssignmentList{}
	if err := r.Client.List(ctx, list); err != nil {
		return nil
	}
	var reqs []ctrl.Request
	for _, ra := range list.Items {
		if ra.Spec.Project == obj.GetName() {
			reqs = append(reqs, ctrl.Request{NamespacedName: types.NamespacedName{Name: ra.Name}})
		}
	}
	return reqs
}

// BindingName is the RoleBinding of the RoleAssignment named assignment.
func BindingName(assignment string) string { return "keystone-" + assignment }

// Binding is the RoleBinding a RoleAssignment stands for.
func Binding(ra *identityv1alpha1.RoleAssignment) *rbacv1.RoleBinding {
	subject := rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: identityv1alpha1.KubernetesUserPrefix + ra.Spec.User}
	if ra.Spec.Group != "" {
		subject = rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: identityv1alpha1.KubernetesGroupPrefix + ra.Spec.Group}
	}
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{
			Name:      BindingName(ra.Name),
			Namespace: ra.Spec.Project,
			Labels:    map[string]string{identityv1alpha1.LabelProject: ra.Spec.Project},
		},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: identityv1alpha1.ClusterRoleFor(ra.Spec.Role)},
		Subjects: []rbacv1.Subject{subject},
	}
}

// Reconcile creates one RoleAssignment's RoleBinding once its project's
// namespace exists; the binding goes with the assignment (owner reference).
func (r *RoleAssignmentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ra := &identityv1alpha1.RoleAssignment{}
	if err := r.Client.Get(ctx, req.NamespacedName, ra); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ra.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: ra.Spec.Project}, ns); err != nil {
		// The namespace's creation enqueues this again.
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	want := Binding(ra)
	if err := controllerutil.SetControllerReference(ra, want, r.Client.Scheme()); err != nil {
		return ctrl.Result{}, err
	}
	have := &rbacv1.RoleBinding{}
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), have)
	switch {
	case apierrors.IsNotFound(err):
		if err := r.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
			return ctrl.Result{}, fmt.Errorf("create role binding %s/%s: %w", want.Namespace, want.Name, err)
		}
		return ctrl.Result{}, nil
	case err != nil:
		return ctrl.Result{}, err
	}
	if have.RoleRef != want.RoleRef {
		// roleRef cannot change in place.
		if err := r.Client.Delete(ctx, have); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		return ctrl.Result{Requeue: true}, nil
	}
	return ctrl.Result{}, nil
}

// ApplicationCredentialReconciler keeps each ApplicationCredential's
// RoleBindings: a token of the credential is the Kubernetes user
// keystone-appcred:ID, with the credential's roles on its project only.
// (Keystone refuses the token once its user no longer holds one of those
// roles, so the bindings never outgrant the user.)
type ApplicationCredentialReconciler struct {
	Client client.Client
}

// SetupWithManager registers the reconciler; a project's namespace
// appearing retries its credentials.
func (r *ApplicationCredentialReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("identity-applicationcredential").
		For(&identityv1alpha1.ApplicationCredential{}).
		Owns(&rbacv1.RoleBinding{}).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.forNamespace)).
		Complete(r)
}

func (r *ApplicationCredentialReconciler) forNamespace(ctx context.Context, obj client.Object) []ctrl.Request {
	if obj.GetLabels()[identityv1alpha1.LabelProject] == "" {
		return nil
	}
	list := &identityv1alpha1.ApplicationCredentialList{}
	if err := r.Client.List(ctx, list); err != nil {
		return nil
	}
	var reqs []ctrl.Request
	for _, ac := range list.Items {
		if ac.Spec.Project == obj.GetName() {
			reqs = append(reqs, ctrl.Request{NamespacedName: types.NamespacedName{Name: ac.Name}})
		}
	}
	return reqs
}

// AppCredBindings are the RoleBindings an ApplicationCredential stands for,
// one per role.
func AppCredBindings(ac *identityv1alpha1.ApplicationCredential) []*rbacv1.RoleBinding {
	var out []*rbacv1.RoleBinding
	seen := map[string]bool{}
	for _, role := range ac.Spec.Roles {
		cr := identityv1alpha1.ClusterRoleFor(role)
		if seen[cr] {
			continue
		}
		seen[cr] = true
		sum := sha256.Sum256([]byte(cr))
		out = append(out, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{
				Name:      "keystone-appcred-" + ac.Name + "-" + hex.EncodeToString(sum[:4]),
				Namespace: ac.Spec.Project,
				Labels: map[string]string{
					identityv1alpha1.LabelProject:               ac.Spec.Project,
					identityv1alpha1.LabelApplicationCredential: ac.Name,
				},
			},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind,
				Name: identityv1alpha1.KubernetesAppCredPrefix + ac.Name}},
		})
	}
	return out
}

// Reconcile creates an ApplicationCredential's RoleBindings once its
// project's namespace exists; they go with it (owner references). An
// expired credential's are deleted.
func (r *ApplicationCredentialReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ac := &identityv1alpha1.ApplicationCredential{}
	if err := r.Client.Get(ctx, req.NamespacedName, ac); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ac.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: ac.Spec.Project}, ns); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	expired := ac.Spec.ExpiresAt != nil && !time.Now().Before(ac.Spec.ExpiresAt.Time)
	for _, want := range AppCredBindings(ac) {
		if expired {
			if err := r.Client.Delete(ctx, want); err != nil && !apierrors.IsNotFound(err) {
				return ctrl.Result{}, err
			}
			continue
		}
		if err := controllerutil.SetControllerReference(ac, want, r.Client.Scheme()); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
			return ctrl.Result{}, fmt.Errorf("create role binding %s/%s: %w", want.Namespace, want.Name, err)
		}
	}
	if ac.Spec.ExpiresAt != nil && !expired {
		return ctrl.Result{RequeueAfter: time.Until(ac.Spec.ExpiresAt.Time) + time.Second}, nil
	}
	return ctrl.Result{}, nil
}

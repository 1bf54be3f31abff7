package keystone

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
)

// AdminProject and AdminUser are what Bootstrap creates.
const (
	AdminProject = "admin"
	AdminUser    = "admin"
)

// ErrAdminPasswordDiffers says the admin user's password is not the one
// Bootstrap was given (another server set it, or an admin changed it).
var ErrAdminPasswordDiffers = errors.New("the admin user's password differs from the one given")

// Bootstrap makes what a first start needs and is idempotent: namespace
// strata-identity, the project ClusterRoles, roles admin/member/reader,
// project admin, user admin with adminPassword (on first start only: an
// existing password that differs is kept and ErrAdminPasswordDiffers
// returned, after everything else is done) and role admin on project
// admin.
func Bootstrap(ctx context.Context, c client.Client, adminPassword string) error {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: identityv1alpha1.Namespace}},
		&identityv1alpha1.Role{ObjectMeta: metav1.ObjectMeta{Name: identityv1alpha1.RoleAdmin}, Spec: identityv1alpha1.RoleSpec{Description: "Full control of a project's resources and its members' roles"}},
		&identityv1alpha1.Role{ObjectMeta: metav1.ObjectMeta{Name: identityv1alpha1.RoleMember}, Spec: identityv1alpha1.RoleSpec{Description: "Creates and changes a project's resources"}},
		&identityv1alpha1.Role{ObjectMeta: metav1.ObjectMeta{Name: identityv1alpha1.RoleReader}, Spec: identityv1alpha1.RoleSpec{Description: "Reads a project's resources"}},
		&identityv1alpha1.Project{ObjectMeta: metav1.ObjectMeta{Name: AdminProject}, Spec: identityv1alpha1.ProjectSpec{Description: "Bootstrap project for initializing the cloud.", Domain: identityv1alpha1.DefaultDomain}},
		&identityv1alpha1.User{ObjectMeta: metav1.ObjectMeta{Name: AdminUser}, Spec: identityv1alpha1.UserSpec{Domain: identityv1alpha1.DefaultDomain, DefaultProject: AdminProject}},
		&identityv1alpha1.RoleAssignment{
			ObjectMeta: metav1.ObjectMeta{Name: assignmentName(AdminUser, AdminProject, identityv1alpha1.RoleAdmin)},
			Spec:       identityv1alpha1.RoleAssignmentSpec{User: AdminUser, Project: AdminProject, Role: identityv1alpha1.RoleAdmin},
		},
	}
	for _, cr := range ProjectClusterRoles() {
		objs = append(objs, cr)
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %T %s: %w", o, o.GetName(), err)
		}
	}
	// The ClusterRoles follow this binary's definition.
	for _, want := range ProjectClusterRoles() {
		have := &rbacv1.ClusterRole{}
		if err := c.Get(ctx, types.NamespacedName{Name: want.Name}, have); err != nil {
			return err
		}
		have.Rules = want.Rules
		if err := c.Update(ctx, have); err != nil {
			return fmt.Errorf("update ClusterRole %s: %w", want.Name, err)
		}
	}
	admin := &identityv1alpha1.User{}
	if err := c.Get(ctx, types.NamespacedName{Name: AdminUser}, admin); err != nil {
		return err
	}
	s := &corev1.Secret{}
	err := c.Get(ctx, passwordSecret(AdminUser), s)
	switch {
	case err == nil && passwordMatches(s.Data[identityv1alpha1.PasswordHashKey], adminPassword):
		return nil
	case err == nil:
		return ErrAdminPasswordDiffers
	case !apierrors.IsNotFound(err):
		return err
	}
	return setPassword(ctx, c, admin, adminPassword)
}

// Resources a project's roles cover: Strata's kinds and Kubernetes'
// namespaced workloads.
var (
	projectGroups = []string{"", "apps", "batch", "autoscaling", "policy", "networking.k8s.io", "discovery.k8s.io",
		"compute.strata.io", "networking.strata.io", "storage.strata.io"}
	readVerbs = []string{"get", "list", "watch"}
)

// ProjectClusterRoles are the ClusterRoles a RoleAssignment binds in its
// project's namespace: reader reads everything but Secrets; member also
// writes, Secrets included; admin also manages the namespace's RBAC.
func ProjectClusterRoles() []*rbacv1.ClusterRole {
	readable := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Verbs: readVerbs, Resources: []string{
			"pods", "pods/log", "pods/status", "services", "services/status", "endpoints", "configmaps",
			"persistentvolumeclaims", "persistentvolumeclaims/status", "events", "serviceaccounts",
			"replicationcontrollers", "limitranges", "resourcequotas", "resourcequotas/status"}},
		{APIGroups: projectGroups[1:], Verbs: readVerbs, Resources: []string{"*"}},
	}
	writable := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Verbs: []string{"*"}, Resources: []string{
			"pods", "pods/log", "pods/exec", "pods/attach", "pods/portforward", "pods/eviction", "services",
			"endpoints", "configmaps", "secrets", "persistentvolumeclaims", "events", "serviceaccounts",
			"serviceaccounts/token", "replicationcontrollers"}},
		{APIGroups: []string{""}, Verbs: readVerbs, Resources: []string{"limitranges", "resourcequotas"}},
		{APIGroups: projectGroups[1:], Verbs: []string{"*"}, Resources: []string{"*"}},
	}
	admin := append(append([]rbacv1.PolicyRule{}, writable...),
		rbacv1.PolicyRule{APIGroups: []string{rbacv1.GroupName}, Verbs: []string{"*"}, Resources: []string{"roles", "rolebindings"}})
	mk := func(role string, rules []rbacv1.PolicyRule) *rbacv1.ClusterRole {
		return &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: identityv1alpha1.ClusterRoleFor(role), Labels: map[string]string{"app.kubernetes.io/managed-by": "strata"}},
			Rules:      rules,
		}
	}
	return []*rbacv1.ClusterRole{
		mk(identityv1alpha1.RoleReader, readable),
		mk(identityv1alpha1.RoleMember, writable),
		mk(identityv1alpha1.RoleAdmin, admin),
	}
}

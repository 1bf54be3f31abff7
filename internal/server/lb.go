package server

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/strata-cloud/strata/internal/controller/loadbalancer"
	"github.com/strata-cloud/strata/internal/network/lb"
)

// setupLoadBalancers registers the LoadBalancer address allocator when
// the server has an address pool.
func setupLoadBalancers(mgr ctrl.Manager, pool string) error {
	p, err := lb.ParsePool(pool)
	if err != nil || p.Empty() {
		return err
	}
	return (&loadbalancer.Reconciler{Client: mgr.GetClient(), Pool: p}).SetupWithManager(mgr)
}

// bootstrapLoadBalancers makes the namespace of the announcers' locks
// (ConfigMaps: NodeRestriction keeps nodes' Leases to their own) and lets
// nodes take, renew and release them there, and only there.
func bootstrapLoadBalancers(ctx context.Context, client kubernetes.Interface, cfg Config) error {
	if cfg.LBPool == "" {
		return nil
	}
	const role = "strata:node-lb-announcer"
	steps := []struct {
		what string
		fn   func() error
	}{
		{"namespace " + lb.LeaseNamespace, func() error {
			_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: lb.LeaseNamespace}}, metav1.CreateOptions{})
			return err
		}},
		{"clusterrole " + role, func() error {
			return ensureClusterRole(ctx, client, &rbacv1.ClusterRole{
				ObjectMeta: metav1.ObjectMeta{Name: role},
				Rules: []rbacv1.PolicyRule{{
					APIGroups: []string{""}, Resources: []string{"configmaps"},
					Verbs: []string{"get", "list", "watch", "create", "update"},
				}},
			})
		}},
		{"rolebinding " + lb.LeaseNamespace + "/" + role, func() error {
			_, err := client.RbacV1().RoleBindings(lb.LeaseNamespace).Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: role, Namespace: lb.LeaseNamespace},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
				Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "system:nodes"}},
			}, metav1.CreateOptions{})
			return err
		}},
	}
	for _, s := range steps {
		if err := apply(ctx, s.what, s.fn); err != nil {
			return err
		}
	}
	return nil
}

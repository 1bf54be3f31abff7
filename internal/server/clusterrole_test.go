package server

import (
	"context"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestEnsureClusterRoleUpdatesOldRules: a cluster bootstrapped by an older
// Strata gets the rules a newer one adds to its roles.
func TestEnsureClusterRoleUpdatesOldRules(t *testing.T) {
	ctx := context.Background()
	old := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "strata:x", Labels: map[string]string{"kept": "yes"}},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}}},
	}
	client := fake.NewClientset(old)
	want := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "strata:x"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
			{APIGroups: []string{"compute.strata.io"}, Resources: []string{"virtualmachines"}, Verbs: []string{"list"}},
		},
	}
	for range 2 { // the second call finds nothing to change
		if err := ensureClusterRole(ctx, client, want); err != nil {
			t.Fatal(err)
		}
	}
	got, err := client.RbacV1().ClusterRoles().Get(ctx, "strata:x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Rules) != 2 || got.Rules[1].Resources[0] != "virtualmachines" {
		t.Errorf("rules after ensure: %+v", got.Rules)
	}
	if got.Labels["kept"] != "yes" {
		t.Errorf("labels of the existing role lost: %v", got.Labels)
	}
	if err := ensureClusterRole(ctx, client, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "strata:new"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RbacV1().ClusterRoles().Get(ctx, "strata:new", metav1.GetOptions{}); err != nil {
		t.Errorf("new role not created: %v", err)
	}
}

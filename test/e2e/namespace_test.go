package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/strata-cloud/strata/internal/testenv"
)

func TestNamespaceDeletionRemovesContents(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	s.MustKubectl("create", "configmap", "cm", "-n", ns, "--from-literal=a=b")
	s.MustKubectl("create", "secret", "generic", "secret", "-n", ns, "--from-literal=a=b")
	s.MustKubectl("create", "serviceaccount", "sa", "-n", ns)
	s.MustKubectl("create", "role", "role", "-n", ns, "--verb=get", "--resource=pods")
	s.MustKubectl("create", "deployment", "web", "-n", ns, "--image=registry.k8s.io/pause:3.10")
	testenv.Eventually(t, controllerTimeout, func() error {
		if n := len(podsOf(t, s, ns, "web")); n != 1 {
			return fmt.Errorf("%d pods, want 1", n)
		}
		return nil
	})
	const kinds = "configmaps,secrets,serviceaccounts,roles,deployments,replicasets,pods"
	before := strings.Fields(s.MustKubectl("get", kinds, "-n", ns, "-o", "name"))
	if len(before) < 7 {
		t.Fatalf("objects before deletion: %q, want at least 7", before)
	}

	s.MustKubectl("delete", "namespace", ns, "--wait=false")
	testenv.Eventually(t, nsDeleteTimeout, func() error {
		r := s.Kubectl("get", "namespace", ns, "-o", "jsonpath={.status.phase}")
		if isNotFound(r) {
			return nil
		}
		return fmt.Errorf("namespace %s still there (phase %q, %v)", ns, r.Stdout, r.Err)
	})
	if out := s.MustKubectl("get", kinds, "-n", ns, "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("objects left after namespace %s was deleted:\n%s", ns, out)
	}
}

package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/strata-cloud/strata/internal/testenv"
)

func TestServiceAccountTokenAndRBAC(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	s.MustKubectl("create", "serviceaccount", "reader", "-n", ns)
	token := strings.TrimSpace(s.MustKubectl("create", "token", "reader", "-n", ns, "--duration=10m"))
	if strings.Count(token, ".") != 2 {
		t.Fatalf("kubectl create token printed %q, want a JWT", token)
	}
	// A kubeconfig with the server and CA of the admin one, but only the
	// ServiceAccount's token.
	reader := testenv.NewKubectl(t, testenv.TokenKubeconfig(t, s.Kubeconfig(), token))
	user := "system:serviceaccount:" + ns + ":reader"

	if got := reader.Must("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); got != user {
		t.Errorf("auth whoami = %q, want %q", got, user)
	}
	forbidden := func(args ...string) {
		t.Helper()
		r := reader.Run(args...)
		if r.Err == nil || !strings.Contains(r.Stderr, "forbidden") || !strings.Contains(r.Stderr, user) {
			t.Errorf("kubectl %s as %s: want forbidden, got %s", strings.Join(args, " "), user, r)
		}
	}
	forbidden("get", "pods", "-n", ns)

	s.MustKubectl("create", "role", "pod-reader", "-n", ns, "--verb=get,list,watch", "--resource=pods")
	s.MustKubectl("create", "rolebinding", "reader-reads-pods", "-n", ns, "--role=pod-reader", "--serviceaccount="+ns+":reader")
	testenv.Eventually(t, controllerTimeout, func() error {
		if r := reader.Run("get", "pods", "-n", ns); r.Err != nil {
			return fmt.Errorf("get pods after the grant: %s", r.Stderr)
		}
		return nil
	})
	// The grant is exactly what the Role says.
	forbidden("get", "pods", "-n", "default")
	forbidden("get", "secrets", "-n", ns)
	forbidden("create", "configmap", "x", "-n", ns)
	if got := strings.TrimSpace(reader.Must("auth", "can-i", "list", "pods", "-n", ns)); got != "yes" {
		t.Errorf("auth can-i list pods = %q, want yes", got)
	}
	if r := reader.Run("auth", "can-i", "delete", "pods", "-n", ns); r.Err == nil || strings.TrimSpace(r.Stdout) != "no" {
		t.Errorf("auth can-i delete pods: want no, got %s", r)
	}

	// Revoking the binding takes the access away again.
	s.MustKubectl("delete", "rolebinding", "reader-reads-pods", "-n", ns)
	testenv.Eventually(t, controllerTimeout, func() error {
		if r := reader.Run("get", "pods", "-n", ns); r.Err == nil || !strings.Contains(r.Stderr, "forbidden") {
			return fmt.Errorf("get pods after revoking: %s", r)
		}
		return nil
	})
}

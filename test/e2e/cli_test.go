package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
)

var tokenPattern = regexp.MustCompile(`^([a-z0-9]{6})\.([a-z0-9]{16})$`)

func TestTokenCreate(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	create := func(args ...string) string {
		t.Helper()
		r := testenv.Run(t, s.Bin(), append([]string{"token", "create", "--data-dir", s.DataDir()}, args...)...)
		if r.Err != nil {
			t.Fatalf("strata token create: %s", r)
		}
		return strings.TrimSpace(r.Stdout)
	}
	token := create("--ttl", "1h")
	m := tokenPattern.FindStringSubmatch(token)
	if m == nil {
		t.Fatalf("strata token create printed %q, want a match of %s", token, tokenPattern)
	}
	id, secret := m[1], m[2]
	if other := create(); other == token {
		t.Errorf("two tokens are equal: %s", token)
	}

	var sec struct {
		Type string            `json:"type"`
		Data map[string]string `json:"data"`
	}
	getJSON(t, s, &sec, "secret", "bootstrap-token-"+id, "-n", "kube-system")
	if sec.Type != "bootstrap.kubernetes.io/token" {
		t.Errorf("secret type = %q, want bootstrap.kubernetes.io/token", sec.Type)
	}
	data := map[string]string{}
	for k, v := range sec.Data {
		data[k] = decodeBase64(t, v)
	}
	if data["token-id"] != id || data["token-secret"] != secret {
		t.Errorf("secret holds token %s.%s, want %s", data["token-id"], data["token-secret"], token)
	}
	if data["usage-bootstrap-authentication"] != "true" {
		t.Errorf("usage-bootstrap-authentication = %q, want true", data["usage-bootstrap-authentication"])
	}
	if exp, err := time.Parse(time.RFC3339, data["expiration"]); err != nil {
		t.Errorf("expiration %q: %v", data["expiration"], err)
	} else if left := time.Until(exp); left < 50*time.Minute || left > 70*time.Minute {
		t.Errorf("token expires in %s, want about 1h (--ttl 1h)", left)
	}

	// The API server accepts it as a bootstrap token.
	k := testenv.NewKubectl(t, testenv.TokenKubeconfig(t, s.Kubeconfig(), token))
	if got := k.Must("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); got != "system:bootstrap:"+id {
		t.Errorf("bootstrap token authenticates as %q, want system:bootstrap:%s", got, id)
	}

	r := testenv.Run(t, s.Bin(), "token", "create", "--data-dir", s.DataDir(), "--ttl", "-1h")
	if r.ExitCode < 1 || !strings.HasPrefix(strings.TrimSpace(r.Stderr), "strata: --ttl") {
		t.Errorf("token create --ttl -1h: want exit >0 and `strata: --ttl ...`, got %s", r)
	}
}

func TestStrataVersion(t *testing.T) {
	t.Parallel()
	bin := testenv.Binary(t)
	r := testenv.Run(t, bin, "version")
	if r.Err != nil || !strings.Contains(r.Stdout, "Kubernetes v1.37.2") || !strings.HasPrefix(r.Stdout, "Strata ") {
		t.Errorf("strata version: want `Strata ...` and `Kubernetes v1.37.2`, got %s", r)
	}
	r = testenv.Run(t, bin, "version", "-o", "json")
	var v struct {
		Strata     string `json:"strata"`
		Kubernetes string `json:"kubernetes"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &v); r.Err != nil || err != nil {
		t.Fatalf("strata version -o json (%v): %s", err, r)
	}
	if v.Kubernetes != "v1.37.2" || v.Strata == "" {
		t.Errorf("strata version -o json = %+v, want kubernetes v1.37.2 and a strata version", v)
	}
	if r := testenv.Run(t, bin, "version", "-o", "yaml"); r.ExitCode < 1 || !strings.Contains(r.Stderr, "strata: --output") {
		t.Errorf("strata version -o yaml: want a one-line error naming --output, got %s", r)
	}
}

func TestKubeconfigAndBundledKubectl(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	st, err := os.Stat(s.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode != 0o600 {
		t.Errorf("admin.kubeconfig mode = %o, want 600", mode)
	}

	// `strata kubeconfig` prints a kubeconfig that works from elsewhere.
	r := testenv.Run(t, s.Bin(), "kubeconfig", "--data-dir", s.DataDir())
	if r.Err != nil {
		t.Fatalf("strata kubeconfig: %s", r)
	}
	path := filepath.Join(t.TempDir(), "copied.kubeconfig")
	if err := os.WriteFile(path, []byte(r.Stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	kc, err := testenv.LoadKubeconfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if kc.Server != s.URL() {
		t.Errorf("strata kubeconfig server = %s, want %s", kc.Server, s.URL())
	}
	if got := testenv.NewKubectl(t, path).Must("get", "namespace", "default", "-o", "name"); strings.TrimSpace(got) != "namespace/default" {
		t.Errorf("kubectl with the printed kubeconfig: %q", got)
	}

	// The bundled kubectl finds the admin kubeconfig through STRATA_DATA_DIR
	// and matches the server's version.
	env := []string{"STRATA_DATA_DIR=" + s.DataDir(), "HOME=" + t.TempDir()}
	r = testenv.RunEnv(t, testenv.DefaultCommandTimeout, env, s.Bin(), "kubectl", "get", "namespace", "kube-system", "-o", "name")
	if r.Err != nil || strings.TrimSpace(r.Stdout) != "namespace/kube-system" {
		t.Errorf("strata kubectl get namespace kube-system: %s", r)
	}
	r = testenv.RunEnv(t, testenv.DefaultCommandTimeout, env, s.Bin(), "kubectl", "version", "-o", "json")
	var v struct {
		ClientVersion struct{ GitVersion string } `json:"clientVersion"`
		ServerVersion struct{ GitVersion string } `json:"serverVersion"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil || r.Err != nil {
		t.Fatalf("strata kubectl version -o json (%v): %s", err, r)
	}
	if v.ClientVersion.GitVersion != "v1.37.2" || v.ServerVersion.GitVersion != "v1.37.2" {
		t.Errorf("strata kubectl version: client %s, server %s; want both v1.37.2", v.ClientVersion.GitVersion, v.ServerVersion.GitVersion)
	}
	if strings.Contains(r.Stderr, "WARNING") {
		t.Errorf("bundled kubectl warns about version skew:\n%s", r.Stderr)
	}
}

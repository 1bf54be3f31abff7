package testenv

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadKubeconfig(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	yaml := `apiVersion: v1
kind: Config
clusters:
- name: other
  cluster: {server: "https://10.0.0.1:6443"}
- name: strata
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: ` + b64("CA") + `
users:
- name: strata
  user:
    client-certificate-data: ` + b64("CERT") + `
    client-key-data: ` + b64("KEY") + `
contexts:
- name: strata
  context: {cluster: strata, user: strata, namespace: default}
current-context: strata
`
	for _, tc := range []struct {
		name, content string
		want          *KubeconfigInfo
		wantErr       string
	}{
		{"current context", yaml, &KubeconfigInfo{Server: "https://127.0.0.1:6443", CAData: []byte("CA"), ClientCertData: []byte("CERT"), ClientKeyData: []byte("KEY")}, ""},
		{"unknown current context", strings.Replace(yaml, "current-context: strata", "current-context: nope", 1), nil, `current context "nope" not found`},
		{"context without cluster", strings.Replace(yaml, "{cluster: strata,", "{cluster: gone,", 1), nil, "names no known cluster"},
		{"not yaml", "{{{", nil, "kubeconfig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kubeconfig")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadKubeconfig(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Server != tc.want.Server || string(got.CAData) != string(tc.want.CAData) ||
				string(got.ClientCertData) != string(tc.want.ClientCertData) || string(got.ClientKeyData) != string(tc.want.ClientKeyData) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestTokenKubeconfigRoundTrip(t *testing.T) {
	admin := filepath.Join(t.TempDir(), "admin.kubeconfig")
	content := "clusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1', certificate-authority-data: " +
		base64.StdEncoding.EncodeToString([]byte("CA")) + "}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n"
	if err := os.WriteFile(admin, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	path := TokenKubeconfig(t, admin, "tok")
	got, err := LoadKubeconfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Server != "https://127.0.0.1:1" || string(got.CAData) != "CA" || got.ClientCertData != nil {
		t.Errorf("token kubeconfig = %+v", got)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `"token": "tok"`) {
		t.Errorf("token kubeconfig lacks the token:\n%s", data)
	}
}

func TestGoModIs(t *testing.T) {
	for _, tc := range []struct {
		gomod string
		want  bool
	}{
		{"module github.com/strata-cloud/strata\n\ngo 1.26\n", true},
		{"// comment\nmodule github.com/strata-cloud/strata\n", true},
		{"module github.com/strata-cloud/strata/sub\n", false},
		{"go 1.26\n", false},
	} {
		if got := goModIs([]byte(tc.gomod), modulePath); got != tc.want {
			t.Errorf("goModIs(%q) = %v, want %v", tc.gomod, got, tc.want)
		}
	}
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int
		want  string
	}{
		{"short", 10, "short"},
		{"line1\nline2\nline3\n", 8, "[...]\nline3\n"},
		{"abcdefghij", 4, "[...]\nghij"},
	} {
		if got := tail(tc.in, tc.limit); got != tc.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
	}
}

func TestWithoutEnv(t *testing.T) {
	got := withoutEnv([]string{"A=1", "KUBECONFIG=/x", "KUBECONFIGX=2", "B=3"}, "KUBECONFIG")
	if want := []string{"A=1", "KUBECONFIGX=2", "B=3"}; !slices.Equal(got, want) {
		t.Errorf("withoutEnv = %q, want %q", got, want)
	}
}

func TestFreePortsAreDistinct(t *testing.T) {
	ports, err := FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v are not distinct positive ports", ports)
		}
		seen[p] = true
	}
}

func TestEventually(t *testing.T) {
	calls := 0
	Eventually(t, 5*time.Second, func() error {
		calls++
		if calls < 3 {
			return os.ErrNotExist
		}
		return nil
	})
	if calls != 3 {
		t.Errorf("fn called %d times, want 3", calls)
	}
}

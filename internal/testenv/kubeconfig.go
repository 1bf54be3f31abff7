package testenv

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// KubeconfigInfo is what tests need from a kubeconfig: the current
// context's server, CA and client credentials.
type KubeconfigInfo struct {
	Server         string
	CAData         []byte
	ClientCertData []byte
	ClientKeyData  []byte
}

// kubeconfigFile is the part of the kubeconfig format read here; []byte
// fields hold the base64 data fields, which encoding/json decodes.
type kubeconfigFile struct {
	CurrentContext string `json:"current-context"`
	Contexts       []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
	Clusters []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server string `json:"server"`
			CAData []byte `json:"certificate-authority-data"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			CertData []byte `json:"client-certificate-data"`
			KeyData  []byte `json:"client-key-data"`
		} `json:"user"`
	} `json:"users"`
}

// LoadKubeconfig reads the current context of the kubeconfig at path.
func LoadKubeconfig(path string) (*KubeconfigInfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	var f kubeconfigFile
	if err := json.Unmarshal(js, &f); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	var info KubeconfigInfo
	for _, c := range f.Contexts {
		if c.Name != f.CurrentContext {
			continue
		}
		for _, cl := range f.Clusters {
			if cl.Name == c.Context.Cluster {
				info.Server, info.CAData = cl.Cluster.Server, cl.Cluster.CAData
			}
		}
		for _, u := range f.Users {
			if u.Name == c.Context.User {
				info.ClientCertData, info.ClientKeyData = u.User.CertData, u.User.KeyData
			}
		}
		if info.Server == "" {
			return nil, fmt.Errorf("kubeconfig %s: context %q names no known cluster", path, c.Name)
		}
		return &info, nil
	}
	return nil, fmt.Errorf("kubeconfig %s: current context %q not found", path, f.CurrentContext)
}

// TokenKubeconfig writes, into a temporary directory of t, a kubeconfig
// that reaches the server of the kubeconfig at adminPath, trusting the same
// CA, but authenticates only with the bearer token. It returns its path.
func TokenKubeconfig(t testing.TB, adminPath, token string) string {
	t.Helper()
	admin, err := LoadKubeconfig(adminPath)
	if err != nil {
		t.Fatal(err)
	}
	// JSON is valid kubeconfig syntax.
	cfg := map[string]any{
		"apiVersion":      "v1",
		"kind":            "Config",
		"current-context": "token",
		"clusters": []any{map[string]any{"name": "strata", "cluster": map[string]any{
			"server": admin.Server, "certificate-authority-data": admin.CAData}}},
		"users":    []any{map[string]any{"name": "token", "user": map[string]any{"token": token}}},
		"contexts": []any{map[string]any{"name": "token", "context": map[string]any{"cluster": "strata", "user": "token"}}},
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "token.kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

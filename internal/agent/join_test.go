package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/strata-cloud/strata/internal/agent/containerd"
	"github.com/strata-cloud/strata/internal/pki"
)

// clusterInfoServer serves a cluster-info signed for token, with extra data.
func clusterInfoServer(t *testing.T, token pki.JoinToken, extra map[string]string) *httptest.Server {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(t.TempDir(), "ca", "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := pki.Kubeconfig("https://10.0.0.1:6443", "strata", ca.CertPEM(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := jws.ComputeDetachedSignature(string(kubeconfig), token.ID, token.Secret)
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]string{
		bootstrapapi.KubeConfigKey:                    string(kubeconfig),
		bootstrapapi.JWSSignatureKeyPrefix + token.ID: sig,
	}
	for k, v := range extra {
		data[k] = v
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/namespaces/kube-public/configmaps/cluster-info" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"data": data})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDiscoverReadsTheRegistryPort(t *testing.T) {
	token, err := pki.NewJoinToken()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		extra map[string]string
		port  int
		err   string
	}{
		{"published", map[string]string{RegistryPortKey: "5000"}, 5000, ""},
		{"not published (older server)", nil, 0, ""},
		{"garbage", map[string]string{RegistryPortKey: "http"}, 0, "is not a port"},
		{"out of range", map[string]string{RegistryPortKey: "70000"}, 0, "is not a port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := clusterInfoServer(t, token, tc.extra)
			info, err := Discover(context.Background(), srv.URL, token, "")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.RegistryPort != tc.port || !strings.Contains(string(info.CAPEM), "BEGIN CERTIFICATE") {
				t.Errorf("info = port %d, CA %d bytes; want port %d and a CA", info.RegistryPort, len(info.CAPEM), tc.port)
			}
		})
	}
}

func TestJoinMirror(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	for _, tc := range []struct {
		name, server, override string
		port                   int
		want                   string
	}{
		{"the server's registry on the server's host", "https://10.0.0.1:6443", "", 5000, "https://10.0.0.1:5000"},
		{"by name", "https://strata.example:6443", "", 5001, "https://strata.example:5001"},
		{"IPv6", "https://[fd00::1]:6443", "", 5000, "https://[fd00::1]:5000"},
		{"override", "https://10.0.0.1:6443", "https://mirror.example:443/", 5000, "https://mirror.example:443"},
		{"turned off", "https://10.0.0.1:6443", NoRegistry, 5000, ""},
		{"none published", "https://10.0.0.1:6443", "", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jc := JoinConfig{Server: tc.server, Registry: tc.override, Logger: log}
			m, err := joinMirror(jc, ClusterInfo{RegistryPort: tc.port}, caFile)
			if err != nil {
				t.Fatal(err)
			}
			want := containerd.Mirror{}
			if tc.want != "" {
				want = containerd.Mirror{URL: tc.want, CAFile: caFile}
			}
			if m != want {
				t.Errorf("mirror %+v, want %+v", m, want)
			}
		})
	}
}

func TestClusterInfoSettings(t *testing.T) {
	info, err := clusterInfo("https://s:6443", nil, map[string]string{})
	if err != nil || info.ClusterCIDR != DefaultClusterCIDR || info.ClusterDNS != DefaultClusterDNS || info.RegistryPort != 0 {
		t.Errorf("no published settings: %+v, %v; want the defaults", info, err)
	}
	info, err = clusterInfo("https://s:6443", nil, map[string]string{
		ClusterCIDRKey: "10.200.0.0/16", ClusterDNSKey: "10.201.0.10", RegistryPortKey: "5000",
	})
	if err != nil || info.ClusterCIDR != "10.200.0.0/16" || info.ClusterDNS != "10.201.0.10" || info.RegistryPort != 5000 {
		t.Errorf("published settings: %+v, %v", info, err)
	}
	for key, bad := range map[string]string{ClusterCIDRKey: "10.200.0.0", ClusterDNSKey: "dns", RegistryPortKey: "99999"} {
		if _, err := clusterInfo("https://s:6443", nil, map[string]string{key: bad}); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s=%q: error %v, want one naming the key", key, bad, err)
		}
	}
}

package containerd

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/strata-cloud/strata/internal/pki"
	"github.com/strata-cloud/strata/internal/storage/registry"
)

// hostsFor is what containerd's CRI plugin computes for a registry host
// from config_path.
func hostsFor(t *testing.T, certsDir, host string) []docker.RegistryHost {
	t.Helper()
	hosts, err := config.ConfigureHosts(context.Background(), config.HostOptions{HostDir: config.HostDirFromRoot(certsDir)})(host)
	if err != nil {
		t.Fatalf("hosts for %s: %v", host, err)
	}
	return hosts
}

func TestHostsPutTheMirrorFirstForEveryRegistry(t *testing.T) {
	certsDir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(t.TempDir(), "ca", "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	mirror := Mirror{URL: "https://10.0.0.1:5000", CAFile: ca.CertPath}
	if err := WriteHosts(certsDir, mirror); err != nil {
		t.Fatal(err)
	}
	pull := docker.HostCapabilityPull | docker.HostCapabilityResolve
	for _, tc := range []struct{ registry, upstream string }{
		{"docker.io", "registry-1.docker.io"},
		{"registry.example", "registry.example"},
		{"ghcr.io", "ghcr.io"},
		{"registry.example:8443", "registry.example:8443"},
	} {
		t.Run(tc.registry, func(t *testing.T) {
			hosts := hostsFor(t, certsDir, tc.registry)
			if len(hosts) != 2 {
				t.Fatalf("%d hosts, want the mirror and the registry itself: %+v", len(hosts), hosts)
			}
			m, up := hosts[0], hosts[1]
			if m.Scheme != "https" || m.Host != "10.0.0.1:5000" || m.Path != "/v2" || m.Capabilities != pull {
				t.Errorf("mirror host = %s://%s%s caps %b, want https://10.0.0.1:5000/v2 with pull and resolve only", m.Scheme, m.Host, m.Path, m.Capabilities)
			}
			if up.Host != tc.upstream || up.Scheme != "https" || up.Capabilities&docker.HostCapabilityPush == 0 {
				t.Errorf("fallback host = %s://%s caps %b, want https://%s with every capability", up.Scheme, up.Host, up.Capabilities, tc.upstream)
			}
		})
	}
	rendered, err := os.ReadFile(filepath.Join(certsDir, "_default", "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rendered), `ca = "`+ca.CertPath+`"`) {
		t.Errorf("hosts.toml does not name the CA:\n%s", rendered)
	}
	if strings.Contains(string(rendered), "server =") {
		t.Errorf("hosts.toml names a server; each registry must stay its own fallback:\n%s", rendered)
	}

	// No mirror: the file goes, and every registry is reached directly.
	if err := WriteHosts(certsDir, Mirror{}); err != nil {
		t.Fatal(err)
	}
	if hosts := hostsFor(t, certsDir, "docker.io"); len(hosts) != 1 || hosts[0].Host != "registry-1.docker.io" {
		t.Errorf("without a mirror: hosts %+v, want registry-1.docker.io only", hosts)
	}
	if err := WriteHosts(certsDir, Mirror{}); err != nil {
		t.Errorf("removing an absent hosts.toml: %v", err)
	}
}

// TestMirrorServesAndFallsBack resolves images as a node's containerd does,
// with a Strata registry (TLS, trusted through the CA file the hosts.toml
// names) as the mirror and a plain registry as an image's own registry.
func TestMirrorServesAndFallsBack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	loopback := pki.Hosts{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}
	cluster, _, err := pki.EnsureCluster(filepath.Join(dir, "pki"), loopback, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := tls.LoadX509KeyPair(cluster.RegistryCert, cluster.RegistryKey)
	if err != nil {
		t.Fatal(err)
	}

	// The mirror records the ns= parameter containerd adds for mirrors.
	mirrorReg, err := registry.New(filepath.Join(dir, "mirror"), registry.Options{Authorizer: registry.AllowAll{}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var namespaces []string
	mirror := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		namespaces = append(namespaces, r.URL.Query().Get("ns"))
		mu.Unlock()
		mirrorReg.ServeHTTP(w, r)
	}))
	mirror.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}}
	mirror.StartTLS()
	defer mirror.Close()

	upstreamReg, err := registry.New(filepath.Join(dir, "upstream"), registry.Options{Authorizer: registry.AllowAll{}})
	if err != nil {
		t.Fatal(err)
	}
	upstream := httptest.NewServer(upstreamReg)
	defer upstream.Close()
	upstreamHost := strings.TrimPrefix(upstream.URL, "http://")

	push := func(s string, rt http.RoundTripper, opts ...name.Option) string {
		t.Helper()
		ref, err := name.ParseReference(s, opts...)
		if err != nil {
			t.Fatal(err)
		}
		img, err := random.Image(1024, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img, remote.WithTransport(rt)); err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
		d, _ := img.Digest()
		return d.String()
	}
	inMirror := push(strings.TrimPrefix(mirror.URL, "https://")+"/team/app:1", mirror.Client().Transport)
	onlyUpstream := push(upstreamHost+"/team/other:1", http.DefaultTransport, name.Insecure)

	mu.Lock()
	namespaces = nil // what the pushes sent
	mu.Unlock()

	certsDir := filepath.Join(dir, "certs.d")
	if err := WriteHosts(certsDir, Mirror{URL: mirror.URL, CAFile: cluster.CA.CertPath}); err != nil {
		t.Fatal(err)
	}
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: config.ConfigureHosts(ctx, config.HostOptions{HostDir: config.HostDirFromRoot(certsDir)}),
	})
	for _, tc := range []struct {
		ref, want string
	}{
		{upstreamHost + "/team/app:1", inMirror},       // from the mirror
		{upstreamHost + "/team/other:1", onlyUpstream}, // the mirror lacks it: from its own registry
		{upstreamHost + "/team/missing:1", ""},         // nowhere: not found
	} {
		_, desc, err := resolver.Resolve(ctx, tc.ref)
		switch {
		case tc.want == "" && !errdefs.IsNotFound(err):
			t.Errorf("resolve %s: %v, want not found", tc.ref, err)
		case tc.want != "" && err != nil:
			t.Errorf("resolve %s: %v", tc.ref, err)
		case tc.want != "" && desc.Digest.String() != tc.want:
			t.Errorf("resolve %s = %s, want %s", tc.ref, desc.Digest, tc.want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(namespaces) == 0 || namespaces[0] != upstreamHost {
		t.Errorf("mirror saw ns=%q, want %s (the image's own registry)", namespaces, upstreamHost)
	}
}

package server

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/strata-cloud/strata/internal/pki"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRegistryListener serves the registry as the server does and checks
// who may pull and push: anyone pulls, only system:masters pushes.
func TestRegistryListener(t *testing.T) {
	dir := t.TempDir()
	loopback := pki.Hosts{DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}
	cluster, _, err := pki.EnsureCluster(filepath.Join(dir, "pki"), loopback, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{BindAddress: "127.0.0.1", RegistryPort: freePort(t)}
	log := slog.New(slog.DiscardHandler)
	reg, err := listenRegistry(cfg, filepath.Join(dir, "registry"), cluster, log)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- reg.serve() }()
	defer reg.shutdown()

	// A second server on the same port is told which flag to change.
	if _, err := listenRegistry(cfg, filepath.Join(dir, "registry2"), cluster, log); err == nil || !strings.Contains(err.Error(), "--registry-port: cannot listen on") {
		t.Errorf("second listener: %v, want a --registry-port error", err)
	}

	pool := x509.NewCertPool()
	pool.AddCert(cluster.CA.Cert)
	client := func(certName, user string, groups ...string) http.RoundTripper {
		cfg := &tls.Config{RootCAs: pool}
		if certName != "" {
			certFile, keyFile, _, err := cluster.EnsureClientCert(certName, user, groups, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		return &http.Transport{TLSClientConfig: cfg}
	}
	admin := client("admin", pki.AdminUser, pki.MastersGroup)
	node := client("node-n1", "system:node:n1", "system:nodes")
	anonymous := client("", "")

	url := localRegistryURL(cfg)
	ref, err := name.ParseReference(strings.TrimPrefix(url, "https://") + "/library/busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(node)); err == nil || !strings.Contains(err.Error(), "DENIED") || !strings.Contains(err.Error(), pki.MastersGroup) {
		t.Errorf("push with a node certificate: %v, want DENIED naming %s", err, pki.MastersGroup)
	}
	if err := remote.Write(ref, img, remote.WithTransport(anonymous)); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("anonymous push: %v, want UNAUTHORIZED", err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(admin)); err != nil {
		t.Fatalf("push as admin: %v", err)
	}
	for who, rt := range map[string]http.RoundTripper{"anonymous": anonymous, "node": node} {
		got, err := remote.Image(ref, remote.WithTransport(rt))
		if err != nil {
			t.Errorf("%s pull: %v", who, err)
			continue
		}
		if d, _ := got.Digest(); d.String() == "" {
			t.Errorf("%s pull: no digest", who)
		}
	}

	// Renewal rewrites the serving certificate; new connections get it.
	before := servingSerial(t, url, pool)
	if _, err := cluster.CA.Ensure(cluster.RegistryCert, cluster.RegistryKey, pki.Spec{
		CommonName: "strata-registry", DNSNames: []string{"localhost", "registry.example"}, IPs: loopback.IPs, Usage: pki.ServerAuth,
	}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if after := servingSerial(t, url, pool); after == before {
		t.Errorf("serving certificate not reloaded after renewal (serial %s)", after)
	}

	reg.shutdown()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve after shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after shutdown")
	}
}

func servingSerial(t *testing.T, url string, pool *x509.CertPool) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	resp, err := c.Get(url + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/: %s", resp.Status)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.String()
}

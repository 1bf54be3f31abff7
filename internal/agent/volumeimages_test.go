package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRegistryFetcher(t *testing.T) {
	disk := []byte("a disk image")
	sum := sha256.Sum256(disk)
	layer := "sha256:" + hex.EncodeToString(sum[:])
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/vm-images/p/debian/manifests/sha256:m":
			w.Write([]byte(`{"layers":[{"digest":"` + layer + `"}]}`))
		case "/v2/vm-images/p/debian/blobs/" + layer:
			w.Write(disk)
		case "/v2/vm-images/p/bad/manifests/sha256:m":
			w.Write([]byte(`{"layers":[{"digest":"sha256:0000"}]}`))
		case "/v2/vm-images/p/bad/blobs/sha256:0000":
			w.Write(disk)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	f, err := newRegistryFetcher(srv.URL, ca)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "img")
	if err := f.Fetch(context.Background(), "images.strata.invalid/vm-images/p/debian@sha256:m", dst); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); string(got) != string(disk) {
		t.Errorf("fetched %q", got)
	}
	if err := f.Fetch(context.Background(), "images.strata.invalid/vm-images/p/bad@sha256:m", dst); err == nil || !strings.Contains(err.Error(), "hash to") {
		t.Errorf("a blob with other bytes: %v", err)
	}
	if err := f.Fetch(context.Background(), "images.strata.invalid/vm-images/p/nope@sha256:m", dst); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a missing image: %v", err)
	}
	if _, _, err := splitReference("images.strata.invalid/vm-images/p/debian:latest"); err == nil {
		t.Error("a reference by tag was accepted")
	}
	if _, err := newRegistryFetcher("", ""); err == nil {
		t.Error("a fetcher without a registry")
	}
}

package agent

import (
	"bytes"
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-cloud/strata/internal/storage/diskimage"
)

func TestRegistryFetcher(t *testing.T) {
	// The artifact exactly as `strata image upload` makes it.
	disk := append([]byte("a disk image"), make([]byte, 3<<20)...)
	src := filepath.Join(t.TempDir(), "disk.raw")
	os.WriteFile(src, disk, 0o600)
	img, err := diskimage.Artifact(src)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	digest, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	blob, _ := io.ReadAll(rc)
	layer := digest.String()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/vm-images/p/debian/manifests/sha256:m":
			w.Write([]byte(`{"layers":[{"digest":"` + layer + `"}]}`))
		case "/v2/vm-images/p/debian/blobs/" + layer:
			w.Write(blob)
		case "/v2/vm-images/p/bad/manifests/sha256:m":
			w.Write([]byte(`{"layers":[{"digest":"sha256:0000"}]}`))
		case "/v2/vm-images/p/bad/blobs/sha256:0000":
			w.Write(blob)
		case "/v2/vm-images/p/notar/manifests/sha256:m":
			w.Write([]byte(`{"layers":[{"digest":"sha256:1111"}]}`))
		case "/v2/vm-images/p/notar/blobs/sha256:1111":
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
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, disk) {
		t.Errorf("fetched %d bytes starting %q, want the disk", len(got), got[:min(len(got), 12)])
	}
	if err := f.Fetch(context.Background(), "images.strata.invalid/vm-images/p/bad@sha256:m", dst); err == nil || !strings.Contains(err.Error(), "hash to") {
		t.Errorf("a blob with other bytes: %v", err)
	}
	if err := f.Fetch(context.Background(), "images.strata.invalid/vm-images/p/notar@sha256:m", dst); err == nil || !strings.Contains(err.Error(), "no tar") {
		t.Errorf("a layer that is no tar: %v", err)
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

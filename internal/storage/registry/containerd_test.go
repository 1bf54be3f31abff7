package registry

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-cloud/strata/internal/storage/blob"
)

// TestContainerdPullsThroughMirror configures containerd's resolver the way
// a node's containerd can be: the registry as a mirror for every upstream
// registry (hosts.toml under _default), trusted through the cluster CA.
// Pulls of docker.io and ghcr.io names are then served from what was pushed
// under the same repository path.
func TestContainerdPullsThroughMirror(t *testing.T) {
	ctx := context.Background()
	tr := startRegistry(t, t.TempDir(), newTestPKI(t), Options{})
	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, repo := range []string{"library/busybox:1.36", "team/app:v1"} {
		if err := remote.Write(tr.ref(repo), img, remote.WithTransport(tr.pusher)); err != nil {
			t.Fatal(err)
		}
	}

	root := t.TempDir()
	caFile := filepath.Join(root, "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tr.pki.ca.Raw}), 0o644)
	os.MkdirAll(filepath.Join(root, "_default"), 0o755)
	hostsTOML := fmt.Sprintf("[host.\"https://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n", registryHost, caFile)
	os.WriteFile(filepath.Join(root, "_default", "hosts.toml"), []byte(hostsTOML), 0o644)

	addr := tr.srv.Listener.Addr().String()
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: config.ConfigureHosts(ctx, config.HostOptions{
			HostDir: config.HostDirFromRoot(root),
			UpdateClient: func(c *http.Client) error {
				// registry.test is not in DNS: dial the test server.
				c.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, addr)
				}
				return nil
			},
		}),
	})

	wantDigest, _ := img.Digest()
	for _, ref := range []string{"docker.io/library/busybox:1.36", "ghcr.io/team/app:v1", "docker.io/library/busybox@" + wantDigest.String()} {
		t.Run(ref, func(t *testing.T) {
			_, desc, err := resolver.Resolve(ctx, ref)
			if err != nil {
				t.Fatalf("resolve: %v", err)
			}
			if desc.Digest.String() != wantDigest.String() {
				t.Fatalf("resolved %s, want %s", desc.Digest, wantDigest)
			}
			fetcher, err := resolver.Fetcher(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			fetch := func(d ocispec.Descriptor) []byte {
				t.Helper()
				rc, err := fetcher.Fetch(ctx, d)
				if err != nil {
					t.Fatalf("fetch %s: %v", d.Digest, err)
				}
				defer rc.Close()
				b, err := io.ReadAll(rc)
				if err != nil {
					t.Fatal(err)
				}
				if got := blob.FromBytes(b); got.String() != d.Digest.String() {
					t.Fatalf("fetched %s has digest %s", d.Digest, got)
				}
				return b
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(fetch(desc), &m); err != nil {
				t.Fatal(err)
			}
			fetch(m.Config)
			for _, l := range m.Layers {
				fetch(l)
			}
		})
	}
}

package agent

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/strata-cloud/strata/internal/storage/diskimage"
)

// imageFetcher copies a VM Image's disk (an OCI artifact in Strata's
// registry, by digest) to a local file.
type imageFetcher interface {
	Fetch(ctx context.Context, reference, dst string) error
}

// registryFetcher reads artifacts from Strata's registry (the node's
// mirror) over HTTPS, anonymously, as containerd pulls them.
type registryFetcher struct {
	base   string // https://host:port
	client *http.Client
}

func newRegistryFetcher(url, caFile string) (*registryFetcher, error) {
	if url == "" {
		return nil, errors.New("this node has no registry to fetch images from")
	}
	pool := x509.NewCertPool()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool.AppendCertsFromPEM(pem)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ResponseHeaderTimeout: 30 * time.Second}
	return &registryFetcher{base: strings.TrimSuffix(url, "/"), client: &http.Client{Transport: tr}}, nil
}

// splitReference turns REGISTRY/REPO@sha256:HEX into REPO and the digest.
func splitReference(ref string) (repo, digest string, err error) {
	_, rest, ok := strings.Cut(ref, "/")
	if !ok {
		return "", "", fmt.Errorf("image reference %q has no repository", ref)
	}
	repo, digest, ok = strings.Cut(rest, "@")
	if !ok || !strings.HasPrefix(digest, "sha256:") {
		return "", "", fmt.Errorf("image reference %q is not by digest", ref)
	}
	return repo, digest, nil
}

func (r *registryFetcher) get(ctx context.Context, path, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+path, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return resp, nil
}

// Fetch reads the artifact's manifest, then streams its one layer (the
// disk) to dst, checking it against its digest.
func (r *registryFetcher) Fetch(ctx context.Context, reference, dst string) error {
	repo, digest, err := splitReference(reference)
	if err != nil {
		return err
	}
	resp, err := r.get(ctx, "/v2/"+repo+"/manifests/"+digest, "application/vnd.oci.image.manifest.v1+json")
	if err != nil {
		return err
	}
	var manifest struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&manifest)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("manifest of %s: %w", reference, err)
	}
	if len(manifest.Layers) != 1 || !strings.HasPrefix(manifest.Layers[0].Digest, "sha256:") {
		return fmt.Errorf("%s is not a disk image artifact (%d layers)", reference, len(manifest.Layers))
	}
	layer := manifest.Layers[0].Digest
	resp, err = r.get(ctx, "/v2/"+repo+"/blobs/"+layer, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// The layer is a tar (gzip-compressed or not) holding disk.img, as the
	// launcher's image volume needs it; its digest covers the layer's bytes.
	h := sha256.New()
	body := bufio.NewReader(io.TeeReader(resp.Body, h))
	if err := extractDisk(body, dst); err != nil {
		return fmt.Errorf("fetch %s: %w", reference, err)
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		return fmt.Errorf("fetch %s: %w", reference, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != layer {
		return fmt.Errorf("fetch %s: the layer's bytes hash to %s, not %s", reference, got, layer)
	}
	return nil
}

// extractDisk writes the disk.img entry of the layer's tar to dst, sparse.
func extractDisk(layer *bufio.Reader, dst string) error {
	var r io.Reader = layer
	if magic, err := layer.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(layer)
		if err != nil {
			return err
		}
		defer gz.Close()
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("the layer holds no %s", diskimage.FileName)
		}
		if err != nil {
			return fmt.Errorf("the layer is no tar: %w", err)
		}
		if path.Clean(hdr.Name) != diskimage.FileName || hdr.Typeflag != tar.TypeReg {
			continue
		}
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if err := writeSparse(out, tr, hdr.Size); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
		// Drain the rest so the digest covers the whole layer.
		_, err = io.Copy(io.Discard, r)
		return err
	}
}

// writeSparse copies size bytes of r to out, seeking over zero blocks.
func writeSparse(out *os.File, r io.Reader, size int64) error {
	buf, zero := make([]byte, 1<<20), make([]byte, 1<<20)
	var off int64
	for off < size {
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), size-off)])
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				return werr
			}
		}
		off += int64(n)
		if err != nil {
			return fmt.Errorf("the disk is cut short at %d of %d bytes: %w", off, size, err)
		}
	}
	return out.Truncate(size)
}

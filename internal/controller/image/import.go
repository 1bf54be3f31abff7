package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/strata-cloud/strata/internal/storage/blob"
	"github.com/strata-cloud/strata/internal/storage/diskimage"
)

// Store is where imported images are kept: Strata's registry.
type Store interface {
	Blobs() *blob.Store
	PutManifest(ctx context.Context, name, tag, mediaType string, body []byte) (blob.Digest, error)
}

// source is an image to import and the checksum ("sha256:<hex>" or "")
// its bytes must have.
type source struct {
	url, checksum string
}

// imported is what an import stored.
type imported struct {
	info      diskimage.Info
	checksum  string // hex SHA-256 of the image's bytes
	reference string
}

// progress counts an import's bytes; total is -1 while unknown.
type progress struct {
	done, total atomic.Int64
}

// countingReader adds what it reads to n.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// importImage downloads src and stores it in store as the artifact of the
// Image name in namespace, streaming: the bytes go from the response
// through the format check and the hashes into the blob store, never
// whole into memory. Nothing is stored when the bytes are not a bootable
// disk image or do not match the checksum.
func importImage(ctx context.Context, hc *http.Client, store Store, namespace, name string, src source, p *progress) (imported, error) {
	p.total.Store(-1)
	where := redact(src.url)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.url, nil)
	if err != nil {
		return imported{}, fmt.Errorf("url %s: %w", where, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return imported{}, fmt.Errorf("download %s: %w", where, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return imported{}, fmt.Errorf("download %s: HTTP %s", where, resp.Status)
	}
	body := io.Reader(countingReader{resp.Body, &p.done})
	size := resp.ContentLength
	if size < 0 {
		// The tar header of the layer needs the size first: keep the
		// bytes on disk, next to the blobs, until they are all here.
		spool, n, err := spoolFile(ctx, store.Blobs().Dir(), body)
		if err != nil {
			return imported{}, fmt.Errorf("download %s: %w", where, err)
		}
		defer os.Remove(spool.Name())
		defer spool.Close()
		body, size = spool, n
	}
	p.total.Store(size)

	br := bufio.NewReaderSize(body, diskimage.HeaderSize)
	head, err := br.Peek(diskimage.HeaderSize)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return imported{}, fmt.Errorf("download %s: %w", where, err)
	}
	info, err := diskimage.Detect(bytes.NewReader(head), size)
	if err == nil {
		err = diskimage.CheckBootable(info)
	}
	if err != nil {
		return imported{}, fmt.Errorf("%s: %w", where, err)
	}

	sum := sha256.New()
	u, err := store.Blobs().NewUpload(ctx)
	if err != nil {
		return imported{}, err
	}
	diffID, err := diskimage.WriteLayer(u, io.TeeReader(br, sum), size)
	if err != nil {
		u.Cancel()
		return imported{}, fmt.Errorf("download %s: %w", where, err)
	}
	checksum := hex.EncodeToString(sum.Sum(nil))
	if err := diskimage.VerifyChecksum(src.checksum, checksum); err != nil {
		u.Cancel()
		return imported{}, err
	}
	layer, err := u.Commit(ctx, "")
	if err != nil {
		return imported{}, err
	}
	layerDigest, err := v1.NewHash(layer.Digest.String())
	if err != nil {
		return imported{}, err
	}
	config, manifest, err := diskimage.Manifest(v1.Descriptor{Digest: layerDigest, Size: layer.Size}, diffID)
	if err != nil {
		return imported{}, err
	}
	if _, err := store.Blobs().Put(ctx, blob.FromBytes(config), bytes.NewReader(config)); err != nil {
		return imported{}, err
	}
	d, err := store.PutManifest(ctx, diskimage.Repository(namespace, name), checksum[:16], string(types.OCIManifestSchema1), manifest)
	if err != nil {
		return imported{}, fmt.Errorf("store the image: %w", err)
	}
	return imported{info: info, checksum: checksum, reference: diskimage.Reference(namespace, name, d.String())}, nil
}

// spoolFile copies r into a new file in dir and returns it, rewound, with
// its size.
func spoolFile(ctx context.Context, dir string, r io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp(dir, "import-*")
	if err != nil {
		return nil, 0, err
	}
	n, err := io.Copy(f, r)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, err
	}
	return f, n, nil
}

// redact drops a URL's password, which must not end up in status.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return u.Redacted()
}

// unwrapURLError drops the *url.Error wrapper, whose text repeats the
// (unredacted) URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

package glance

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/strata-cloud/strata/internal/storage/blob"
	"github.com/strata-cloud/strata/internal/storage/diskimage"
)

// Store is where image bytes are kept: Strata's registry
// (*registry.Registry), the same Store the image controller imports into.
// Uploads write the disk artifact's blobs into Blobs() and tag its
// manifest with PutManifest; downloads read the manifest and the layer
// back from Blobs().
type Store interface {
	Blobs() *blob.Store
	PutManifest(ctx context.Context, name, tag, mediaType string, body []byte) (blob.Digest, error)
}

// stored is what an upload stored.
type stored struct {
	info                diskimage.Info
	md5, sha256, sha512 string // hex
	reference           string
}

// errTooLarge is an upload over the size limit.
var errTooLarge = errorf(http.StatusRequestEntityTooLarge, "Image exceeds the storage quota: the upload is larger than this cloud allows.")

// limitedReader fails with errTooLarge past n bytes (n < 0: no limit).
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(p)
	}
	if l.n == 0 {
		var one [1]byte
		if k, _ := l.r.Read(one[:]); k > 0 {
			return 0, errTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	k, err := l.r.Read(p)
	if int64(k) > l.n {
		return 0, errTooLarge
	}
	l.n -= int64(k)
	return k, err
}

// storeDisk streams the size bytes of body (size < 0: unknown, spooled to
// disk first) into store as the artifact of the Image name in namespace,
// hashing them on the way (MD5 and SHA-512 as Glance does, SHA-256 as
// Strata does). The format is detected from the bytes; what VMs cannot
// boot is refused with 400 and nothing is stored. max > 0 limits the size.
func storeDisk(ctx context.Context, store Store, namespace, name string, body io.Reader, size, max int64) (stored, error) {
	if max <= 0 {
		max = -1
	}
	if max > 0 && size > max {
		return stored{}, errTooLarge
	}
	body = &limitedReader{r: body, n: max}
	if size < 0 {
		// The layer's tar header needs the size first.
		spool, n, err := spoolFile(ctx, store.Blobs().Dir(), body)
		if err != nil {
			return stored{}, err
		}
		defer os.Remove(spool.Name())
		defer spool.Close()
		body, size = spool, n
	}
	br := bufio.NewReaderSize(body, diskimage.HeaderSize)
	head, err := br.Peek(diskimage.HeaderSize)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return stored{}, uploadError(err)
	}
	info, err := diskimage.Detect(bytes.NewReader(head), size)
	if err == nil {
		err = diskimage.CheckBootable(info)
	}
	if err != nil {
		return stored{}, errorf(http.StatusBadRequest, "The image data is not usable: %v", err)
	}
	hm, h256, h512 := md5.New(), sha256.New(), sha512.New()
	u, err := store.Blobs().NewUpload(ctx)
	if err != nil {
		return stored{}, err
	}
	diffID, err := diskimage.WriteLayer(u, io.TeeReader(br, io.MultiWriter(hm, h256, h512)), size)
	if err != nil {
		u.Cancel()
		return stored{}, uploadError(err)
	}
	layer, err := u.Commit(ctx, "")
	if err != nil {
		return stored{}, err
	}
	layerDigest, err := v1.NewHash(layer.Digest.String())
	if err != nil {
		return stored{}, err
	}
	config, manifest, err := diskimage.Manifest(v1.Descriptor{Digest: layerDigest, Size: layer.Size}, diffID)
	if err != nil {
		return stored{}, err
	}
	if _, err := store.Blobs().Put(ctx, blob.FromBytes(config), bytes.NewReader(config)); err != nil {
		return stored{}, err
	}
	s := stored{info: info, md5: hex.EncodeToString(hm.Sum(nil)), sha256: hex.EncodeToString(h256.Sum(nil)), sha512: hex.EncodeToString(h512.Sum(nil))}
	d, err := store.PutManifest(ctx, diskimage.Repository(namespace, name), s.sha256[:16], string(types.OCIManifestSchema1), manifest)
	if err != nil {
		return stored{}, fmt.Errorf("store the image: %w", err)
	}
	s.reference = diskimage.Reference(namespace, name, d.String())
	return s, nil
}

// uploadError keeps an *Error (too large) and makes a short body a 400.
func uploadError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "the image ended after") {
		return errorf(http.StatusBadRequest, "The upload ended early: %v", err)
	}
	return err
}

// spoolFile copies r into a new file in dir and returns it, rewound, with
// its size.
func spoolFile(ctx context.Context, dir string, r io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp(dir, "glance-upload-*")
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
		return nil, 0, uploadError(err)
	}
	return f, n, nil
}

// openDisk opens the disk file of the artifact reference
// ("REGISTRY/REPO@sha256:..."), as any upload or import stores it, and
// returns it with its size.
func openDisk(ctx context.Context, blobs *blob.Store, reference string) (io.ReadCloser, int64, error) {
	_, dig, ok := strings.Cut(reference, "@")
	if !ok {
		return nil, 0, fmt.Errorf("image reference %q has no digest", reference)
	}
	d, err := blob.ParseDigest(dig)
	if err != nil {
		return nil, 0, err
	}
	raw, err := blobs.ReadAll(ctx, d)
	if err != nil {
		return nil, 0, fmt.Errorf("read the image's manifest: %w", err)
	}
	var m struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil || len(m.Layers) != 1 {
		return nil, 0, fmt.Errorf("the image's manifest is not a disk artifact's")
	}
	ld, err := blob.ParseDigest(m.Layers[0].Digest)
	if err != nil {
		return nil, 0, err
	}
	f, _, err := blobs.Open(ctx, ld)
	if err != nil {
		return nil, 0, fmt.Errorf("open the image's layer: %w", err)
	}
	br := bufio.NewReader(f)
	var layer io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		layer = zr
	}
	tr := tar.NewReader(layer)
	h, err := tr.Next()
	if err == nil && h.Name != diskimage.FileName {
		err = fmt.Errorf("the artifact's layer holds %s, not %s", h.Name, diskimage.FileName)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return struct {
		io.Reader
		io.Closer
	}{tr, f}, h.Size, nil
}

// ParseRange reads a Range header of one byte range over size bytes; ok
// is false when it cannot be satisfied. An empty or multi-range header
// means the whole file (whole is true).
func ParseRange(header string, size int64) (start, end int64, whole, ok bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(header), "bytes=")
	if header == "" || !found || strings.Contains(spec, ",") {
		return 0, size - 1, true, true
	}
	a, b, found := strings.Cut(spec, "-")
	if !found {
		return 0, 0, false, false
	}
	switch {
	case a == "": // the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 || size == 0 {
			return 0, 0, false, false
		}
		return max(size-n, 0), size - 1, false, true
	default:
		s, err := strconv.ParseInt(a, 10, 64)
		if err != nil || s < 0 || s >= size {
			return 0, 0, false, false
		}
		e := size - 1
		if b != "" {
			e, err = strconv.ParseInt(b, 10, 64)
			if err != nil || e < s {
				return 0, 0, false, false
			}
			e = min(e, size-1)
		}
		return s, e, false, true
	}
}

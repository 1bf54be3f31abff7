// Package blob owns Strata's content-addressed blob store on local disk: the
// bytes behind the OCI registry (image layers, configs, manifests) and, later,
// other image-like content.
//
// A blob lives at DIR/blobs/sha256/<hex>. Writes stream into a temporary file
// under DIR/uploads, are hashed on the way, and are renamed into place only
// after the digest has been verified, so a corrupt or truncated upload is never
// visible. Blobs are immutable once committed; concurrent writers of the same
// content all succeed and leave one copy.
package blob

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Errors returned by the store; test with errors.Is.
var (
	// ErrNotFound means no blob (or upload) with that digest (or id) exists.
	ErrNotFound = errors.New("blob: not found")
	// ErrDigestMismatch means written content did not hash to the expected digest.
	ErrDigestMismatch = errors.New("blob: digest mismatch")
	// ErrInvalidDigest means a digest string is malformed.
	ErrInvalidDigest = errors.New("blob: invalid digest")
	// ErrUnsupportedDigest means a well-formed digest uses an algorithm other than sha256.
	ErrUnsupportedDigest = errors.New("blob: unsupported digest algorithm")
)

// Digest is a content digest in its canonical form, "sha256:<64 lowercase hex>".
type Digest string

// ParseDigest validates s and returns it as a Digest. Only sha256 is
// supported; other well-formed algorithms return ErrUnsupportedDigest.
func ParseDigest(s string) (Digest, error) {
	alg, enc, ok := strings.Cut(s, ":")
	if !ok || alg == "" || enc == "" {
		return "", fmt.Errorf("%w: %q", ErrInvalidDigest, s)
	}
	for _, c := range alg {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '.' || c == '_' || c == '-') {
			return "", fmt.Errorf("%w: %q", ErrInvalidDigest, s)
		}
	}
	if alg != "sha256" {
		return "", fmt.Errorf("%w: %q", ErrUnsupportedDigest, alg)
	}
	if len(enc) != 64 {
		return "", fmt.Errorf("%w: %q", ErrInvalidDigest, s)
	}
	for _, c := range enc {
		if !(c >= 'a' && c <= 'f' || c >= '0' && c <= '9') {
			return "", fmt.Errorf("%w: %q", ErrInvalidDigest, s)
		}
	}
	return Digest(s), nil
}

// FromBytes returns the sha256 digest of b.
func FromBytes(b []byte) Digest {
	sum := sha256.Sum256(b)
	return Digest("sha256:" + hex.EncodeToString(sum[:]))
}

// Hex returns the encoded part of d, without the algorithm.
func (d Digest) Hex() string {
	_, enc, _ := strings.Cut(string(d), ":")
	return enc
}

func (d Digest) String() string { return string(d) }

// Info describes a committed blob.
type Info struct {
	Digest Digest
	Size   int64
}

// Store is a content-addressed blob store rooted at one directory.
// It is safe for concurrent use by several goroutines and processes.
type Store struct {
	dir string
}

// New opens (creating if needed) the store rooted at dir.
func New(dir string) (*Store, error) {
	s := &Store{dir: dir}
	for _, d := range []string{s.blobDir(), s.uploadDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("blob store: %w", err)
		}
	}
	return s, nil
}

// Dir returns the store's root directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) blobDir() string   { return filepath.Join(s.dir, "blobs", "sha256") }
func (s *Store) uploadDir() string { return filepath.Join(s.dir, "uploads") }

func (s *Store) path(d Digest) string { return filepath.Join(s.blobDir(), d.Hex()) }

// Stat returns the size of blob d, or ErrNotFound.
func (s *Store) Stat(ctx context.Context, d Digest) (Info, error) {
	if _, err := ParseDigest(string(d)); err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return Info{}, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return Info{Digest: d, Size: fi.Size()}, nil
}

// Open opens blob d for reading. The reader seeks, so callers can serve
// byte ranges; the caller must close it.
func (s *Store) Open(ctx context.Context, d Digest) (io.ReadSeekCloser, Info, error) {
	if _, err := ParseDigest(string(d)); err != nil {
		return nil, Info{}, err
	}
	f, err := os.Open(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Info{}, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return nil, Info{}, fmt.Errorf("open blob %s: %w", d, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, Info{}, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return f, Info{Digest: d, Size: fi.Size()}, nil
}

// ReadAll returns the content of blob d; meant for small blobs such as manifests.
func (s *Store) ReadAll(ctx context.Context, d Digest) ([]byte, error) {
	r, _, err := s.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d, err)
	}
	return b, nil
}

// Delete removes blob d. Readers that already opened it keep reading it.
func (s *Store) Delete(ctx context.Context, d Digest) error {
	if _, err := ParseDigest(string(d)); err != nil {
		return err
	}
	err := os.Remove(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// Put streams r into the store. If expected is not empty the content must
// hash to it, or nothing is stored and ErrDigestMismatch is returned.
func (s *Store) Put(ctx context.Context, expected Digest, r io.Reader) (Info, error) {
	if expected != "" {
		if _, err := ParseDigest(string(expected)); err != nil {
			return Info{}, err
		}
	}
	u, err := s.NewUpload(ctx)
	if err != nil {
		return Info{}, err
	}
	defer u.Close()
	if _, err := copyContext(ctx, u, r); err != nil {
		u.Cancel()
		return Info{}, err
	}
	return u.Commit(ctx, expected)
}

// Walk calls fn for every committed blob, in no particular order.
func (s *Store) Walk(ctx context.Context, fn func(Info) error) error {
	entries, err := os.ReadDir(s.blobDir())
	if err != nil {
		return fmt.Errorf("list blobs: %w", err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		d, err := ParseDigest("sha256:" + e.Name())
		if err != nil || !e.Type().IsRegular() {
			continue // not a blob (e.g. a stray file); leave it alone
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return fmt.Errorf("stat blob %s: %w", d, err)
		}
		if err := fn(Info{Digest: d, Size: fi.Size()}); err != nil {
			return err
		}
	}
	return nil
}

// Usage returns the number of committed blobs and their total size in bytes.
func (s *Store) Usage(ctx context.Context) (count int, bytes int64, err error) {
	err = s.Walk(ctx, func(i Info) error {
		count++
		bytes += i.Size
		return nil
	})
	return count, bytes, err
}

// PurgeUploads removes uploads not written to since before, returning how
// many it removed. Run it now and then: clients may abandon uploads.
func (s *Store) PurgeUploads(ctx context.Context, before time.Time) (int, error) {
	entries, err := os.ReadDir(s.uploadDir())
	if err != nil {
		return 0, fmt.Errorf("list uploads: %w", err)
	}
	n := 0
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		fi, err := e.Info()
		if err != nil || !fi.ModTime().Before(before) {
			continue
		}
		if os.Remove(filepath.Join(s.uploadDir(), e.Name())) == nil && !strings.HasSuffix(e.Name(), stateSuffix) {
			n++
		}
	}
	return n, nil
}

// copyContext is io.Copy that stops between chunks once ctx is done.
func copyContext(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		nr, rerr := r.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// resumableHash is what crypto/sha256 provides: a hash whose state can be
// saved between requests of a chunked upload.
type resumableHash interface {
	hash.Hash
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

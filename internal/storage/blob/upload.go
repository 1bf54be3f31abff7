package blob

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

const stateSuffix = ".state"

// Upload is an in-progress write of one blob: a temporary file under
// DIR/uploads and the running sha256 of what was written. An upload can span
// several HTTP requests (and server restarts): Close saves the hash state
// next to the data, and Store.ResumeUpload picks it up again.
//
// An Upload is used by one goroutine at a time.
type Upload struct {
	store *Store
	id    string
	f     *os.File
	h     resumableHash
	size  int64
}

// NewUpload starts an empty upload with a fresh random id.
func (s *Store) NewUpload(ctx context.Context) (*Upload, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("new upload id: %w", err)
	}
	id := hex.EncodeToString(b[:])
	f, err := os.OpenFile(filepath.Join(s.uploadDir(), id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("new upload: %w", err)
	}
	return &Upload{store: s, id: id, f: f, h: sha256.New().(resumableHash)}, nil
}

// ValidUploadID reports whether id has the form NewUpload gives, so that a
// client-supplied id can never name a path outside the upload directory.
func ValidUploadID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// ResumeUpload reopens upload id for appending, or returns ErrNotFound.
func (s *Store) ResumeUpload(ctx context.Context, id string) (*Upload, error) {
	if !ValidUploadID(id) {
		return nil, fmt.Errorf("%w: upload %q", ErrNotFound, id)
	}
	p := filepath.Join(s.uploadDir(), id)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: upload %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("resume upload %s: %w", id, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("resume upload %s: %w", id, err)
	}
	u := &Upload{store: s, id: id, f: f, h: sha256.New().(resumableHash), size: fi.Size()}
	if !u.loadState() {
		// No saved state matching the data (e.g. a crash mid-write): hash
		// what is on disk.
		u.h.Reset()
		if _, err := copyContext(ctx, u.h, io.NewSectionReader(f, 0, u.size)); err != nil {
			f.Close()
			return nil, fmt.Errorf("resume upload %s: rehash: %w", id, err)
		}
	}
	return u, nil
}

// loadState restores the saved hash state if it matches the data's size.
func (u *Upload) loadState() bool {
	b, err := os.ReadFile(u.statePath())
	if err != nil || len(b) < 8 {
		return false
	}
	if int64(binary.BigEndian.Uint64(b[:8])) != u.size {
		return false
	}
	return u.h.UnmarshalBinary(b[8:]) == nil
}

func (u *Upload) statePath() string {
	return filepath.Join(u.store.uploadDir(), u.id+stateSuffix)
}

// ID identifies the upload for ResumeUpload.
func (u *Upload) ID() string { return u.id }

// Size is the number of bytes written so far.
func (u *Upload) Size() int64 { return u.size }

// Write appends p to the upload.
func (u *Upload) Write(p []byte) (int, error) {
	if u.f == nil {
		return 0, fmt.Errorf("upload %s: %w", u.id, os.ErrClosed)
	}
	n, err := u.f.Write(p)
	u.h.Write(p[:n])
	u.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("upload %s: %w", u.id, err)
	}
	return n, nil
}

// Digest is the digest of what was written so far.
func (u *Upload) Digest() Digest {
	return Digest("sha256:" + hex.EncodeToString(u.h.Sum(nil)))
}

// Close saves the upload's state so it can be resumed, and releases the
// file. It is a no-op after Commit or Cancel.
func (u *Upload) Close() error {
	if u.f == nil {
		return nil
	}
	err := u.f.Close()
	u.f = nil
	if err != nil {
		return fmt.Errorf("close upload %s: %w", u.id, err)
	}
	st, err := u.h.MarshalBinary()
	if err != nil {
		return fmt.Errorf("save upload %s: %w", u.id, err)
	}
	b := binary.BigEndian.AppendUint64(nil, uint64(u.size))
	b = append(b, st...)
	// A torn state file is harmless: its size will not match and
	// ResumeUpload rehashes.
	if err := os.WriteFile(u.statePath(), b, 0o644); err != nil {
		return fmt.Errorf("save upload %s: %w", u.id, err)
	}
	return nil
}

// Cancel discards the upload.
func (u *Upload) Cancel() error {
	if u.f != nil {
		u.f.Close()
		u.f = nil
	}
	os.Remove(u.statePath())
	if err := os.Remove(filepath.Join(u.store.uploadDir(), u.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cancel upload %s: %w", u.id, err)
	}
	return nil
}

// Commit verifies the content against expected (when not empty) and makes
// it visible as a blob. On a mismatch the upload is discarded and an error
// wrapping ErrDigestMismatch is returned. Either way the upload is finished.
func (u *Upload) Commit(ctx context.Context, expected Digest) (Info, error) {
	if u.f == nil {
		return Info{}, fmt.Errorf("commit upload %s: %w", u.id, os.ErrClosed)
	}
	got := u.Digest()
	info := Info{Digest: got, Size: u.size}
	if expected != "" && expected != got {
		u.Cancel()
		return Info{}, fmt.Errorf("%w: expected %s, got %s", ErrDigestMismatch, expected, got)
	}
	if err := ctx.Err(); err != nil {
		u.Cancel()
		return Info{}, err
	}
	if err := u.f.Sync(); err != nil {
		u.Cancel()
		return Info{}, fmt.Errorf("commit upload %s: %w", u.id, err)
	}
	if err := u.f.Close(); err != nil {
		u.f = nil
		u.Cancel()
		return Info{}, fmt.Errorf("commit upload %s: %w", u.id, err)
	}
	u.f = nil
	os.Remove(u.statePath())
	tmp := filepath.Join(u.store.uploadDir(), u.id)
	target := u.store.path(got)
	if _, err := os.Stat(target); err == nil {
		// Already there (content addressing makes both copies equal).
		os.Remove(tmp)
		return info, nil
	}
	// Rename is atomic: concurrent committers of the same content each
	// replace the file with an identical one.
	if err := os.Rename(tmp, target); err != nil {
		os.Remove(tmp)
		return Info{}, fmt.Errorf("commit blob %s: %w", got, err)
	}
	if d, err := os.Open(u.store.blobDir()); err == nil {
		d.Sync() // make the rename durable; best effort
		d.Close()
	}
	return info, nil
}

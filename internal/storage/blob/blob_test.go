package blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseDigest(t *testing.T) {
	good := FromBytes([]byte("x"))
	tests := []struct {
		in      string
		wantErr error
	}{
		{string(good), nil},
		{"sha256:" + strings.Repeat("a", 64), nil},
		{"sha256:" + strings.Repeat("A", 64), ErrInvalidDigest},
		{"sha256:" + strings.Repeat("a", 63), ErrInvalidDigest},
		{"sha256:" + strings.Repeat("g", 64), ErrInvalidDigest},
		{"sha256:../../etc/passwd", ErrInvalidDigest},
		{"sha256:", ErrInvalidDigest},
		{"sha256", ErrInvalidDigest},
		{"", ErrInvalidDigest},
		{"SHA256:" + strings.Repeat("a", 64), ErrInvalidDigest},
		{"sha512:" + strings.Repeat("a", 128), ErrUnsupportedDigest},
	}
	for _, tt := range tests {
		_, err := ParseDigest(tt.in)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("ParseDigest(%q) = %v, want %v", tt.in, err, tt.wantErr)
		}
	}
}

// failingReader returns data and then an error, like a dropped connection.
type failingReader struct{ r io.Reader }

func (f failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func TestPut(t *testing.T) {
	content := []byte("hello, blob")
	d := FromBytes(content)
	tests := []struct {
		name     string
		expected Digest
		r        io.Reader
		wantErr  error
		wantBlob bool
	}{
		{"verified", d, bytes.NewReader(content), nil, true},
		{"unverified", "", bytes.NewReader(content), nil, true},
		{"empty blob", FromBytes(nil), bytes.NewReader(nil), nil, false},
		{"digest mismatch", FromBytes([]byte("other")), bytes.NewReader(content), ErrDigestMismatch, false},
		{"truncated", d, bytes.NewReader(content[:5]), ErrDigestMismatch, false},
		{"reader fails", d, failingReader{bytes.NewReader(content)}, io.ErrUnexpectedEOF, false},
		{"invalid expected digest", "sha256:nope", bytes.NewReader(content), ErrInvalidDigest, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t)
			info, err := s.Put(ctx, tt.expected, tt.r)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Put error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && tt.expected != "" && info.Digest != tt.expected {
				t.Errorf("Put digest = %s, want %s", info.Digest, tt.expected)
			}
			_, statErr := s.Stat(ctx, d)
			if gotBlob := statErr == nil; gotBlob != tt.wantBlob {
				t.Errorf("blob %s visible = %v, want %v (%v)", d, gotBlob, tt.wantBlob, statErr)
			}
			if err != nil && !errors.Is(statErr, ErrNotFound) {
				t.Errorf("Stat after failed Put = %v, want ErrNotFound", statErr)
			}
			left, _ := os.ReadDir(s.uploadDir())
			if len(left) != 0 {
				t.Errorf("uploads left behind: %v", left)
			}
		})
	}
}

func TestOpenSeekDeleteUsage(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a, b := []byte("0123456789"), []byte("abc")
	da, _ := s.Put(ctx, "", bytes.NewReader(a))
	if _, err := s.Put(ctx, "", bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if n, size, err := s.Usage(ctx); err != nil || n != 2 || size != 13 {
		t.Fatalf("Usage = %d, %d, %v; want 2, 13", n, size, err)
	}

	r, info, err := s.Open(ctx, da.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != 10 {
		t.Errorf("size = %d", info.Size)
	}
	if _, err := r.Seek(4, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "456" {
		t.Errorf("read after seek = %q, %v", buf, err)
	}
	r.Close()

	if err := s.Delete(ctx, da.Digest); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		s.Delete(ctx, da.Digest),
		func() error { _, err := s.Stat(ctx, da.Digest); return err }(),
		func() error { _, _, err := s.Open(ctx, da.Digest); return err }(),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("after delete: %v, want ErrNotFound", err)
		}
	}
	if _, _, err := s.Open(ctx, "sha256:../x"); !errors.Is(err, ErrInvalidDigest) {
		t.Errorf("Open(bad digest) = %v", err)
	}
}

func TestResumeUpload(t *testing.T) {
	tests := []struct {
		name      string
		dropState bool // simulate a crash before the state was saved
	}{
		{"with saved state", false},
		{"rehash without state", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s, _ := New(dir)
			u, err := s.NewUpload(ctx)
			if err != nil {
				t.Fatal(err)
			}
			id := u.ID()
			io.WriteString(u, "part one, ")
			if err := u.Close(); err != nil {
				t.Fatal(err)
			}
			if tt.dropState {
				os.Remove(filepath.Join(dir, "uploads", id+stateSuffix))
			}
			s2, _ := New(dir) // a restarted server
			u2, err := s2.ResumeUpload(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if u2.Size() != 10 {
				t.Errorf("resumed size = %d, want 10", u2.Size())
			}
			io.WriteString(u2, "part two")
			want := FromBytes([]byte("part one, part two"))
			info, err := u2.Commit(ctx, want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s2.ReadAll(ctx, info.Digest)
			if err != nil || string(got) != "part one, part two" {
				t.Errorf("content = %q, %v", got, err)
			}
			if _, err := s2.ResumeUpload(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("resume after commit = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestResumeUploadInvalidID(t *testing.T) {
	s := newStore(t)
	for _, id := range []string{"", "../blobs", strings.Repeat("z", 32), strings.Repeat("a", 31)} {
		if _, err := s.ResumeUpload(context.Background(), id); !errors.Is(err, ErrNotFound) {
			t.Errorf("ResumeUpload(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestConcurrentPutSameBlob(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	content := bytes.Repeat([]byte("layer"), 100000)
	d := FromBytes(content)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Put(ctx, d, bytes.NewReader(content))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	got, err := s.ReadAll(ctx, d)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("content differs (%v)", err)
	}
	if n, _, _ := s.Usage(ctx); n != 1 {
		t.Errorf("%d blobs, want 1", n)
	}
}

func TestPurgeUploads(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	old, _ := s.NewUpload(ctx)
	old.Close()
	past := time.Now().Add(-2 * time.Hour)
	os.Chtimes(filepath.Join(s.uploadDir(), old.ID()), past, past)
	os.Chtimes(old.statePath(), past, past)
	fresh, _ := s.NewUpload(ctx)
	fresh.Close()

	n, err := s.PurgeUploads(ctx, time.Now().Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("PurgeUploads = %d, %v; want 1", n, err)
	}
	if _, err := s.ResumeUpload(ctx, old.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("old upload still there: %v", err)
	}
	if _, err := s.ResumeUpload(ctx, fresh.ID()); err != nil {
		t.Errorf("fresh upload gone: %v", err)
	}
}

func TestPutCanceledContext(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, "", strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put = %v, want context.Canceled", err)
	}
}

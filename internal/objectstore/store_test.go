package objectstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const acct = "AUTH_p"

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dataFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"data", "tmp"} {
		filepath.WalkDir(filepath.Join(dir, sub), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

func put(t *testing.T, s *Store, c, name, content string) Object {
	t.Helper()
	o, err := s.Put(context.Background(), acct, c, name, strings.NewReader(content), PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func read(t *testing.T, s *Store, c, name string) string {
	t.Helper()
	_, r, err := s.Get(context.Background(), acct, c, name, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// failingReader yields n bytes, then fails: a client that died mid-upload.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	k := min(len(p), f.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	f.n -= k
	return k, nil
}

// TestInterruptedUpload: an upload that fails mid-stream leaves neither an
// object nor a file, and an overwrite that fails keeps the old object.
func TestInterruptedUpload(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	s.CreateContainer(ctx, acct, "c", nil)
	put(t, s, "c", "keep", "old content")
	for _, name := range []string{"new", "keep"} {
		_, err := s.Put(ctx, acct, "c", name, &failingReader{n: 3 << 20}, PutOptions{Size: -1})
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("put %s: %v, want ErrUnexpectedEOF", name, err)
		}
	}
	if _, err := s.Stat(ctx, acct, "c", "new"); !errors.Is(err, ErrNoObject) {
		t.Errorf("partial object visible: %v", err)
	}
	if got := read(t, s, "c", "keep"); got != "old content" {
		t.Errorf("keep = %q", got)
	}
	if n := len(dataFiles(t, dir)); n != 1 {
		t.Errorf("%d files on disk, want 1", n)
	}
	// A short body (Content-Length promised more) is not stored either.
	if _, err := s.Put(ctx, acct, "c", "short", strings.NewReader("abc"), PutOptions{Size: 10}); !errors.Is(err, ErrIncomplete) {
		t.Errorf("short put: %v", err)
	}
	s.Close()
}

// TestCrashRecovery simulates kill -9 at each step of a write: a temp file
// mid-write, a data file renamed but never committed. Reopening the store
// removes both and keeps every committed object.
func TestCrashRecovery(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	s.CreateContainer(ctx, acct, "c", nil)
	put(t, s, "c", "a", "committed")
	// Killed mid-write: bytes in tmp.
	os.WriteFile(filepath.Join(dir, "tmp", newID()), []byte("partial"), 0o640)
	// Killed between rename and metadata commit: writeData done, no commit.
	w, err := s.writeData(ctx, strings.NewReader("orphan"), 100)
	if err != nil {
		t.Fatal(err)
	}
	// Killed mid multipart upload: a part committed, the upload never
	// completed; it stays an (invisible) upload, not an object.
	u, _ := s.CreateUpload(ctx, acct, "c", "mp", PutOptions{})
	if _, err := s.PutPart(ctx, u.ID, 1, strings.NewReader("part one"), nil, -1); err != nil {
		t.Fatal(err)
	}
	s.Close() // bbolt needs its lock back; the files stay as a crash left them

	s = open(t, dir)
	defer s.Close()
	if _, err := os.Stat(s.dataPath(w.ID)); !os.IsNotExist(err) {
		t.Errorf("orphan data file survived reopen: %v", err)
	}
	if got := read(t, s, "c", "a"); got != "committed" {
		t.Errorf("a = %q", got)
	}
	if _, err := s.Stat(ctx, acct, "c", "mp"); !errors.Is(err, ErrNoObject) {
		t.Errorf("unfinished multipart visible: %v", err)
	}
	if n := len(dataFiles(t, dir)); n != 2 { // "a" and the part
		t.Errorf("%d files after recovery, want 2: %v", n, dataFiles(t, dir))
	}
	o, err := s.CompleteUpload(ctx, u.ID, []CompletePart{{1, ""}})
	if !errors.Is(err, ErrInvalidPart) {
		t.Errorf("complete with wrong etag: %v %v", o, err)
	}
}

func TestObjects(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	if _, err := s.Put(ctx, acct, "nope", "x", strings.NewReader("x"), PutOptions{Size: -1}); !errors.Is(err, ErrNoContainer) {
		t.Errorf("put into missing container: %v", err)
	}
	if created, _ := s.CreateContainer(ctx, acct, "c", map[string]string{"K": "v"}); !created {
		t.Error("not created")
	}
	if created, _ := s.CreateContainer(ctx, acct, "c", nil); created {
		t.Error("created twice")
	}
	o := put(t, s, "c", "x", "hello")
	if sum := md5.Sum([]byte("hello")); o.ETag != hex.EncodeToString(sum[:]) {
		t.Errorf("etag %s", o.ETag)
	}
	wrong := md5.Sum([]byte("other"))
	if _, err := s.Put(ctx, acct, "c", "y", strings.NewReader("hello"), PutOptions{Size: -1, MD5: wrong[:]}); !errors.Is(err, ErrBadDigest) {
		t.Errorf("bad md5: %v", err)
	}
	put(t, s, "c", "x", "hello again") // overwrite
	put(t, s, "c", "empty", "")
	c, _ := s.Container(ctx, acct, "c")
	if c.Objects != 2 || c.Bytes != 11 || c.Meta["k"] != "v" {
		t.Errorf("container %+v", c)
	}
	if n := len(dataFiles(t, dir)); n != 1 {
		t.Errorf("%d data files, want 1 (overwritten data removed, empty object has none)", n)
	}
	// Copy hard-links.
	if _, err := s.Copy(ctx, acct, "c", "x", "c", "x2", map[string]string{"a": "b"}, nil, ""); err != nil {
		t.Fatal(err)
	}
	s.Delete(ctx, acct, "c", "x")
	if got := read(t, s, "c", "x2"); got != "hello again" {
		t.Errorf("copy = %q", got)
	}
	if err := s.DeleteContainer(ctx, acct, "c"); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("delete non-empty: %v", err)
	}
	// Other accounts see nothing.
	if _, err := s.Stat(ctx, "AUTH_other", "c", "x2"); !errors.Is(err, ErrNoContainer) {
		t.Errorf("other account: %v", err)
	}
	// Range reads through the Reader.
	_, r, _ := s.Get(ctx, acct, "c", "x2", true)
	r.Seek(6, io.SeekStart)
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "again" {
		t.Errorf("seek read %q", b)
	}
}

func TestList(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	s.CreateContainer(ctx, acct, "c", nil)
	for _, n := range []string{"a", "b/1", "b/2", "b/3/x", "c", "d/1", "e"} {
		put(t, s, "c", n, n)
	}
	names := func(es []Entry) string {
		var out []string
		for _, e := range es {
			if e.Subdir != "" {
				out = append(out, e.Subdir)
			} else {
				out = append(out, e.Name)
			}
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		opt   ListOptions
		want  string
		trunc bool
	}{
		{ListOptions{}, "a,b/1,b/2,b/3/x,c,d/1,e", false},
		{ListOptions{Delimiter: "/"}, "a,b/,c,d/,e", false},
		{ListOptions{Delimiter: "/", Limit: 2}, "a,b/", true},
		{ListOptions{Delimiter: "/", Marker: "b/", Limit: 2}, "c,d/", true},
		{ListOptions{Delimiter: "/", Marker: "d/"}, "e", false},
		{ListOptions{Prefix: "b/", Delimiter: "/"}, "b/1,b/2,b/3/", false},
		{ListOptions{Prefix: "b/", Marker: "b/1"}, "b/2,b/3/x", false},
		{ListOptions{Marker: "a", EndMarker: "c"}, "b/1,b/2,b/3/x", false},
		{ListOptions{Prefix: "zz"}, "", false},
	} {
		es, trunc, err := s.List(ctx, acct, "c", tc.opt)
		if err != nil || names(es) != tc.want || trunc != tc.trunc {
			t.Errorf("%+v: %q %v %v, want %q %v", tc.opt, names(es), trunc, err, tc.want, tc.trunc)
		}
	}
	for i := range 3 {
		s.CreateContainer(ctx, acct, fmt.Sprintf("k%d", i), nil)
	}
	cs, trunc, _ := s.ListContainers(ctx, acct, ListOptions{Marker: "c", Limit: 2})
	if len(cs) != 2 || cs[0].Name != "k0" || !trunc {
		t.Errorf("containers %+v %v", cs, trunc)
	}
}

func TestMultipartAndManifests(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	s.CreateContainer(ctx, acct, "c", nil)
	u, err := s.CreateUpload(ctx, acct, "c", "big", PutOptions{ContentType: "text/x", Meta: map[string]string{"M": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	p1 := bytes.Repeat([]byte("1"), MinPartSize)
	p2 := []byte("tail")
	var parts []CompletePart
	h := md5.New()
	for i, p := range [][]byte{p1, []byte("replaced"), p2} {
		n := min(i+1, 2)
		part, err := s.PutPart(ctx, u.ID, n, bytes.NewReader(p), nil, int64(len(p)))
		if err != nil {
			t.Fatal(err)
		}
		if i != 1 {
			parts = append(parts, CompletePart{n, `"` + part.ETag + `"`})
			sum := md5.Sum(p)
			h.Write(sum[:])
		}
	}
	if _, err := s.Stat(ctx, acct, "c", "big"); !errors.Is(err, ErrNoObject) {
		t.Error("parts visible before complete")
	}
	if _, err := s.CompleteUpload(ctx, u.ID, []CompletePart{parts[1], parts[0]}); !errors.Is(err, ErrPartOrder) {
		t.Errorf("out of order: %v", err)
	}
	o, err := s.CompleteUpload(ctx, u.ID, parts)
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(h.Sum(nil)) + "-2"; o.ETag != want || o.Size != int64(len(p1)+len(p2)) {
		t.Errorf("complete: %s %d, want %s", o.ETag, o.Size, want)
	}
	if got := read(t, s, "c", "big"); got != string(p1)+"tail" {
		t.Errorf("content of %d bytes", len(got))
	}
	if _, err := s.GetUpload(ctx, u.ID); !errors.Is(err, ErrNoUpload) {
		t.Errorf("upload still there: %v", err)
	}
	if n := len(dataFiles(t, dir)); n != 2 {
		t.Errorf("%d data files, want 2", n)
	}

	// Swift manifests.
	put(t, s, "c", "seg/1", "abc")
	put(t, s, "c", "seg/2", "def")
	s.Put(ctx, acct, "c", "dlo", nil, PutOptions{Size: -1, Manifest: "c/seg/"})
	if got := read(t, s, "c", "dlo"); got != "abcdef" {
		t.Errorf("dlo = %q", got)
	}
	e1, _ := s.Stat(ctx, acct, "c", "seg/1")
	e2, _ := s.Stat(ctx, acct, "c", "seg/2")
	s.Put(ctx, acct, "c", "slo", nil, PutOptions{Size: -1, SLO: []Segment{{"/c/seg/2", e2.ETag, 3}, {"/c/seg/1", e1.ETag, 3}}})
	o, _, _ = s.Get(ctx, acct, "c", "slo", false)
	if sum := md5.Sum([]byte(e2.ETag + e1.ETag)); o.Size != 6 || o.ETag != hex.EncodeToString(sum[:]) {
		t.Errorf("slo %d %s", o.Size, o.ETag)
	}
	if got := read(t, s, "c", "slo"); got != "defabc" {
		t.Errorf("slo = %q", got)
	}
	put(t, s, "c", "seg/1", "changed")
	if _, _, err := s.Get(ctx, acct, "c", "slo", true); !errors.Is(err, ErrSegment) {
		t.Errorf("slo with changed segment: %v", err)
	}
	// Abort drops the parts.
	u2, _ := s.CreateUpload(ctx, acct, "c", "x", PutOptions{})
	s.PutPart(ctx, u2.ID, 1, strings.NewReader("zzz"), nil, -1)
	if err := s.AbortUpload(ctx, u2.ID); err != nil {
		t.Fatal(err)
	}
	if us, _ := s.ListUploads(ctx, acct, "c"); len(us) != 0 {
		t.Errorf("uploads %v", us)
	}
}

// TestConcurrentOverwrite: readers racing overwriters always read one
// whole version, never a mix or an error.
func TestConcurrentOverwrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	s.CreateContainer(ctx, acct, "c", nil)
	versions := []string{strings.Repeat("A", 300<<10), strings.Repeat("B", 200<<10), strings.Repeat("C", 100<<10)}
	put(t, s, "c", "o", versions[0])
	done := make(chan struct{})
	errs := make(chan error, 16)
	for w := 0; w < 2; w++ {
		go func(w int) {
			for i := 0; ; i++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				if _, err := s.Put(ctx, acct, "c", "o", strings.NewReader(versions[(i+w)%3]), PutOptions{Size: -1}); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	for r := 0; r < 200; r++ {
		_, rd, err := s.Get(ctx, acct, "c", "o", true)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rd)
		rd.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !slicesContains(versions, string(b)) {
			t.Fatalf("read %d bytes of a mixed or partial version", len(b))
		}
	}
	close(done)
	for w := 0; w < 2; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := len(dataFiles(t, dir)); n != 1 {
		t.Errorf("%d data files after the overwrites, want 1", n)
	}
}

func slicesContains(vs []string, s string) bool {
	for _, v := range vs {
		if v == s {
			return true
		}
	}
	return false
}

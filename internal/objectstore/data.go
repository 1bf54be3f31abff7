package objectstore

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Extent is a piece of an object's bytes: a data file, or a range of one.
type Extent struct {
	ID   string `json:"id"`
	Size int64  `json:"size"`
	// Offset into the file (a range of a segment of a Swift SLO).
	Offset int64 `json:"off,omitempty"`
}

func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

func (s *Store) dataPath(id string) string {
	return filepath.Join(s.dataDir(), id[:2], id)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// written is the outcome of writeData.
type written struct {
	Extent
	MD5 []byte
}

// writeData streams r (at most max bytes, else ErrEntityTooBig) into a new
// data file and makes it durable: fsync, rename into data/, fsync of the
// directory. Until its metadata is committed the file is garbage, which
// Open collects after a crash; callers remove it on a later error.
func (s *Store) writeData(ctx context.Context, r io.Reader, max int64) (written, error) {
	id := newID()
	tmp := filepath.Join(s.tmpDir(), id)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return written{}, fmt.Errorf("object store: %w", err)
	}
	fail := func(err error) (written, error) {
		f.Close()
		os.Remove(tmp)
		return written{}, err
	}
	h := md5.New()
	n, err := copyHashed(ctx, &writebackWriter{f: f}, h, r, max)
	if err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("object store: fsync: %w", err))
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return written{}, fmt.Errorf("object store: %w", err)
	}
	dir := filepath.Join(s.dataDir(), id[:2])
	if err := s.ensureDir(dir); err != nil {
		os.Remove(tmp)
		return written{}, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, id)); err != nil {
		os.Remove(tmp)
		return written{}, fmt.Errorf("object store: %w", err)
	}
	if err := syncDir(dir); err != nil {
		os.Remove(filepath.Join(dir, id))
		return written{}, err
	}
	return written{Extent: Extent{ID: id, Size: n}, MD5: h.Sum(nil)}, nil
}

// copyHashed copies r to w and h; the hash of one buffer runs beside the
// write of it and the read of the next, so large objects use a second core.
func copyHashed(ctx context.Context, w io.Writer, h hash.Hash, r io.Reader, max int64) (int64, error) {
	b1, b2 := copyBufs.Get().(*[]byte), copyBufs.Get().(*[]byte)
	defer copyBufs.Put(b1)
	defer copyBufs.Put(b2)
	bufs := [2][]byte{*b1, *b2}
	// One token: in the channel, or held by the running hash goroutine.
	hashed := make(chan struct{}, 1)
	hashed <- struct{}{}
	var total int64
	for i := 0; ; i ^= 1 {
		if err := ctx.Err(); err != nil {
			<-hashed
			return total, err
		}
		n, rerr := fill(r, bufs[i])
		<-hashed // the previous chunk is hashed: hash in order
		if n > 0 {
			total += int64(n)
			if total > max {
				return total, ErrEntityTooBig
			}
			chunk := bufs[i][:n]
			go func() { h.Write(chunk); hashed <- struct{}{} }()
			if _, err := w.Write(chunk); err != nil {
				<-hashed
				return total, fmt.Errorf("object store: write: %w", err)
			}
		} else {
			hashed <- struct{}{}
		}
		if rerr == io.EOF {
			<-hashed
			return total, nil
		}
		if rerr != nil {
			<-hashed
			return total, rerr
		}
	}
}

// writebackWriter writes to f and starts the writeback of every 8 MiB
// written.
type writebackWriter struct {
	f         *os.File
	off, mark int64
}

const writebackEvery = 8 << 20

func (w *writebackWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.mark >= writebackEvery {
		startWriteback(w.f, w.mark, w.off-w.mark)
		w.mark = w.off
	}
	return n, err
}

// fill reads into buf until it is full or r ends (io.EOF) or fails; unlike
// io.ReadFull it passes r's own errors through (a truncated HTTP body's
// io.ErrUnexpectedEOF must fail the write).
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (s *Store) ensureDir(dir string) error {
	s.dirsMu.Lock()
	ok := s.dirs[dir]
	s.dirsMu.Unlock()
	if ok {
		return nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return err
	}
	s.dirsMu.Lock()
	s.dirs[dir] = true
	s.dirsMu.Unlock()
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("object store: fsync %s: %w", dir, err)
	}
	return nil
}

// removeData deletes data files whose metadata is gone (best effort: what
// remains is collected by the next Open).
func (s *Store) removeData(ids []string) {
	for _, id := range ids {
		os.Remove(s.dataPath(id))
	}
}

// Reader reads an object's bytes: its extents, in order, as one seekable
// stream. Close it.
type Reader struct {
	files []*os.File
	exts  []Extent
	size  int64
	pos   int64
}

// errVanished: a data file went away between reading the metadata and
// opening it (a concurrent overwrite); the caller retries.
var errVanished = errors.New("object store: data file vanished")

func (s *Store) openExtents(exts []Extent) (*Reader, error) {
	r := &Reader{exts: exts}
	for _, x := range exts {
		f, err := os.Open(s.dataPath(x.ID))
		if err != nil {
			r.Close()
			if errors.Is(err, fs.ErrNotExist) {
				return nil, errVanished
			}
			return nil, fmt.Errorf("object store: %w", err)
		}
		r.files = append(r.files, f)
		r.size += x.Size
	}
	return r, nil
}

// Size is the total length.
func (r *Reader) Size() int64 { return r.size }

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	off := r.pos
	for i, x := range r.exts {
		if off >= x.Size {
			off -= x.Size
			continue
		}
		if int64(len(p)) > x.Size-off {
			p = p[:x.Size-off]
		}
		n, err := r.files[i].ReadAt(p, x.Offset+off)
		r.pos += int64(n)
		if err == io.EOF && n == len(p) {
			err = nil
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // a data file shorter than its metadata
		}
		return n, err
	}
	return 0, io.EOF
}

// Seek implements io.Seeker.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("seek: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	r.pos = offset
	return offset, nil
}

// WriteTo copies the rest of the content to w; each extent's file is
// handed over as an *os.File, so an HTTP response on a TCP connection
// sends it with sendfile(2).
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	return r.copyRange(w, r.size-r.pos)
}

// copyRange copies n bytes from the current position to w.
func (r *Reader) copyRange(w io.Writer, n int64) (int64, error) {
	var total int64
	off := r.pos
	for i, x := range r.exts {
		if n <= 0 {
			break
		}
		if off >= x.Size {
			off -= x.Size
			continue
		}
		k := min(x.Size-off, n)
		if _, err := r.files[i].Seek(x.Offset+off, io.SeekStart); err != nil {
			return total, err
		}
		m, err := io.Copy(w, io.LimitReader(r.files[i], k))
		total += m
		r.pos += m
		n -= m
		if err != nil {
			return total, err
		}
		if m < k {
			return total, io.ErrUnexpectedEOF
		}
		off = 0
	}
	return total, nil
}

// Close closes the data files.
func (r *Reader) Close() error {
	for _, f := range r.files {
		f.Close()
	}
	r.files = nil
	return nil
}

package objectstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Object is an object's metadata.
type Object struct {
	Name string `json:"-"`
	// Size and ETag (hex MD5, unquoted; "hex-N" for a completed S3
	// multipart upload; for a manifest, what Get resolved) of the content.
	Size        int64     `json:"size"`
	ETag        string    `json:"etag"`
	ContentType string    `json:"type,omitempty"`
	Modified    time.Time `json:"mtime"`
	// Meta is the user metadata (Swift's X-Object-Meta-*, S3's
	// x-amz-meta-*), lowercase keys without the prefix.
	Meta map[string]string `json:"meta,omitempty"`
	// Headers are other stored response headers (Content-Encoding,
	// Content-Disposition, Cache-Control, Expires), canonical names.
	Headers map[string]string `json:"hdr,omitempty"`
	// Extents hold the bytes of a plain object.
	Extents []Extent `json:"x,omitempty"`
	// Manifest is a Swift dynamic large object's "container/prefix".
	Manifest string `json:"dlo,omitempty"`
	// SLO is a Swift static large object's segment list.
	SLO []Segment `json:"slo,omitempty"`
}

// Segment is one entry of a static large object's manifest.
type Segment struct {
	// Path is "container/object" in the manifest's account.
	Path string `json:"path"`
	ETag string `json:"etag,omitempty"`
	Size int64  `json:"size"`
}

// IsManifest reports whether o is a Swift large-object manifest.
func (o Object) IsManifest() bool { return o.Manifest != "" || o.SLO != nil }

func (o Object) stored() int64 {
	var n int64
	for _, x := range o.Extents {
		n += x.Size
	}
	return n
}

// PutOptions describe a write.
type PutOptions struct {
	ContentType string
	Meta        map[string]string
	Headers     map[string]string
	// MD5, when set, must be the content's MD5, else ErrBadDigest.
	MD5 []byte
	// Size, when >= 0, must be the content's length, else ErrIncomplete.
	Size int64
	// Manifest or SLO make the object a manifest (r is then ignored).
	Manifest string
	SLO      []Segment
}

// ErrIncomplete: the content was shorter or longer than announced.
var ErrIncomplete = errors.New("objectstore: content length does not match")

// Put stores r as object name, replacing any object of that name, once
// all of its bytes are durable.
func (s *Store) Put(ctx context.Context, account, container, name string, r io.Reader, opt PutOptions) (Object, error) {
	if !ValidObject(name) {
		return Object{}, fmt.Errorf("%w: object %q", ErrInvalidName, name)
	}
	if _, err := s.Container(ctx, account, container); err != nil {
		return Object{}, err
	}
	o := Object{Name: name, ContentType: opt.ContentType, Meta: lowerKeys(opt.Meta), Headers: opt.Headers, Manifest: opt.Manifest, SLO: opt.SLO}
	var w written
	if o.IsManifest() {
		// A manifest has no bytes of its own.
		sum := md5.Sum(nil)
		w.MD5 = sum[:]
	} else {
		var err error
		if w, err = s.writeData(ctx, r, MaxObjectSize); err != nil {
			return Object{}, err
		}
	}
	if opt.Size >= 0 && w.Size != opt.Size {
		s.removeData([]string{w.ID})
		return Object{}, fmt.Errorf("%w: %d bytes, announced %d", ErrIncomplete, w.Size, opt.Size)
	}
	if opt.MD5 != nil && !bytes.Equal(opt.MD5, w.MD5) {
		s.removeData([]string{w.ID})
		return Object{}, fmt.Errorf("%w: got %x", ErrBadDigest, w.MD5)
	}
	o.ETag = hex.EncodeToString(w.MD5)
	o.Size = w.Size
	if o.SLO != nil {
		// What listings show; Get resolves the segments afresh.
		h := md5.New()
		o.Size = 0
		for _, sg := range o.SLO {
			h.Write([]byte(sg.ETag))
			o.Size += sg.Size
		}
		o.ETag = hex.EncodeToString(h.Sum(nil))
	}
	if w.Size > 0 {
		o.Extents = []Extent{w.Extent}
	} else if w.ID != "" {
		// Empty objects need no file.
		s.removeData([]string{w.ID})
	}
	return o, s.commit(ctx, account, container, o)
}

func lowerKeys(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

// commit makes o visible, replacing the object of its name, and removes
// the replaced object's data (on failure: o's).
func (s *Store) commit(ctx context.Context, account, container string, o Object) error {
	if o.Modified.IsZero() {
		o.Modified = time.Now().UTC()
	}
	var garbage []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		garbage = garbage[:0]
		var err error
		garbage, err = putObject(tx, account, container, o)
		return err
	})
	if err != nil {
		garbage = garbage[:0]
		for _, x := range o.Extents {
			garbage = append(garbage, x.ID)
		}
	}
	s.removeData(garbage)
	return err
}

// putObject writes o's metadata and the container's usage; it returns the
// data files of the object it replaced.
func putObject(tx *bolt.Tx, account, container string, o Object) ([]string, error) {
	c, err := getContainer(tx, account, container)
	if err != nil {
		return nil, err
	}
	objs := tx.Bucket(bktObjects)
	k := objectKey(account, container, o.Name)
	var garbage []string
	if v := objs.Get(k); v != nil {
		var old Object
		if err := json.Unmarshal(v, &old); err != nil {
			return nil, err
		}
		c.Objects--
		c.Bytes -= old.stored()
		for _, x := range old.Extents {
			garbage = append(garbage, x.ID)
		}
	}
	c.Objects++
	c.Bytes += o.stored()
	if err := putJSON(objs, k, o); err != nil {
		return nil, err
	}
	return garbage, putJSON(tx.Bucket(bktContainers), containerKey(account, container), c)
}

func getObject(tx *bolt.Tx, account, container, name string) (Object, error) {
	var o Object
	v := tx.Bucket(bktObjects).Get(objectKey(account, container, name))
	if v == nil {
		if tx.Bucket(bktContainers).Get(containerKey(account, container)) == nil {
			return o, fmt.Errorf("%w: %s", ErrNoContainer, container)
		}
		return o, fmt.Errorf("%w: %s/%s", ErrNoObject, container, name)
	}
	if err := json.Unmarshal(v, &o); err != nil {
		return o, err
	}
	o.Name = name
	return o, nil
}

// Stat returns an object's stored metadata (a manifest unresolved).
func (s *Store) Stat(ctx context.Context, account, container, name string) (Object, error) {
	var o Object
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		o, err = getObject(tx, account, container, name)
		return err
	})
	return o, err
}

// ErrSegment: a large object's segment is missing or changed.
var ErrSegment = errors.New("objectstore: large object segment missing or changed")

const maxManifestDepth = 10

// Resolve returns o with a manifest's Size and ETag computed from its
// segments (as Swift reports them: the MD5 of the segments' ETags), and
// the extents holding its bytes.
func (s *Store) resolve(tx *bolt.Tx, account string, o Object, depth int) (Object, []Extent, error) {
	if !o.IsManifest() {
		return o, o.Extents, nil
	}
	if depth > maxManifestDepth {
		return o, nil, fmt.Errorf("%w: manifests nested too deep", ErrSegment)
	}
	var exts []Extent
	h := md5.New()
	var size int64
	add := func(seg Object) error {
		seg, sx, err := s.resolve(tx, account, seg, depth+1)
		if err != nil {
			return err
		}
		exts = append(exts, sx...)
		size += seg.Size
		h.Write([]byte(seg.ETag))
		return nil
	}
	if o.SLO != nil {
		for _, sg := range o.SLO {
			c, n, _ := strings.Cut(strings.TrimPrefix(sg.Path, "/"), "/")
			seg, err := getObject(tx, account, c, n)
			if err != nil {
				return o, nil, fmt.Errorf("%w: %s: %w", ErrSegment, sg.Path, err)
			}
			if sg.ETag != "" && sg.ETag != seg.ETag || sg.Size != seg.Size && !seg.IsManifest() {
				return o, nil, fmt.Errorf("%w: %s changed", ErrSegment, sg.Path)
			}
			if err := add(seg); err != nil {
				return o, nil, err
			}
		}
	} else {
		c, prefix, _ := strings.Cut(o.Manifest, "/")
		var segs []Object
		err := scan(tx.Bucket(bktObjects), objectKey(account, c, ""), ListOptions{Prefix: prefix}, func(name string, v []byte) (bool, error) {
			var seg Object
			if err := json.Unmarshal(v, &seg); err != nil {
				return false, err
			}
			seg.Name = name
			segs = append(segs, seg)
			return true, nil
		}, nil)
		if err != nil {
			return o, nil, err
		}
		for _, seg := range segs {
			if seg.Manifest != "" {
				continue // Swift skips nested DLOs
			}
			if err := add(seg); err != nil {
				return o, nil, err
			}
		}
	}
	o.Size = size
	o.ETag = hex.EncodeToString(h.Sum(nil))
	return o, exts, nil
}

// Get returns an object's metadata, a manifest resolved (Size and ETag of
// the whole), and, when open, a Reader of its content (close it).
func (s *Store) Get(ctx context.Context, account, container, name string, open bool) (Object, *Reader, error) {
	for try := 0; ; try++ {
		var o Object
		var exts []Extent
		err := s.db.View(func(tx *bolt.Tx) error {
			var err error
			o, err = getObject(tx, account, container, name)
			if err != nil {
				return err
			}
			o, exts, err = s.resolve(tx, account, o, 0)
			return err
		})
		if err != nil || !open {
			return o, nil, err
		}
		r, err := s.openExtents(exts)
		if errors.Is(err, errVanished) && try < 5 {
			continue
		}
		return o, r, err
	}
}

// SetObjectMeta replaces an object's user metadata and stored headers
// (and content type, when not empty), as Swift's POST does.
func (s *Store) SetObjectMeta(ctx context.Context, account, container, name string, meta, headers map[string]string, contentType string) (Object, error) {
	var o Object
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		o, err = getObject(tx, account, container, name)
		if err != nil {
			return err
		}
		o.Meta = lowerKeys(meta)
		o.Headers = headers
		if contentType != "" {
			o.ContentType = contentType
		}
		return putJSON(tx.Bucket(bktObjects), objectKey(account, container, name), o)
	})
	return o, err
}

// Delete deletes an object and returns what it was.
func (s *Store) Delete(ctx context.Context, account, container, name string) (Object, error) {
	var o Object
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		o, err = getObject(tx, account, container, name)
		if err != nil {
			return err
		}
		c, err := getContainer(tx, account, container)
		if err != nil {
			return err
		}
		c.Objects--
		c.Bytes -= o.stored()
		if err := tx.Bucket(bktObjects).Delete(objectKey(account, container, name)); err != nil {
			return err
		}
		return putJSON(tx.Bucket(bktContainers), containerKey(account, container), c)
	})
	if err == nil {
		var ids []string
		for _, x := range o.Extents {
			ids = append(ids, x.ID)
		}
		s.removeData(ids)
	}
	return o, err
}

// Copy makes dst a copy of src's content (a manifest's concatenated
// content) without copying bytes: data files are immutable, so the copy
// hard-links them. meta and headers replace the source's unless nil;
// contentType likewise unless empty.
func (s *Store) Copy(ctx context.Context, account, srcContainer, srcName, dstContainer, dstName string, meta, headers map[string]string, contentType string) (Object, error) {
	if !ValidObject(dstName) {
		return Object{}, fmt.Errorf("%w: object %q", ErrInvalidName, dstName)
	}
	if _, err := s.Container(ctx, account, dstContainer); err != nil {
		return Object{}, err
	}
	for try := 0; ; try++ {
		var src Object
		var exts []Extent
		err := s.db.View(func(tx *bolt.Tx) error {
			var err error
			src, err = getObject(tx, account, srcContainer, srcName)
			if err != nil {
				return err
			}
			src, exts, err = s.resolve(tx, account, src, 0)
			return err
		})
		if err != nil {
			return Object{}, err
		}
		o := Object{Name: dstName, Size: src.Size, ETag: src.ETag, ContentType: src.ContentType, Meta: src.Meta, Headers: src.Headers}
		if src.IsManifest() {
			// The copy is a plain object: its ETag is its content's MD5,
			// which only reading it gives.
			o, err = s.copyBytes(ctx, o, exts)
			if errors.Is(err, errVanished) && try < 5 {
				continue
			}
			if err != nil {
				return Object{}, err
			}
		} else {
			linked, err := s.link(exts)
			if errors.Is(err, errVanished) && try < 5 {
				continue
			}
			if err != nil {
				return Object{}, err
			}
			o.Extents = linked
		}
		if meta != nil {
			o.Meta = lowerKeys(meta)
		}
		if headers != nil {
			o.Headers = headers
		}
		if contentType != "" {
			o.ContentType = contentType
		}
		return o, s.commit(ctx, account, dstContainer, o)
	}
}

func (s *Store) copyBytes(ctx context.Context, o Object, exts []Extent) (Object, error) {
	r, err := s.openExtents(exts)
	if err != nil {
		return o, err
	}
	defer r.Close()
	w, err := s.writeData(ctx, r, MaxObjectSize)
	if err != nil {
		return o, err
	}
	o.Size, o.ETag, o.Extents = w.Size, hex.EncodeToString(w.MD5), []Extent{w.Extent}
	return o, nil
}

// link hard-links each extent's file under a new ID.
func (s *Store) link(exts []Extent) ([]Extent, error) {
	var out []Extent
	dirs := map[string]bool{}
	fail := func(err error) ([]Extent, error) {
		for _, x := range out {
			os.Remove(s.dataPath(x.ID))
		}
		return nil, err
	}
	for _, x := range exts {
		id := newID()
		dir := filepath.Join(s.dataDir(), id[:2])
		if err := s.ensureDir(dir); err != nil {
			return fail(err)
		}
		if err := os.Link(s.dataPath(x.ID), s.dataPath(id)); err != nil {
			if os.IsNotExist(err) {
				return fail(errVanished)
			}
			return fail(fmt.Errorf("object store: %w", err))
		}
		dirs[dir] = true
		out = append(out, Extent{ID: id, Size: x.Size, Offset: x.Offset})
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return fail(err)
		}
	}
	return out, nil
}

// Entry is one line of an object listing: an object or, with a delimiter,
// a common prefix (Subdir).
type Entry struct {
	Object
	Subdir string
}

// List lists a container's objects. truncated reports whether more follow
// the last entry returned.
func (s *Store) List(ctx context.Context, account, container string, opt ListOptions) (es []Entry, truncated bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		es = es[:0]
		if _, err := getContainer(tx, account, container); err != nil {
			return err
		}
		n := limit(opt.Limit)
		return scan(tx.Bucket(bktObjects), objectKey(account, container, ""), opt, func(name string, v []byte) (bool, error) {
			if len(es) == n {
				truncated = true
				return false, nil
			}
			var o Object
			if err := json.Unmarshal(v, &o); err != nil {
				return false, err
			}
			o.Name = name
			es = append(es, Entry{Object: o})
			return true, nil
		}, func(p string) (bool, error) {
			if len(es) == n {
				truncated = true
				return false, nil
			}
			es = append(es, Entry{Subdir: p})
			return true, nil
		})
	})
	return es, truncated, err
}

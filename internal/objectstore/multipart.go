package objectstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MinPartSize is the smallest part but the last of a multipart upload, as S3.
const MinPartSize = 5 << 20

// MaxParts is the highest part number.
const MaxParts = 10000

// Upload is an unfinished multipart upload: its parts are invisible until
// Complete makes them one object (without copying bytes).
type Upload struct {
	ID          string            `json:"-"`
	Account     string            `json:"account"`
	Container   string            `json:"container"`
	Name        string            `json:"name"`
	ContentType string            `json:"type,omitempty"`
	Meta        map[string]string `json:"meta,omitempty"`
	Headers     map[string]string `json:"hdr,omitempty"`
	Created     time.Time         `json:"created"`
}

// Part is an uploaded part.
type Part struct {
	Number   int       `json:"n"`
	Size     int64     `json:"size"`
	ETag     string    `json:"etag"`
	Modified time.Time `json:"mtime"`
	Extent   Extent    `json:"x"`
}

func partKey(upload string, n int) []byte { return fmt.Appendf(nil, "%s\x00%05d", upload, n) }

// CreateUpload starts a multipart upload of object name.
func (s *Store) CreateUpload(ctx context.Context, account, container, name string, opt PutOptions) (Upload, error) {
	if !ValidObject(name) {
		return Upload{}, fmt.Errorf("%w: object %q", ErrInvalidName, name)
	}
	u := Upload{ID: newID(), Account: account, Container: container, Name: name, ContentType: opt.ContentType, Meta: lowerKeys(opt.Meta), Headers: opt.Headers, Created: time.Now().UTC()}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if _, err := getContainer(tx, account, container); err != nil {
			return err
		}
		return putJSON(tx.Bucket(bktUploads), []byte(u.ID), u)
	})
	return u, err
}

func getUpload(tx *bolt.Tx, id string) (Upload, error) {
	var u Upload
	v := tx.Bucket(bktUploads).Get([]byte(id))
	if v == nil {
		return u, fmt.Errorf("%w: %s", ErrNoUpload, id)
	}
	if err := json.Unmarshal(v, &u); err != nil {
		return u, err
	}
	u.ID = id
	return u, nil
}

// GetUpload returns upload id, or ErrNoUpload.
func (s *Store) GetUpload(ctx context.Context, id string) (Upload, error) {
	var u Upload
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		u, err = getUpload(tx, id)
		return err
	})
	return u, err
}

// PutPart stores part n (1..MaxParts) of upload id, replacing an earlier
// part n. md5 and size are checked as Put does.
func (s *Store) PutPart(ctx context.Context, id string, n int, r io.Reader, md5sum []byte, size int64) (Part, error) {
	if n < 1 || n > MaxParts {
		return Part{}, fmt.Errorf("%w: part number %d", ErrInvalidPart, n)
	}
	if _, err := s.GetUpload(ctx, id); err != nil {
		return Part{}, err
	}
	w, err := s.writeData(ctx, r, MaxObjectSize)
	if err != nil {
		return Part{}, err
	}
	if size >= 0 && w.Size != size {
		s.removeData([]string{w.ID})
		return Part{}, fmt.Errorf("%w: %d bytes, announced %d", ErrIncomplete, w.Size, size)
	}
	if md5sum != nil && !bytes.Equal(md5sum, w.MD5) {
		s.removeData([]string{w.ID})
		return Part{}, fmt.Errorf("%w: got %x", ErrBadDigest, w.MD5)
	}
	p := Part{Number: n, Size: w.Size, ETag: hex.EncodeToString(w.MD5), Modified: time.Now().UTC(), Extent: w.Extent}
	var garbage []string
	err = s.db.Update(func(tx *bolt.Tx) error {
		garbage = garbage[:0]
		if _, err := getUpload(tx, id); err != nil {
			return err
		}
		parts := tx.Bucket(bktParts)
		k := partKey(id, n)
		if v := parts.Get(k); v != nil {
			var old Part
			if err := json.Unmarshal(v, &old); err != nil {
				return err
			}
			garbage = append(garbage, old.Extent.ID)
		}
		return putJSON(parts, k, p)
	})
	if err != nil {
		garbage = []string{w.ID}
	}
	s.removeData(garbage)
	return p, err
}

// ListParts returns upload id's parts by number.
func (s *Store) ListParts(ctx context.Context, id string) (Upload, []Part, error) {
	var u Upload
	var ps []Part
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		ps = ps[:0]
		if u, err = getUpload(tx, id); err != nil {
			return err
		}
		ps, err = uploadParts(tx, id)
		return err
	})
	return u, ps, err
}

func uploadParts(tx *bolt.Tx, id string) ([]Part, error) {
	var ps []Part
	c := tx.Bucket(bktParts).Cursor()
	pfx := []byte(id + "\x00")
	for k, v := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, v = c.Next() {
		var p Part
		if err := json.Unmarshal(v, &p); err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// ListUploads returns the unfinished uploads into a container, by name
// then creation.
func (s *Store) ListUploads(ctx context.Context, account, container string) ([]Upload, error) {
	var us []Upload
	err := s.db.View(func(tx *bolt.Tx) error {
		us = us[:0]
		return tx.Bucket(bktUploads).ForEach(func(k, v []byte) error {
			var u Upload
			if err := json.Unmarshal(v, &u); err != nil {
				return err
			}
			if u.Account == account && u.Container == container {
				u.ID = string(k)
				us = append(us, u)
			}
			return nil
		})
	})
	sort.Slice(us, func(i, j int) bool {
		if us[i].Name != us[j].Name {
			return us[i].Name < us[j].Name
		}
		return us[i].Created.Before(us[j].Created)
	})
	return us, err
}

// deleteUpload removes an upload and its parts; it returns their files.
func deleteUpload(tx *bolt.Tx, id string) ([]string, error) {
	ps, err := uploadParts(tx, id)
	if err != nil {
		return nil, err
	}
	var garbage []string
	for _, p := range ps {
		garbage = append(garbage, p.Extent.ID)
		if err := tx.Bucket(bktParts).Delete(partKey(id, p.Number)); err != nil {
			return nil, err
		}
	}
	return garbage, tx.Bucket(bktUploads).Delete([]byte(id))
}

// AbortUpload deletes upload id and its parts.
func (s *Store) AbortUpload(ctx context.Context, id string) error {
	var garbage []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		if _, err := getUpload(tx, id); err != nil {
			return err
		}
		var err error
		garbage, err = deleteUpload(tx, id)
		return err
	})
	if err == nil {
		s.removeData(garbage)
	}
	return err
}

// CompletePart names a part to complete an upload with; ETag may be quoted.
type CompletePart struct {
	Number int
	ETag   string
}

// CompleteUpload makes the listed parts, in ascending order, one object
// (ETag: the MD5 of the parts' MD5s, "-N"); the other parts are dropped.
func (s *Store) CompleteUpload(ctx context.Context, id string, parts []CompletePart) (Object, error) {
	if len(parts) == 0 {
		return Object{}, fmt.Errorf("%w: no parts", ErrInvalidPart)
	}
	var o Object
	var garbage []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		u, err := getUpload(tx, id)
		if err != nil {
			return err
		}
		have, err := uploadParts(tx, id)
		if err != nil {
			return err
		}
		byNum := map[int]Part{}
		for _, p := range have {
			byNum[p.Number] = p
		}
		o = Object{Name: u.Name, ContentType: u.ContentType, Meta: u.Meta, Headers: u.Headers, Modified: time.Now().UTC()}
		h := md5.New()
		used := map[int]bool{}
		for i := 1; i < len(parts); i++ {
			if parts[i].Number <= parts[i-1].Number {
				return ErrPartOrder
			}
		}
		for i, cp := range parts {
			p, ok := byNum[cp.Number]
			if !ok || strings.Trim(cp.ETag, `"`) != p.ETag {
				return fmt.Errorf("%w: part %d", ErrInvalidPart, cp.Number)
			}
			if i < len(parts)-1 && p.Size < MinPartSize {
				return fmt.Errorf("%w: part %d is %d bytes", ErrEntityTooSmall, cp.Number, p.Size)
			}
			sum, _ := hex.DecodeString(p.ETag)
			h.Write(sum)
			o.Size += p.Size
			if p.Size > 0 {
				o.Extents = append(o.Extents, p.Extent)
				used[p.Number] = true
			}
		}
		o.ETag = fmt.Sprintf("%s-%d", hex.EncodeToString(h.Sum(nil)), len(parts))
		if _, err := deleteUpload(tx, id); err != nil {
			return err
		}
		garbage = garbage[:0]
		for _, p := range have {
			if !used[p.Number] {
				garbage = append(garbage, p.Extent.ID)
			}
		}
		old, err := putObject(tx, u.Account, u.Container, o)
		garbage = append(garbage, old...)
		return err
	})
	if err != nil {
		return Object{}, err
	}
	s.removeData(garbage)
	return o, nil
}

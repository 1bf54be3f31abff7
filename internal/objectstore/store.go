// Package objectstore owns Strata's object storage on the server's disk:
// accounts (one per Keystone project), containers (S3's buckets) and
// objects, which the Swift and S3 API faces (packages swift and s3 below)
// both serve from one store.
//
// Object bytes live in files under DIR/data, never in etcd; the metadata
// (names, sizes, ETags, user metadata, which files make up an object) lives
// in a bbolt database, DIR/meta.db. A write streams into DIR/tmp, is
// fsynced and renamed into DIR/data (and the directory fsynced), and only
// then is its metadata committed, so an object becomes visible whole or not
// at all: a crash mid-upload leaves at most an unreferenced file, which Open
// removes. Data files are immutable; an overwrite or delete removes the old
// files after the metadata commit.
package objectstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// Errors returned by the store; test with errors.Is.
var (
	ErrNoContainer    = errors.New("objectstore: no such container")
	ErrNoObject       = errors.New("objectstore: no such object")
	ErrNotEmpty       = errors.New("objectstore: container not empty")
	ErrBadDigest      = errors.New("objectstore: content does not match the given MD5")
	ErrInvalidName    = errors.New("objectstore: invalid name")
	ErrNoUpload       = errors.New("objectstore: no such multipart upload")
	ErrInvalidPart    = errors.New("objectstore: invalid part")
	ErrPartOrder      = errors.New("objectstore: parts not in ascending order")
	ErrEntityTooBig   = errors.New("objectstore: entity too large")
	ErrEntityTooSmall = errors.New("objectstore: part smaller than the minimum")
)

// Limits.
const (
	MaxNameLength      = 1024
	MaxContainerLength = 256
	// MaxObjectSize bounds one write (a single PUT or part).
	MaxObjectSize = 5 << 30
)

var (
	bktAccounts   = []byte("accounts")
	bktContainers = []byte("containers")
	bktObjects    = []byte("objects")
	bktUploads    = []byte("uploads")
	bktParts      = []byte("parts")
)

// Store is the object store rooted at one directory. It is safe for
// concurrent use; only one process may open a directory at a time.
type Store struct {
	dir string
	db  *bolt.DB

	dirsMu sync.Mutex
	dirs   map[string]bool // data subdirectories known to exist
}

// Open opens (creating if needed) the store rooted at dir, and removes what
// an earlier crash may have left: temporary files and data files no
// metadata refers to.
func Open(dir string) (*Store, error) {
	s := &Store{dir: dir, dirs: map[string]bool{}}
	for _, d := range []string{s.dataDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("object store: %w", err)
		}
	}
	db, err := bolt.Open(filepath.Join(dir, "meta.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("object store: open metadata: %w", err)
	}
	s.db = db
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bktAccounts, bktContainers, bktObjects, bktUploads, bktParts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("object store: init metadata: %w", err)
	}
	if err := s.recover(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the metadata database.
func (s *Store) Close() error { return s.db.Close() }

// Dir is the store's root directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *Store) tmpDir() string  { return filepath.Join(s.dir, "tmp") }

// recover empties tmp and deletes data files that no object or part refers to.
func (s *Store) recover() error {
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	for _, e := range entries {
		os.Remove(filepath.Join(s.tmpDir(), e.Name()))
	}
	used := map[string]bool{}
	err = s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bktObjects).ForEach(func(k, v []byte) error {
			var o Object
			if err := json.Unmarshal(v, &o); err != nil {
				return err
			}
			for _, x := range o.Extents {
				used[x.ID] = true
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bktParts).ForEach(func(k, v []byte) error {
			var p Part
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			used[p.Extent.ID] = true
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("object store: scan metadata: %w", err)
	}
	return filepath.WalkDir(s.dataDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !used[d.Name()] {
			os.Remove(p)
		}
		return nil
	})
}

// ValidContainer reports whether name can name a container.
func ValidContainer(name string) bool {
	return name != "" && len(name) <= MaxContainerLength && !strings.ContainsAny(name, "/\x00") && utf8.ValidString(name)
}

// ValidObject reports whether name can name an object.
func ValidObject(name string) bool {
	return name != "" && len(name) <= MaxNameLength && !strings.Contains(name, "\x00") && utf8.ValidString(name)
}

func containerKey(account, container string) []byte {
	return []byte(account + "\x00" + container)
}

func objectKey(account, container, name string) []byte {
	return []byte(account + "\x00" + container + "\x00" + name)
}

// Account is an account's metadata and usage.
type Account struct {
	Name       string            `json:"-"`
	Meta       map[string]string `json:"meta,omitempty"`
	Containers int64             `json:"-"`
	Objects    int64             `json:"-"`
	Bytes      int64             `json:"-"`
}

// Container is a container's metadata and usage.
type Container struct {
	Name    string            `json:"-"`
	Created time.Time         `json:"created"`
	Meta    map[string]string `json:"meta,omitempty"`
	Objects int64             `json:"objects"`
	Bytes   int64             `json:"bytes"`
}

// Account returns account's metadata and totals. Every account exists.
func (s *Store) Account(ctx context.Context, account string) (Account, error) {
	a := Account{Name: account}
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bktAccounts).Get([]byte(account)); v != nil {
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
		}
		c := tx.Bucket(bktContainers).Cursor()
		pfx := []byte(account + "\x00")
		for k, v := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, v = c.Next() {
			var ct Container
			if err := json.Unmarshal(v, &ct); err != nil {
				return err
			}
			a.Containers++
			a.Objects += ct.Objects
			a.Bytes += ct.Bytes
		}
		return nil
	})
	return a, err
}

// UpdateAccountMeta sets (a non-empty value) or removes (an empty value) the
// given metadata of account; keys are lowercased.
func (s *Store) UpdateAccountMeta(ctx context.Context, account string, meta map[string]string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktAccounts)
		var a Account
		if v := b.Get([]byte(account)); v != nil {
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
		}
		a.Meta = mergeMeta(a.Meta, meta)
		return putJSON(b, []byte(account), a)
	})
}

func mergeMeta(into, meta map[string]string) map[string]string {
	for k, v := range meta {
		k = strings.ToLower(k)
		if v == "" {
			delete(into, k)
			continue
		}
		if into == nil {
			into = map[string]string{}
		}
		into[k] = v
	}
	return into
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, buf)
}

// CreateContainer makes container in account, or, when it exists, merges
// meta into its metadata. created reports whether it is new.
func (s *Store) CreateContainer(ctx context.Context, account, container string, meta map[string]string) (created bool, err error) {
	if !ValidContainer(container) {
		return false, fmt.Errorf("%w: container %q", ErrInvalidName, container)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktContainers)
		k := containerKey(account, container)
		var c Container
		if v := b.Get(k); v != nil {
			if err := json.Unmarshal(v, &c); err != nil {
				return err
			}
		} else {
			created = true
			c.Created = time.Now().UTC()
		}
		c.Meta = mergeMeta(c.Meta, meta)
		return putJSON(b, k, c)
	})
	return created, err
}

// Container returns a container's metadata and usage, or ErrNoContainer.
func (s *Store) Container(ctx context.Context, account, container string) (Container, error) {
	var c Container
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		c, err = getContainer(tx, account, container)
		return err
	})
	return c, err
}

func getContainer(tx *bolt.Tx, account, container string) (Container, error) {
	var c Container
	v := tx.Bucket(bktContainers).Get(containerKey(account, container))
	if v == nil {
		return c, fmt.Errorf("%w: %s", ErrNoContainer, container)
	}
	if err := json.Unmarshal(v, &c); err != nil {
		return c, err
	}
	c.Name = container
	return c, nil
}

// UpdateContainerMeta merges meta into an existing container's metadata
// (an empty value removes the key).
func (s *Store) UpdateContainerMeta(ctx context.Context, account, container string, meta map[string]string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		c, err := getContainer(tx, account, container)
		if err != nil {
			return err
		}
		c.Meta = mergeMeta(c.Meta, meta)
		return putJSON(tx.Bucket(bktContainers), containerKey(account, container), c)
	})
}

// DeleteContainer deletes an empty container (ErrNotEmpty otherwise) and
// aborts its unfinished multipart uploads.
func (s *Store) DeleteContainer(ctx context.Context, account, container string) error {
	var garbage []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		garbage = garbage[:0]
		c, err := getContainer(tx, account, container)
		if err != nil {
			return err
		}
		pfx := objectKey(account, container, "")
		if k, _ := tx.Bucket(bktObjects).Cursor().Seek(pfx); k != nil && bytes.HasPrefix(k, pfx) {
			return fmt.Errorf("%w: %s", ErrNotEmpty, container)
		}
		_ = c
		ups := tx.Bucket(bktUploads)
		var ids []string
		if err := ups.ForEach(func(k, v []byte) error {
			var u Upload
			if err := json.Unmarshal(v, &u); err != nil {
				return err
			}
			if u.Account == account && u.Container == container {
				ids = append(ids, string(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, id := range ids {
			g, err := deleteUpload(tx, id)
			if err != nil {
				return err
			}
			garbage = append(garbage, g...)
		}
		return tx.Bucket(bktContainers).Delete(containerKey(account, container))
	})
	if err == nil {
		s.removeData(garbage)
	}
	return err
}

// ListOptions select and page a listing. Entries sort by name, bytewise.
type ListOptions struct {
	Prefix    string
	Delimiter string
	// Marker: only names after it. EndMarker: only names before it.
	Marker, EndMarker string
	// Limit caps the entries returned (common prefixes count); <= 0: 10000.
	Limit int
}

// ListContainers lists account's containers. truncated reports whether
// more follow the last one returned.
func (s *Store) ListContainers(ctx context.Context, account string, opt ListOptions) (cs []Container, truncated bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		cs = cs[:0]
		base := []byte(account + "\x00")
		return scan(tx.Bucket(bktContainers), base, opt, func(name string, v []byte) (bool, error) {
			if len(cs) == limit(opt.Limit) {
				truncated = true
				return false, nil
			}
			var c Container
			if err := json.Unmarshal(v, &c); err != nil {
				return false, err
			}
			c.Name = name
			cs = append(cs, c)
			return true, nil
		}, nil)
	})
	return cs, truncated, err
}

func limit(n int) int {
	if n <= 0 {
		return 10000
	}
	return n
}

// scan walks the keys of b under base+opt.Prefix after opt.Marker and
// before opt.EndMarker, calling fn with the name (key without base) and
// value, or sub with each common prefix when opt.Delimiter is set; a false
// return stops it.
func scan(b *bolt.Bucket, base []byte, opt ListOptions, fn func(name string, v []byte) (bool, error), sub func(prefix string) (bool, error)) error {
	c := b.Cursor()
	pfx := append(append([]byte{}, base...), opt.Prefix...)
	start := pfx
	if opt.Marker != "" && opt.Marker >= opt.Prefix {
		start = append(append([]byte{}, base...), opt.Marker...)
	}
	k, v := c.Seek(start)
	for k != nil && bytes.HasPrefix(k, pfx) {
		name := string(k[len(base):])
		if opt.Marker != "" && name <= opt.Marker {
			k, v = c.Next()
			continue
		}
		if opt.EndMarker != "" && name >= opt.EndMarker {
			return nil
		}
		if opt.Delimiter != "" && sub != nil {
			if i := strings.Index(name[len(opt.Prefix):], opt.Delimiter); i >= 0 {
				cp := name[:len(opt.Prefix)+i+len(opt.Delimiter)]
				if cp != opt.Marker {
					more, err := sub(cp)
					if err != nil || !more {
						return err
					}
				}
				// Skip every name under cp: seek past its last byte
				// (never 0xff in UTF-8).
				next := append(append([]byte{}, base...), cp...)
				next[len(next)-1]++
				k, v = c.Seek(next)
				continue
			}
		}
		more, err := fn(name, v)
		if err != nil || !more {
			return err
		}
		k, v = c.Next()
	}
	return nil
}

package registry

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/strata-cloud/strata/internal/storage/blob"
)

// Repository metadata lives beside the blobs, as small files:
//
//	DIR/repositories/<name>/_tags/<tag>                 the tagged manifest's digest
//	DIR/repositories/<name>/_manifests/sha256/<hex>     the manifest's media type
//
// The underscore keeps metadata apart from nested repository names
// ("a/tags" is a valid repository, "_tags" is not a valid name component).

var (
	nameComponent = `[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*`
	nameRe        = regexp.MustCompile(`^` + nameComponent + `(?:/` + nameComponent + `)*$`)
	tagRe         = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// maxNameLength bounds a repository name (as the reference registry does).
const maxNameLength = 255

func validName(name string) bool { return len(name) <= maxNameLength && nameRe.MatchString(name) }

func validTag(tag string) bool { return tagRe.MatchString(tag) }

// repos stores tags and manifest membership under one directory.
type repos struct {
	dir string
}

func (r repos) repoDir(name string) string {
	return filepath.Join(r.dir, filepath.FromSlash(name))
}

func (r repos) tagPath(name, tag string) string {
	return filepath.Join(r.repoDir(name), "_tags", tag)
}

func (r repos) linkPath(name string, d blob.Digest) string {
	return filepath.Join(r.repoDir(name), "_manifests", "sha256", d.Hex())
}

// exists reports whether anything was ever pushed to name.
func (r repos) exists(name string) bool {
	_, err := os.Stat(filepath.Join(r.repoDir(name), "_manifests"))
	return err == nil
}

// link records that manifest d with mediaType belongs to repository name.
func (r repos) link(name string, d blob.Digest, mediaType string) error {
	return writeFileAtomic(r.linkPath(name, d), []byte(mediaType))
}

// linked returns the media type of manifest d in name, or fs.ErrNotExist.
func (r repos) linked(name string, d blob.Digest) (string, error) {
	b, err := os.ReadFile(r.linkPath(name, d))
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func (r repos) unlink(name string, d blob.Digest) error {
	return os.Remove(r.linkPath(name, d))
}

func (r repos) setTag(name, tag string, d blob.Digest) error {
	return writeFileAtomic(r.tagPath(name, tag), []byte(d.String()+"\n"))
}

// resolveTag returns the digest tag points to, or fs.ErrNotExist.
func (r repos) resolveTag(name, tag string) (blob.Digest, error) {
	b, err := os.ReadFile(r.tagPath(name, tag))
	if err != nil {
		return "", err
	}
	d, err := blob.ParseDigest(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("tag %s:%s: %w", name, tag, err)
	}
	return d, nil
}

func (r repos) deleteTag(name, tag string) error {
	return os.Remove(r.tagPath(name, tag))
}

// tags lists name's tags, sorted.
func (r repos) tags(name string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(r.repoDir(name), "_tags"))
	if errors.Is(err, fs.ErrNotExist) {
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	tags := []string{}
	for _, e := range entries {
		if e.Type().IsRegular() && validTag(e.Name()) {
			tags = append(tags, e.Name())
		}
	}
	slices.Sort(tags)
	return tags, nil
}

// untagDigest removes every tag of name that points to d.
func (r repos) untagDigest(name string, d blob.Digest) error {
	tags, err := r.tags(name)
	if err != nil {
		return err
	}
	for _, t := range tags {
		if got, err := r.resolveTag(name, t); err == nil && got == d {
			if err := r.deleteTag(name, t); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// list returns all repository names, sorted.
func (r repos) list() ([]string, error) {
	names := []string{}
	err := filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), "_") {
			if d.Name() == "_manifests" {
				rel, err := filepath.Rel(r.dir, filepath.Dir(p))
				if err == nil {
					names = append(names, filepath.ToSlash(rel))
				}
			}
			return fs.SkipDir
		}
		return nil
	})
	slices.Sort(names)
	return names, err
}

// writeFileAtomic writes b to path through a temporary file and a rename,
// creating parent directories; readers see the old or the new content.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

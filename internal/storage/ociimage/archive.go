package ociimage

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Annotations that name an image in an OCI archive: containerd writes the
// full reference in the first and the tag alone in the second.
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// ArchiveImage is one named image (or multi-platform index) in an archive.
type ArchiveImage struct {
	// Ref is the name the archive gives it; nil when it has none.
	Ref name.Reference
	// Exactly one of Image and Index is set.
	Image v1.Image
	Index v1.ImageIndex
}

// Archive is an opened image archive: a docker-save archive (manifest.json
// with RepoTags, as `docker save` and WriteTarball write) or an OCI image
// layout in a tar (index.json, as `ctr images export` writes). Close it when
// done with its images.
type Archive struct {
	Path   string
	Images []ArchiveImage
	tmpDir string // an OCI archive is unpacked here
}

// Close removes what opening the archive unpacked.
func (a *Archive) Close() error {
	if a.tmpDir == "" {
		return nil
	}
	return os.RemoveAll(a.tmpDir)
}

// OpenArchive reads the images an archive file holds and their names.
func OpenArchive(file string) (*Archive, error) {
	docker, oci, err := archiveKind(file)
	if err != nil {
		return nil, err
	}
	switch {
	case docker:
		return openDockerArchive(file)
	case oci:
		return openOCIArchive(file)
	}
	return nil, fmt.Errorf("%s: neither a docker archive (manifest.json) nor an OCI archive (index.json)", file)
}

// archiveKind says which index files the tar holds at its top.
func archiveKind(file string) (docker, oci bool, err error) {
	f, err := os.Open(file)
	if err != nil {
		return false, false, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return docker, oci, nil
		}
		if err != nil {
			return false, false, fmt.Errorf("%s: not a tar archive: %w", file, err)
		}
		switch path.Clean(h.Name) {
		case "manifest.json":
			docker = true
		case "index.json":
			oci = true
		}
	}
}

func openDockerArchive(file string) (*Archive, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(file) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	a := &Archive{Path: file}
	for i, d := range m {
		if len(d.RepoTags) == 0 {
			// tarball.Image picks an untagged image by position only
			// when it is the sole one.
			if len(m) == 1 {
				img, err := tarball.Image(opener, nil)
				if err != nil {
					return nil, fmt.Errorf("%s: image %d: %w", file, i, err)
				}
				a.Images = append(a.Images, ArchiveImage{Image: img})
			} else {
				a.Images = append(a.Images, ArchiveImage{})
			}
			continue
		}
		for _, t := range d.RepoTags {
			tag, err := name.NewTag(t)
			if err != nil {
				return nil, fmt.Errorf("%s: image name %q: %w", file, t, err)
			}
			img, err := tarball.Image(opener, &tag)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", file, t, err)
			}
			a.Images = append(a.Images, ArchiveImage{Ref: tag, Image: img})
		}
	}
	return a, nil
}

func openOCIArchive(file string) (*Archive, error) {
	tmp, err := os.MkdirTemp("", "strata-oci-archive-")
	if err != nil {
		return nil, err
	}
	a := &Archive{Path: file, tmpDir: tmp}
	if err := untar(file, tmp); err != nil {
		a.Close()
		return nil, err
	}
	idx, err := layout.ImageIndexFromPath(tmp)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("%s: OCI layout: %w", file, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("%s: index.json: %w", file, err)
	}
	for _, d := range im.Manifests {
		ai := ArchiveImage{Ref: ociRefName(d.Annotations)}
		if d.MediaType.IsIndex() {
			ai.Index, err = idx.ImageIndex(d.Digest)
		} else if d.MediaType.IsImage() {
			ai.Image, err = idx.Image(d.Digest)
		} else {
			continue // not an image (say, an attestation)
		}
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("%s: %s: %w", file, d.Digest, err)
		}
		a.Images = append(a.Images, ai)
	}
	return a, nil
}

// ociRefName is the name an OCI index entry's annotations give it: a full
// reference, or nil when they hold only a tag (which names no repository).
func ociRefName(ann map[string]string) name.Reference {
	for _, s := range []string{ann[annotationContainerdName], ann[annotationRefName]} {
		if !strings.Contains(s, "/") {
			continue
		}
		if ref, err := name.ParseReference(s); err == nil {
			return ref
		}
	}
	return nil
}

// untar unpacks the regular files and directories of an archive into dir,
// refusing entries that would land outside it.
func untar(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		rel := path.Clean(h.Name)
		if rel == "." || path.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
			return fmt.Errorf("%s: entry %q is outside the archive", file, h.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(rel))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			_, cerr := io.Copy(out, tr)
			if err := errors.Join(cerr, out.Close()); err != nil {
				return fmt.Errorf("%s: %s: %w", file, h.Name, err)
			}
		}
	}
}

// MirrorRef is where an image named src is stored in a registry at host
// that serves as a mirror for every registry: the same repository path and
// tag (or digest), as containerd asks a mirror for it. docker.io/library/
// busybox:1.36 becomes HOST/library/busybox:1.36; src's own registry is not
// part of the name, so images of the same path from two registries share
// one repository.
func MirrorRef(src name.Reference, host string) (name.Reference, error) {
	repo := host + "/" + src.Context().RepositoryStr()
	switch r := src.(type) {
	case name.Tag:
		return name.NewTag(repo + ":" + r.TagStr())
	case name.Digest:
		return name.NewDigest(repo + "@" + r.DigestStr())
	}
	return nil, fmt.Errorf("%s: neither a tag nor a digest reference", src)
}

// Package ociimage builds small container images locally, with no registry
// and no container engine: Strata's own pause image, and images made of a
// few files (tests build a busybox image from Debian's busybox-static). It
// also writes images as archives that `ctr images import` and
// `strata image import` load, reads docker and OCI archives back, and
// pushes their images to a registry (`strata image push`).
//
// Images are deterministic: fixed timestamps, sorted entries, root-owned
// files, so the same inputs always give the same digest.
package ociimage

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one entry of an image's single layer.
type File struct {
	// Path is the absolute path inside the image, e.g. "/bin/busybox".
	Path string
	// Mode holds the permission bits (and setuid/setgid/sticky). Add
	// fs.ModeDir for a directory or fs.ModeSymlink for a symlink. Zero
	// means 0644 for files (the host file's mode for HostPath) and 0755
	// for directories.
	Mode fs.FileMode
	// Content is a regular file's data...
	Content []byte
	// ...or HostPath names a host file to copy it from.
	HostPath string
	// Linkname is a symlink's target; setting it makes the entry a symlink.
	Linkname string
	// UID and GID own the entry (root by default).
	UID, GID int
}

// ConfigOptions are the runtime settings of an image.
type ConfigOptions struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	// User is "uid", "uid:gid" or a name from the image's /etc/passwd.
	User string
	// Architecture is a GOARCH value; empty means the machine's.
	Architecture string
}

// epoch is every timestamp in the images, for reproducible digests.
func epoch() time.Time { return time.Unix(0, 0).UTC() }

// FromFiles returns a linux image with one layer holding files (parent
// directories are added as needed) and the given configuration.
func FromFiles(files []File, cfg ConfigOptions) (v1.Image, error) {
	layer, err := layerTar(files)
	if err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layer)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     plainLayer{l},
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: epoch()}, CreatedBy: "strata ociimage.FromFiles"},
	})
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: epoch()}
	cf.OS = "linux"
	cf.Architecture = cfg.Architecture
	if cf.Architecture == "" {
		cf.Architecture = runtime.GOARCH
	}
	cf.Config.Entrypoint = slices.Clone(cfg.Entrypoint)
	cf.Config.Cmd = slices.Clone(cfg.Cmd)
	cf.Config.Env = slices.Clone(cfg.Env)
	cf.Config.WorkingDir = cfg.WorkingDir
	cf.Config.User = cfg.User
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	return img, nil
}

// plainLayer hides the tarball layer's Descriptor method, whose empty
// (non-nil) annotations map would make the in-memory manifest differ from
// its JSON form.
type plainLayer struct{ v1.Layer }

// layerTar returns the uncompressed tar of files, sorted, with missing
// parent directories added.
func layerTar(files []File) ([]byte, error) {
	entries := map[string]File{}
	for _, f := range files {
		p, err := cleanPath(f.Path)
		if err != nil {
			return nil, err
		}
		if _, dup := entries[p]; dup {
			return nil, fmt.Errorf("image file %q: listed twice", f.Path)
		}
		if f.Content != nil && f.HostPath != "" || f.Linkname != "" && (f.Content != nil || f.HostPath != "") {
			return nil, fmt.Errorf("image file %q: set only one of Content, HostPath and Linkname", f.Path)
		}
		entries[p] = f
	}
	for p := range entries {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if f, ok := entries[dir]; ok {
				if !isDir(f) {
					return nil, fmt.Errorf("image file %q: parent %q is not a directory", p, dir)
				}
				continue
			}
			entries[dir] = File{Path: "/" + dir, Mode: fs.ModeDir | 0o755}
		}
	}
	paths := make([]string, 0, len(entries))
	for p := range entries {
		paths = append(paths, p)
	}
	slices.Sort(paths) // parents sort before their children

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		if err := writeEntry(tw, p, entries[p]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	return buf.Bytes(), nil
}

// cleanPath turns an absolute image path into a tar entry name.
func cleanPath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("image file %q: path must be absolute", p)
	}
	c := strings.TrimPrefix(path.Clean(p), "/")
	if c == "" || c != strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/") {
		return "", fmt.Errorf("image file %q: path must be clean and not /", p)
	}
	return c, nil
}

func isDir(f File) bool { return f.Mode&fs.ModeDir != 0 }

func writeEntry(tw *tar.Writer, name string, f File) error {
	hdr := &tar.Header{
		Name:    name,
		Uid:     f.UID,
		Gid:     f.GID,
		ModTime: epoch(),
		Format:  tar.FormatPAX,
	}
	perm := f.Mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	var data []byte
	switch {
	case isDir(f):
		hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		if perm == 0 {
			perm = 0o755
		}
	case f.Linkname != "" || f.Mode&fs.ModeSymlink != 0:
		if f.Linkname == "" {
			return fmt.Errorf("image file %q: symlink without Linkname", f.Path)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, f.Linkname
		perm = 0o777
	default:
		hdr.Typeflag = tar.TypeReg
		data = f.Content
		if f.HostPath != "" {
			b, err := os.ReadFile(f.HostPath)
			if err != nil {
				return fmt.Errorf("image file %q: %w", f.Path, err)
			}
			data = b
			if perm == 0 {
				if fi, err := os.Stat(f.HostPath); err == nil {
					perm = fi.Mode() & fs.ModePerm
				}
			}
		}
		if perm == 0 {
			perm = 0o644
		}
		hdr.Size = int64(len(data))
	}
	hdr.Mode = tarMode(perm)
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("image file %q: %w", f.Path, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("image file %q: %w", f.Path, err)
	}
	return nil
}

// tarMode converts Go's mode bits to the tar (c_ISUID...) encoding.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m & fs.ModePerm)
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// busyboxApplets are the commands linked to /bin/busybox in Busybox
// images; all are in Debian's busybox-static.
func busyboxApplets() []string {
	return []string{
		"[", "ash", "awk", "base64", "basename", "cat", "chmod", "cp", "cut", "date", "dd",
		"df", "dirname", "du", "echo", "env", "expr", "false", "find", "free", "grep",
		"gunzip", "gzip", "head", "hostname", "httpd", "id", "ifconfig", "ip", "kill",
		"ln", "ls", "md5sum", "mkdir", "mkfifo", "mktemp", "mount", "mv", "nc", "netstat",
		"nproc", "nslookup", "ping", "printf", "ps", "pwd", "readlink", "realpath", "rm",
		"route", "sed", "seq", "sh", "sha256sum", "sleep", "sort", "stat", "sync", "tail",
		"tar", "tee", "test", "timeout", "top", "touch", "tr", "true", "umount", "uname",
		"uniq", "uptime", "vi", "watch", "wc", "wget", "which", "whoami", "xargs", "yes",
	}
}

// Busybox returns a small image around a static busybox binary from the
// host (Debian's busybox-static installs one at /bin/busybox): /bin/busybox,
// symlinks for common applets (sh, wget, httpd, nc, sleep, ...), /tmp,
// /etc/passwd and /etc/group. The image's architecture is the binary's.
func Busybox(hostBusybox string) (v1.Image, error) {
	arch, err := staticELFArch(hostBusybox)
	if err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	files := []File{
		{Path: "/bin/busybox", Mode: 0o755, HostPath: hostBusybox},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "/root", Mode: fs.ModeDir | 0o700},
		{Path: "/etc/passwd", Content: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Path: "/etc/group", Content: []byte("root:x:0:\nnogroup:x:65534:\n")},
	}
	for _, a := range busyboxApplets() {
		files = append(files, File{Path: "/bin/" + a, Linkname: "busybox"})
	}
	return FromFiles(files, ConfigOptions{
		Cmd:          []string{"/bin/sh"},
		Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Architecture: arch,
	})
}

// staticELFArch returns the GOARCH of a statically linked ELF executable,
// refusing dynamically linked ones (they would not run in an image without
// their libraries).
func staticELFArch(p string) (string, error) {
	f, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked; use a static build (Debian: busybox-static)", p)
		}
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_386:
		return "386", nil
	case elf.EM_ARM:
		return "arm", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	case elf.EM_PPC64:
		return "ppc64le", nil
	case elf.EM_S390:
		return "s390x", nil
	}
	return "", fmt.Errorf("%s: unknown machine %s", p, f.Machine)
}

// WriteTarball writes img as a docker-save style archive (manifest.json
// with RepoTags) tagged ref, which `ctr images import`, `docker load` and
// `strata image import` accept. ref must be a tag reference such as
// PauseRef. The file appears atomically.
func WriteTarball(path, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("write image archive: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write image archive: %w", err)
	}
	werr := tarball.Write(tag, img, f)
	if werr == nil {
		werr = f.Sync()
	}
	if err := errors.Join(werr, f.Close()); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write image archive %s: %w", path, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write image archive %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write image archive %s: %w", path, err)
	}
	return nil
}

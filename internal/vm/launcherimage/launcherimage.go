// Package launcherimage builds, on a node, the container image VM launcher
// pods run: the host's Debian QEMU (qemu-system-x86_64, qemu-img, the TCG
// accelerator module), their shared-library closure with the dynamic
// loader, the firmware and option ROMs the launcher's machine needs, and
// the strata-launcher executable as entrypoint. No registry is involved:
// the agent loads the archive into the node's containerd.
//
// Files keep their host paths (QEMU finds its firmware and modules
// relative to its binary and in its configured module directory), with
// the host's symlinks (Debian's /lib -> usr/lib) reproduced. The image is
// deterministic, so its name, Repository:<digest prefix>, changes exactly
// when its contents do.
package launcherimage

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/strata-cloud/strata/internal/storage/ociimage"
)

// Repository is where nodes keep the launcher image.
const Repository = "localhost/strata/launcher"

// CurrentRef also names the image a node built last, for pods that do not
// know its content tag (with imagePullPolicy Never or IfNotPresent: no
// registry has it).
const CurrentRef = Repository + ":current"

// LauncherPath is the launcher executable's path in the image.
const LauncherPath = "/usr/bin/strata-launcher"

// Options say where the image's parts come from. Zero values pick the
// Debian paths.
type Options struct {
	// QEMU is qemu-system-x86_64 (default /usr/bin/qemu-system-x86_64).
	QEMU string
	// QEMUImg is qemu-img (default /usr/bin/qemu-img).
	QEMUImg string
	// ModuleDir holds QEMU's loadable modules, of which the TCG
	// accelerator is needed (default /usr/lib/x86_64-linux-gnu/qemu).
	ModuleDir string
	// Firmware lists the firmware and ROM files to include, each looked
	// up by base name in FirmwareDirs (default DefaultFirmware).
	Firmware []string
	// FirmwareDirs are QEMU's data directories, in its search order
	// (default /usr/share/qemu, /usr/share/seabios, /usr/lib/ipxe/qemu).
	FirmwareDirs []string
	// Launcher is the strata-launcher executable (required).
	Launcher []byte
	// LauncherArgs come before the launcher's own arguments in the
	// entrypoint: ["launcher"] when Launcher is the whole strata binary.
	LauncherArgs []string
	// LibraryDirs are searched for shared libraries after an object's own
	// RUNPATH (default the loader's: /lib/x86_64-linux-gnu,
	// /usr/lib/x86_64-linux-gnu, /lib64, /usr/lib64, /lib, /usr/lib).
	LibraryDirs []string
}

// DefaultFirmware is what QEMU needs for the launcher's VMs: SeaBIOS for
// the q35/pc machines, the option ROMs for direct kernel boot (fw_cfg DMA
// and legacy), the KVM VAPIC ROM, and virtio-net-pci's iPXE ROM (which
// QEMU loads by default for the device).
func DefaultFirmware() []string {
	return []string{
		"bios-256k.bin",
		"linuxboot_dma.bin", "linuxboot.bin",
		"kvmvapic.bin",
		"efi-virtio.rom",
	}
}

func (o Options) withDefaults() Options {
	if o.QEMU == "" {
		o.QEMU = "/usr/bin/qemu-system-x86_64"
	}
	if o.QEMUImg == "" {
		o.QEMUImg = "/usr/bin/qemu-img"
	}
	if o.ModuleDir == "" {
		o.ModuleDir = "/usr/lib/x86_64-linux-gnu/qemu"
	}
	if o.Firmware == nil {
		o.Firmware = DefaultFirmware()
	}
	if o.FirmwareDirs == nil {
		o.FirmwareDirs = []string{"/usr/share/qemu", "/usr/share/seabios", "/usr/lib/ipxe/qemu"}
	}
	if o.LibraryDirs == nil {
		o.LibraryDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}
	}
	return o
}

// Available reports why the host cannot build the image (QEMU is not
// installed), or nil when it can.
func Available(opts Options) error {
	opts = opts.withDefaults()
	for _, p := range []string{opts.QEMU, opts.QEMUImg} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("no QEMU for the VM launcher image (Debian: apt-get install qemu-system-x86 qemu-utils): %w", err)
		}
	}
	return nil
}

// collector gathers image files from host paths.
type collector struct {
	opts  Options
	files map[string]ociimage.File
	elfs  map[string]bool // ELF objects whose libraries were added
}

// add includes host path p: every symlink on the way becomes a symlink in
// the image and the file lands at its real path. It returns the real path.
func (c *collector) add(p string) (string, error) {
	return c.addDepth(p, 0)
}

func (c *collector) addDepth(p string, depth int) (string, error) {
	if depth > 32 {
		return "", fmt.Errorf("%s: too many symlinks", p)
	}
	p = path.Clean(p)
	if !path.IsAbs(p) {
		return "", fmt.Errorf("%s: not an absolute path", p)
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	for i, part := range parts {
		next := path.Join(cur, part)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(next)
			if err != nil {
				return "", err
			}
			if _, ok := c.files[next]; !ok {
				c.files[next] = ociimage.File{Path: next, Linkname: target}
			}
			resolved := target
			if !path.IsAbs(target) {
				resolved = path.Join(cur, target)
			}
			return c.addDepth(path.Join(append([]string{resolved}, parts[i+1:]...)...), depth+1)
		}
		if i < len(parts)-1 && !fi.IsDir() {
			return "", fmt.Errorf("%s: not a directory", next)
		}
		cur = next
	}
	fi, err := os.Stat(cur)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s: not a regular file", cur)
	}
	if _, ok := c.files[cur]; !ok {
		c.files[cur] = ociimage.File{Path: cur, HostPath: cur, Mode: fi.Mode().Perm()}
	}
	return cur, nil
}

// addELF includes an executable or shared object with its loader and the
// closure of its DT_NEEDED libraries.
func (c *collector) addELF(p string) error {
	real, err := c.add(p)
	if err != nil {
		return err
	}
	if c.elfs[real] {
		return nil
	}
	c.elfs[real] = true
	f, err := elf.Open(real)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			return fmt.Errorf("%s: interpreter: %w", p, err)
		}
		interp := strings.TrimRight(string(b), "\x00")
		if err := c.addELF(interp); err != nil {
			return fmt.Errorf("%s: interpreter: %w", p, err)
		}
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	dirs := runPaths(f, path.Dir(real))
	dirs = append(dirs, c.opts.LibraryDirs...)
	for _, lib := range needed {
		found, err := findLibrary(lib, dirs, f.Machine)
		if err != nil {
			return fmt.Errorf("%s needs %w", p, err)
		}
		if err := c.addELF(found); err != nil {
			return err
		}
	}
	return nil
}

// runPaths returns an object's DT_RUNPATH (or DT_RPATH) directories with
// $ORIGIN expanded.
func runPaths(f *elf.File, origin string) []string {
	var dirs []string
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, _ := f.DynString(tag)
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				d = strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", origin), "$ORIGIN", origin)
				if d != "" {
					dirs = append(dirs, d)
				}
			}
		}
		if len(dirs) > 0 {
			break // RPATH is ignored when RUNPATH is present
		}
	}
	return dirs
}

// findLibrary resolves a DT_NEEDED name as the loader would: a name with a
// slash is a path; otherwise the first dir holding an object of the same
// machine.
func findLibrary(lib string, dirs []string, machine elf.Machine) (string, error) {
	if strings.Contains(lib, "/") {
		return lib, nil
	}
	for _, d := range dirs {
		p := filepath.Join(d, lib)
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		m := f.Machine
		f.Close()
		if m == machine {
			return p, nil
		}
	}
	return "", fmt.Errorf("library %s, found in none of %v", lib, dirs)
}

// findFirmware returns the first FirmwareDirs entry holding name.
func findFirmware(name string, dirs []string) (string, error) {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("firmware %s, found in none of %v (Debian: qemu-system-x86 brings seabios and ipxe-qemu)", name, dirs)
}

// Files returns the image's files, sorted by path.
func Files(opts Options) ([]ociimage.File, error) {
	opts = opts.withDefaults()
	if len(opts.Launcher) == 0 {
		return nil, errors.New("launcher image: no launcher executable")
	}
	if err := Available(opts); err != nil {
		return nil, err
	}
	c := &collector{opts: opts, files: map[string]ociimage.File{}, elfs: map[string]bool{}}
	for _, exe := range []string{opts.QEMU, opts.QEMUImg} {
		if err := c.addELF(exe); err != nil {
			return nil, fmt.Errorf("launcher image: %w", err)
		}
	}
	// Debian builds TCG as a module: without it QEMU has no accelerator
	// where KVM does not work.
	tcg := filepath.Join(opts.ModuleDir, "accel-tcg-x86_64.so")
	if _, err := os.Stat(tcg); err == nil {
		if err := c.addELF(tcg); err != nil {
			return nil, fmt.Errorf("launcher image: %w", err)
		}
	}
	// glibc loads libgcc_s at run time to unwind exiting threads.
	if p, err := findLibrary("libgcc_s.so.1", opts.LibraryDirs, elf.EM_X86_64); err == nil {
		if err := c.addELF(p); err != nil {
			return nil, fmt.Errorf("launcher image: %w", err)
		}
	}
	for _, fw := range opts.Firmware {
		p, err := findFirmware(fw, opts.FirmwareDirs)
		if err != nil {
			return nil, fmt.Errorf("launcher image: %w", err)
		}
		if _, err := c.add(p); err != nil {
			return nil, fmt.Errorf("launcher image: %w", err)
		}
	}
	c.files[LauncherPath] = ociimage.File{Path: LauncherPath, Mode: 0o755, Content: opts.Launcher}
	for _, d := range []string{"/tmp", "/var/tmp"} {
		c.files[d] = ociimage.File{Path: d, Mode: fs.ModeDir | fs.ModeSticky | 0o777}
	}
	c.files["/run"] = ociimage.File{Path: "/run", Mode: fs.ModeDir | 0o755}
	c.files["/etc/passwd"] = ociimage.File{Path: "/etc/passwd", Content: []byte("root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")}
	c.files["/etc/group"] = ociimage.File{Path: "/etc/group", Content: []byte("root:x:0:\nnogroup:x:65534:\n")}

	files := make([]ociimage.File, 0, len(c.files))
	for _, f := range c.files {
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// Image is a built launcher image.
type Image struct {
	// Ref is Repository:<first 12 hex digits of the image digest>.
	Ref   string
	Image v1.Image
	Files []ociimage.File
}

// Build builds the image.
func Build(opts Options) (Image, error) {
	opts = opts.withDefaults()
	files, err := Files(opts)
	if err != nil {
		return Image{}, err
	}
	img, err := ociimage.FromFiles(files, ociimage.ConfigOptions{
		Entrypoint:   append([]string{LauncherPath}, opts.LauncherArgs...),
		Env:          []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		WorkingDir:   "/",
		Architecture: "amd64",
	})
	if err != nil {
		return Image{}, fmt.Errorf("launcher image: %w", err)
	}
	d, err := img.Digest()
	if err != nil {
		return Image{}, fmt.Errorf("launcher image: %w", err)
	}
	return Image{Ref: Repository + ":" + d.Hex[:12], Image: img, Files: files}, nil
}

// WriteArchive builds the image and writes it to path as an archive (the
// docker-save layout containerd imports) tagged with its content ref and
// CurrentRef. It returns the content ref.
func WriteArchive(path string, opts Options) (string, error) {
	img, err := Build(opts)
	if err != nil {
		return "", err
	}
	refs := map[name.Reference]v1.Image{}
	for _, r := range []string{img.Ref, CurrentRef} {
		tag, err := name.NewTag(r)
		if err != nil {
			return "", err
		}
		refs[tag] = img.Image
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	werr := tarball.MultiRefWrite(refs, f)
	if err := errors.Join(werr, f.Chmod(0o644), f.Close()); err != nil {
		return "", fmt.Errorf("write launcher image %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", fmt.Errorf("write launcher image %s: %w", path, err)
	}
	return img.Ref, nil
}

// Paths lists the files' paths (for logs and tests).
func Paths(files []ociimage.File) []string {
	out := make([]string, 0, len(files))
	for _, f := range files {
		out = append(out, f.Path)
	}
	return slices.Sorted(slices.Values(out))
}

package volume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
)

// File keeps each volume as a sparse file, Dir/volumes/ID/disk.FORMAT,
// and each snapshot as a sparse copy, Dir/snapshots/ID/disk.FORMAT. A raw
// volume is published through a loop device, with a stable link to it at
// Dir/volumes/ID/device: the link is what PersistentVolumes name, so a
// reboot that renumbers loop devices only has to re-point links.
type File struct {
	Dir  string
	Node string // for messages
	Host Host
}

var _ Backend = (*File)(nil)

// validID keeps IDs from naming paths outside Dir.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func (f *File) volumeDir(id string) string   { return filepath.Join(f.Dir, "volumes", id) }
func (f *File) snapshotDir(id string) string { return filepath.Join(f.Dir, "snapshots", id) }

// find returns the file of volume (or snapshot) dir, whatever its format.
func find(dir string) (string, Format, error) {
	for _, fm := range []Format{Raw, QCOW2} {
		p := filepath.Join(dir, "disk."+string(fm))
		if _, err := os.Stat(p); err == nil {
			return p, fm, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", "", err
		}
	}
	return "", "", ErrNotFound
}

func checkID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("%w: id %q", ErrInvalid, id)
	}
	return nil
}

// Create makes the file in a temporary name and renames it into place
// once complete, so a crash never leaves a half-made volume that looks done.
func (f *File) Create(ctx context.Context, req Request) (Info, error) {
	if err := checkID(req.ID); err != nil {
		return Info{}, err
	}
	if req.Format == "" {
		req.Format = Raw
	}
	if req.Format != Raw && req.Format != QCOW2 {
		return Info{}, fmt.Errorf("%w: format %q", ErrInvalid, req.Format)
	}
	if req.Size <= 0 {
		return Info{}, fmt.Errorf("%w: size %d", ErrInvalid, req.Size)
	}
	if sources := btoi(req.FromSnapshot != "") + btoi(req.FromVolume != "") + btoi(req.FromImage != nil); sources > 1 {
		return Info{}, fmt.Errorf("%w: two sources", ErrInvalid)
	}
	dir := f.volumeDir(req.ID)
	if _, _, err := find(dir); err == nil {
		return f.Publish(ctx, req.ID)
	} else if !errors.Is(err, ErrNotFound) {
		return Info{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Info{}, err
	}
	free, err := f.Host.FreeBytes(dir)
	if err != nil {
		return Info{}, err
	}
	// Thin, but not beyond what the disk has now: a volume that could never
	// be filled fails here, clearly, rather than later in a guest.
	if req.Size > free {
		return Info{}, &NoSpaceError{Node: f.Node, Asked: req.Size, Free: free}
	}
	final := filepath.Join(dir, "disk."+string(req.Format))
	tmp := final + ".tmp"
	_ = os.Remove(tmp)
	if err := f.fill(ctx, req, tmp); err != nil {
		_ = os.Remove(tmp)
		return Info{}, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return Info{}, err
	}
	return f.Publish(ctx, req.ID)
}

// fill writes the new volume's content to path.
func (f *File) fill(ctx context.Context, req Request, path string) error {
	var src string
	switch {
	case req.FromImage != nil:
		return f.fromImage(ctx, req, path)
	case req.FromSnapshot != "":
		if err := checkID(req.FromSnapshot); err != nil {
			return err
		}
		p, fm, err := find(f.snapshotDir(req.FromSnapshot))
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", req.FromSnapshot, err)
		}
		if fm != req.Format {
			return fmt.Errorf("%w: snapshot is %s, volume %s", ErrInvalid, fm, req.Format)
		}
		src = p
	case req.FromVolume != "":
		if err := checkID(req.FromVolume); err != nil {
			return err
		}
		p, fm, err := find(f.volumeDir(req.FromVolume))
		if err != nil {
			return fmt.Errorf("volume %s: %w", req.FromVolume, err)
		}
		if fm != req.Format {
			return fmt.Errorf("%w: source volume is %s, new volume %s", ErrInvalid, fm, req.Format)
		}
		src = p
	}
	if src != "" {
		size, err := virtualSize(ctx, f.Host, src, req.Format)
		if err != nil {
			return err
		}
		if req.Size < size {
			return fmt.Errorf("%w: %s asked, the source has %s", ErrShrink, HumanBytes(req.Size), HumanBytes(size))
		}
		if err := copySparse(src, path); err != nil {
			return err
		}
		return f.grow(ctx, path, req.Format, req.Size)
	}
	if req.Format == QCOW2 {
		return f.Host.QEMUImg(ctx, "create", "-q", "-f", "qcow2", path, fmt.Sprint(req.Size))
	}
	out, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := out.Truncate(req.Size); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if req.Filesystem {
		return f.Host.MakeFilesystem(ctx, path)
	}
	return nil
}

// grow makes the file (not its filesystem) size bytes, if smaller.
func (f *File) grow(ctx context.Context, path string, fm Format, size int64) error {
	have, err := virtualSize(ctx, f.Host, path, fm)
	if err != nil {
		return err
	}
	if size <= have {
		return nil
	}
	if fm == QCOW2 {
		return f.Host.QEMUImg(ctx, "resize", "-q", "-f", "qcow2", path, fmt.Sprint(size))
	}
	return os.Truncate(path, size)
}

// virtualSize is a raw file's size; for qcow2 the header's virtual size.
func virtualSize(ctx context.Context, _ Host, path string, fm Format) (int64, error) {
	if fm == QCOW2 {
		return qcow2VirtualSize(path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// Publish attaches a raw volume's loop device and points the stable link at it.
func (f *File) Publish(ctx context.Context, id string) (Info, error) {
	if err := checkID(id); err != nil {
		return Info{}, err
	}
	dir := f.volumeDir(id)
	path, fm, err := find(dir)
	if err != nil {
		return Info{}, err
	}
	info, err := f.stat(ctx, path, fm)
	if err != nil {
		return info, err
	}
	if fm != Raw {
		return info, nil
	}
	dev, err := f.Host.AttachLoop(ctx, path)
	if err != nil {
		return info, fmt.Errorf("attach a loop device: %w", err)
	}
	link := filepath.Join(dir, "device")
	if cur, err := os.Readlink(link); err != nil || cur != dev {
		tmp := link + ".tmp"
		_ = os.Remove(tmp)
		if err := os.Symlink(dev, tmp); err != nil {
			return info, err
		}
		if err := os.Rename(tmp, link); err != nil {
			return info, err
		}
	}
	info.DevicePath = link
	return info, nil
}

func (f *File) stat(ctx context.Context, path string, fm Format) (Info, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Info{}, err
	}
	size, err := virtualSize(ctx, f.Host, path, fm)
	if err != nil {
		return Info{}, err
	}
	info := Info{Path: path, Format: fm, Size: size, Allocated: st.Size()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		info.Allocated = sys.Blocks * 512
	}
	return info, nil
}

// Expand grows the file, tells the loop device, and grows the filesystem:
// offline when nothing has it mounted, online otherwise (which needs
// CAP_SYS_RESOURCE; without it the resize stays pending and is retried).
func (f *File) Expand(ctx context.Context, id string, size int64, filesystem bool) (Info, error) {
	if err := checkID(id); err != nil {
		return Info{}, err
	}
	path, fm, err := find(f.volumeDir(id))
	if err != nil {
		return Info{}, err
	}
	have, err := virtualSize(ctx, f.Host, path, fm)
	if err != nil {
		return Info{}, err
	}
	if size < have {
		return Info{}, fmt.Errorf("%w: %s asked, it has %s", ErrShrink, HumanBytes(size), HumanBytes(have))
	}
	if size > have {
		free, err := f.Host.FreeBytes(filepath.Dir(path))
		if err != nil {
			return Info{}, err
		}
		if size-have > free {
			return Info{}, &NoSpaceError{Node: f.Node, Asked: size - have, Free: free}
		}
		if err := f.grow(ctx, path, fm, size); err != nil {
			return Info{}, err
		}
	}
	info, err := f.Publish(ctx, id)
	if err != nil {
		return info, err
	}
	if fm != Raw {
		return info, nil
	}
	dev, err := os.Readlink(info.DevicePath)
	if err != nil {
		return info, err
	}
	if size > have {
		if err := f.Host.RefreshLoop(ctx, dev); err != nil {
			return info, err
		}
	}
	if !filesystem {
		return info, nil
	}
	mounted, err := f.Host.Mounted(dev)
	if err != nil {
		return info, err
	}
	target := path
	if mounted {
		target = dev
	}
	if err := f.Host.GrowFilesystem(ctx, target, mounted); err != nil {
		if !mounted {
			return info, err
		}
		info.FilesystemResizePending = true
	}
	return info, nil
}

// Delete detaches the loop device and removes the volume's directory.
func (f *File) Delete(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	dir := f.volumeDir(id)
	if path, fm, err := find(dir); err == nil && fm == Raw {
		if err := f.Host.DetachLoops(ctx, path); err != nil {
			return err
		}
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return os.RemoveAll(dir)
}

// Snapshot makes a sparse copy of the volume. The copy is consistent for
// a volume no one writes to; a mounted filesystem's is crash-consistent at
// best (the VM work will freeze guests through QMP first).
func (f *File) Snapshot(ctx context.Context, id, snapID string) (SnapshotInfo, error) {
	if err := checkID(id); err != nil {
		return SnapshotInfo{}, err
	}
	if err := checkID(snapID); err != nil {
		return SnapshotInfo{}, err
	}
	dir := f.snapshotDir(snapID)
	if p, fm, err := find(dir); err == nil {
		size, err := virtualSize(ctx, f.Host, p, fm)
		return SnapshotInfo{Path: p, Size: size}, err
	}
	src, fm, err := find(f.volumeDir(id))
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("volume %s: %w", id, err)
	}
	st, err := os.Stat(src)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if free, err := f.Host.FreeBytes(f.Dir); err == nil && st.Size() > free {
		return SnapshotInfo{}, &NoSpaceError{Node: f.Node, Asked: st.Size(), Free: free}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return SnapshotInfo{}, err
	}
	final := filepath.Join(dir, "disk."+string(fm))
	tmp := final + ".tmp"
	if err := copySparse(src, tmp); err != nil {
		_ = os.Remove(tmp)
		return SnapshotInfo{}, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return SnapshotInfo{}, err
	}
	size, err := virtualSize(ctx, f.Host, final, fm)
	return SnapshotInfo{Path: final, Size: size}, err
}

// DeleteSnapshot removes the snapshot's directory.
func (f *File) DeleteSnapshot(_ context.Context, snapID string) error {
	if err := checkID(snapID); err != nil {
		return err
	}
	return os.RemoveAll(f.snapshotDir(snapID))
}

// copySparse copies src to dst, leaving holes where src reads as zeros.
func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 {
			if !allZero(buf[:n]) {
				if _, werr := out.WriteAt(buf[:n], off); werr != nil {
					out.Close()
					return werr
				}
			}
			off += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			out.Close()
			return err
		}
	}
	if err := out.Truncate(st.Size()); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fromImage writes the image's disk into path in the volume's format:
// a raw image into a raw volume is a sparse copy, anything else goes
// through qemu-img convert (which keeps the output sparse).
func (f *File) fromImage(ctx context.Context, req Request, path string) error {
	img := req.FromImage
	if img.Format != Raw && img.Format != QCOW2 {
		return fmt.Errorf("%w: image format %q (raw and qcow2 only)", ErrInvalid, img.Format)
	}
	size, err := virtualSize(ctx, f.Host, img.Path, img.Format)
	if err != nil {
		return err
	}
	if req.Size < size {
		return fmt.Errorf("%w: %s asked, the image's disk has %s", ErrShrink, HumanBytes(req.Size), HumanBytes(size))
	}
	if img.Format == Raw && req.Format == Raw {
		if err := copySparse(img.Path, path); err != nil {
			return err
		}
	} else if err := f.Host.QEMUImg(ctx, "convert", "-q", "-f", string(img.Format), "-O", string(req.Format), img.Path, path); err != nil {
		return err
	}
	return f.grow(ctx, path, req.Format, req.Size)
}

package volume

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeHost records what the backend asks of the machine.
type fakeHost struct {
	mu       sync.Mutex
	free     int64
	loops    map[string]string // file -> device
	mounted  map[string]bool
	calls    []string
	growFail bool
}

func newFakeHost() *fakeHost {
	return &fakeHost{free: 1 << 40, loops: map[string]string{}, mounted: map[string]bool{}}
}

func (h *fakeHost) log(s string) { h.mu.Lock(); h.calls = append(h.calls, s); h.mu.Unlock() }

func (h *fakeHost) AttachLoop(_ context.Context, file string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if d, ok := h.loops[file]; ok {
		return d, nil
	}
	d := "/dev/loop" + string(rune('0'+len(h.loops)))
	h.loops[file] = d
	h.calls = append(h.calls, "attach "+filepath.Base(filepath.Dir(file)))
	return d, nil
}
func (h *fakeHost) DetachLoops(_ context.Context, file string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.loops, file)
	h.calls = append(h.calls, "detach "+filepath.Base(filepath.Dir(file)))
	return nil
}
func (h *fakeHost) RefreshLoop(_ context.Context, dev string) error {
	h.log("refresh " + dev)
	return nil
}
func (h *fakeHost) MakeFilesystem(_ context.Context, path string) error {
	h.log("mkfs")
	return os.WriteFile(path+".fs", nil, 0o600) // beside: the volume stays sparse
}
func (h *fakeHost) GrowFilesystem(_ context.Context, path string, online bool) error {
	if online {
		h.log("grow-online " + path)
		if h.growFail {
			return errors.New("resize2fs: Permission denied")
		}
		return nil
	}
	h.log("grow-offline")
	return nil
}
func (h *fakeHost) Mounted(dev string) (bool, error) { return h.mounted[dev], nil }
func (h *fakeHost) QEMUImg(_ context.Context, args ...string) error {
	h.log("qemu-img " + args[0])
	if args[0] == "create" { // a minimal header with the size
		hdr := make([]byte, 32)
		copy(hdr, "QFI\xfb")
		var size int64
		for _, c := range args[len(args)-1] {
			size = size*10 + int64(c-'0')
		}
		for i := 0; i < 8; i++ {
			hdr[31-i] = byte(size >> (8 * i))
		}
		return os.WriteFile(args[len(args)-2], hdr, 0o600)
	}
	return nil
}
func (h *fakeHost) FreeBytes(string) (int64, error) { return h.free, nil }

func newFile(t *testing.T) (*File, *fakeHost) {
	h := newFakeHost()
	return &File{Dir: t.TempDir(), Node: "n1", Host: h}, h
}

func TestCreateIsThinIdempotentAndPublished(t *testing.T) {
	ctx := context.Background()
	f, h := newFile(t)
	info, err := f.Create(ctx, Request{ID: "v1", Size: 1 << 30, Filesystem: true})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != 1<<30 || info.Format != Raw || info.Allocated > 1<<20 {
		t.Errorf("info %+v: want a thin 1Gi raw file", info)
	}
	if dev, err := os.Readlink(info.DevicePath); err != nil || dev != "/dev/loop0" {
		t.Errorf("device link %s -> %q (%v), want /dev/loop0", info.DevicePath, dev, err)
	}
	again, err := f.Create(ctx, Request{ID: "v1", Size: 1 << 30, Filesystem: true})
	if err != nil || again.Path != info.Path {
		t.Fatalf("second create: %+v %v", again, err)
	}
	if got := strings.Join(h.calls, ","); got != "mkfs,attach v1" {
		t.Errorf("host calls %q: mkfs once, one loop device", got)
	}
	if err := f.Delete(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(info.Path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("volume dir still there: %v", err)
	}
	if len(h.loops) != 0 {
		t.Errorf("loop devices left: %v", h.loops)
	}
	if err := f.Delete(ctx, "v1"); err != nil {
		t.Errorf("deleting a deleted volume: %v", err)
	}
}

func TestCreateRefusesWhatDoesNotFit(t *testing.T) {
	f, h := newFile(t)
	h.free = 10 << 30
	_, err := f.Create(context.Background(), Request{ID: "big", Size: 100 << 40})
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "node n1: 100Ti asked, 10Gi free") {
		t.Errorf("err = %v, want not enough space naming sizes", err)
	}
	for _, bad := range []Request{{ID: "../x", Size: 1}, {ID: "a", Size: 0}, {ID: "a", Size: 1, Format: "vmdk"}, {ID: "a", Size: 1, FromSnapshot: "s", FromVolume: "v"}} {
		if _, err := f.Create(context.Background(), bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestSnapshotAndVolumeFromIt(t *testing.T) {
	ctx := context.Background()
	f, _ := newFile(t)
	info, err := f.Create(ctx, Request{ID: "v1", Size: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	// Data at the start and at the end, a hole between.
	w, _ := os.OpenFile(info.Path, os.O_WRONLY, 0)
	w.WriteAt([]byte("first"), 0)
	w.WriteAt([]byte("last"), 8<<20-4)
	w.Close()
	snap, err := f.Snapshot(ctx, "v1", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if snap.Size != 8<<20 {
		t.Errorf("snapshot size %d", snap.Size)
	}
	// Later writes to the volume do not reach the snapshot.
	w, _ = os.OpenFile(info.Path, os.O_WRONLY, 0)
	w.WriteAt([]byte("AFTER"), 0)
	w.Close()
	if _, err := f.Create(ctx, Request{ID: "small", Size: 1 << 20, FromSnapshot: "s1"}); !errors.Is(err, ErrShrink) {
		t.Errorf("a volume smaller than its snapshot: %v, want ErrShrink", err)
	}
	v2, err := f.Create(ctx, Request{ID: "v2", Size: 16 << 20, FromSnapshot: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(v2.Path)
	if len(data) != 16<<20 || !bytes.HasPrefix(data, []byte("first")) || string(data[8<<20-4:8<<20]) != "last" {
		t.Errorf("volume from snapshot: %d bytes, start %q", len(data), data[:5])
	}
	if v2.Allocated > 2<<20+64<<10 { // two 1Mi chunks hold data
		t.Errorf("the copy is not sparse: %d bytes allocated", v2.Allocated)
	}
	clone, err := f.Create(ctx, Request{ID: "v3", Size: 8 << 20, FromVolume: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(clone.Path); !bytes.HasPrefix(data, []byte("AFTER")) {
		t.Errorf("clone starts %q, want the volume's current content", data[:5])
	}
	if _, err := f.Create(ctx, Request{ID: "v4", Size: 8 << 20, FromSnapshot: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing snapshot: %v", err)
	}
	if err := f.DeleteSnapshot(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(snap.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("snapshot file left: %v", err)
	}
}

func TestExpand(t *testing.T) {
	ctx := context.Background()
	f, h := newFile(t)
	info, err := f.Create(ctx, Request{ID: "v1", Size: 1 << 20, Filesystem: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Expand(ctx, "v1", 1<<19, true); !errors.Is(err, ErrShrink) {
		t.Errorf("shrink: %v", err)
	}
	got, err := f.Expand(ctx, "v1", 2<<20, true)
	if err != nil || got.Size != 2<<20 || got.FilesystemResizePending {
		t.Fatalf("offline expand: %+v %v", got, err)
	}
	if !strings.Contains(strings.Join(h.calls, ","), "refresh /dev/loop0,grow-offline") {
		t.Errorf("calls %v: want the loop refreshed then an offline resize", h.calls)
	}
	// Mounted, and this host cannot resize online: pending, not failed.
	h.mounted["/dev/loop0"], h.growFail = true, true
	got, err = f.Expand(ctx, "v1", 4<<20, true)
	if err != nil || !got.FilesystemResizePending || got.Size != 4<<20 {
		t.Errorf("online expand without the capability: %+v %v, want pending", got, err)
	}
	h.free = 0
	if _, err := f.Expand(ctx, "v1", 1<<40, false); !errors.Is(err, ErrNoSpace) {
		t.Errorf("expanding past the free space: %v", err)
	}
	_ = info
}

func TestQCOW2(t *testing.T) {
	ctx := context.Background()
	f, h := newFile(t)
	info, err := f.Create(ctx, Request{ID: "q", Size: 1 << 30, Format: QCOW2})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != 1<<30 || info.DevicePath != "" || len(h.loops) != 0 {
		t.Errorf("qcow2 %+v: want its virtual size and no loop device", info)
	}
}

// TestHostToolsOnAFile runs the real mkfs.ext4, e2fsck and resize2fs on a
// plain file (no loop device, no root needed).
func TestHostToolsOnAFile(t *testing.T) {
	for _, tool := range []string{"mkfs.ext4", "e2fsck", "resize2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fs.raw")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Truncate(path, 32<<20)
	var h HostTools
	if err := h.MakeFilesystem(ctx, path); err != nil {
		t.Fatal(err)
	}
	os.Truncate(path, 64<<20)
	if err := h.GrowFilesystem(ctx, path, false); err != nil {
		t.Fatal(err)
	}
	if free, err := h.FreeBytes(filepath.Dir(path)); err != nil || free <= 0 {
		t.Errorf("free bytes %d %v", free, err)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{512: "512B", 1 << 30: "1Gi", 3 << 29: "1.5Gi", 100 << 40: "100Ti"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestVolumeFromImage(t *testing.T) {
	ctx := context.Background()
	f, h := newFile(t)
	raw := filepath.Join(t.TempDir(), "disk.img")
	os.WriteFile(raw, append([]byte("bootsector"), make([]byte, 4<<20)...), 0o600)
	img := &ImageFile{Path: raw, Format: Raw}
	if _, err := f.Create(ctx, Request{ID: "tiny", Size: 1 << 20, FromImage: img}); !errors.Is(err, ErrShrink) {
		t.Errorf("a volume smaller than its image: %v", err)
	}
	info, err := f.Create(ctx, Request{ID: "root", Size: 8 << 20, FromImage: img})
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(info.Path); len(data) != 8<<20 || !bytes.HasPrefix(data, []byte("bootsector")) {
		t.Errorf("volume from a raw image: %d bytes", len(data))
	}
	// qcow2 images are converted by qemu-img.
	q := filepath.Join(t.TempDir(), "disk.qcow2")
	h.QEMUImg(ctx, "create", "-q", "-f", "qcow2", q, "1048576")
	h.calls = nil
	if _, err := f.Create(ctx, Request{ID: "fromq", Size: 8 << 20, FromImage: &ImageFile{Path: q, Format: QCOW2}}); err == nil {
		t.Error("the fake qemu-img wrote nothing, yet the create succeeded")
	}
	if len(h.calls) == 0 || !strings.HasPrefix(h.calls[0], "qemu-img convert") {
		t.Errorf("calls %v, want qemu-img convert", h.calls)
	}
	if _, err := f.Create(ctx, Request{ID: "x", Size: 8 << 20, FromImage: img, FromSnapshot: "s"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("two sources: %v", err)
	}
}

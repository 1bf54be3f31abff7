package testimage

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

type cpioEntry struct {
	name      string
	mode      uint32
	rdevMajor uint32
	rdevMinor uint32
	data      []byte
}

// readCPIO parses a newc archive (the test's independent reader).
func readCPIO(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	field := func(h []byte, i int) uint32 {
		v, err := strconv.ParseUint(string(h[6+8*i:6+8*i+8]), 16, 32)
		if err != nil {
			t.Fatalf("bad header field %d: %v", i, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("no newc header at %d", off)
		}
		h := b[off : off+110]
		size, nameSize := int(field(h, 6)), int(field(h, 11))
		name := string(b[off+110 : off+110+nameSize-1])
		dataOff := align(off + 110 + nameSize)
		e := cpioEntry{name: name, mode: field(h, 1), rdevMajor: field(h, 9), rdevMinor: field(h, 10), data: b[dataOff : dataOff+size]}
		off = align(dataOff + size)
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, e)
	}
}

func TestCPIO(t *testing.T) {
	var buf bytes.Buffer
	c := newCPIO(&buf)
	c.Dir("/bin")
	c.File("bin/hello", 0o755, []byte("hello"))
	c.Symlink("bin/sh", "hello")
	c.CharDev("dev/console", 0o600, 5, 1)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not 4-aligned", buf.Len())
	}
	got := readCPIO(t, buf.Bytes())
	want := []cpioEntry{
		{name: "bin", mode: cpioDir | 0o755},
		{name: "bin/hello", mode: cpioRegular | 0o755, data: []byte("hello")},
		{name: "bin/sh", mode: cpioSymlink | 0o777, data: []byte("hello")},
		{name: "dev/console", mode: cpioCharDev | 0o600, rdevMajor: 5, rdevMinor: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("entries %+v", got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.name != w.name || g.mode != w.mode || g.rdevMajor != w.rdevMajor || g.rdevMinor != w.rdevMinor || !bytes.Equal(g.data, w.data) {
			t.Errorf("entry %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestExtraFiles(t *testing.T) {
	var buf bytes.Buffer
	c := newCPIO(&buf)
	c.Dir("bin")
	dirs := map[string]bool{"bin": true}
	extra := map[string][]byte{"/bin/tool": []byte("t"), "opt/x/y/data": []byte("d"), "opt/x/z": nil}
	if err := addExtra(c, dirs, extra); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range readCPIO(t, buf.Bytes()) {
		got = append(got, fmt.Sprintf("%s %o %s", e.name, e.mode, e.data))
	}
	want := []string{"bin 40755 ", "bin/tool 100755 t", "opt 40755 ", "opt/x 40755 ", "opt/x/y 40755 ", "opt/x/y/data 100755 d", "opt/x/z 100755 "}
	if !slices.Equal(got, want) {
		t.Errorf("archive\n%q\nwant\n%q", got, want)
	}
	for _, bad := range []map[string][]byte{{"init": nil}, {"bin": nil}, {"../x": nil}, {"a": nil, "a/b": nil}, {"lib/modules/virtio.ko": nil}} {
		if err := addExtra(newCPIO(&bytes.Buffer{}), map[string]bool{"bin": true}, bad); err == nil {
			t.Errorf("extra files %v accepted", bad)
		}
	}
}

func TestModuleOrder(t *testing.T) {
	dir := t.TempDir()
	dep := "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n" +
		"kernel/drivers/virtio/virtio.ko:\n" +
		"kernel/drivers/virtio/virtio_ring.ko:\n" +
		"kernel/drivers/virtio/virtio_pci_legacy_dev.ko:\n" +
		"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n" +
		"kernel/drivers/acpi/button.ko:\n"
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644)
	got, err := moduleOrder(dir, []string{"virtio_pci", "virtio_blk", "button", "not_here"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/drivers/virtio/virtio_pci_legacy_dev.ko", "kernel/drivers/virtio/virtio.ko",
		"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio_pci.ko",
		"kernel/drivers/block/virtio_blk.ko", "kernel/drivers/acpi/button.ko",
	}
	if !slices.Equal(got, want) {
		t.Errorf("order\n%v\nwant\n%v", got, want)
	}
}

func TestVersionLess(t *testing.T) {
	ks := []string{"/boot/vmlinuz-6.1.0-9-amd64", "/boot/vmlinuz-6.1.0-56-cloud-amd64", "/boot/vmlinuz-5.10.0-30-amd64"}
	slices.SortFunc(ks, func(a, b string) int {
		if versionLess(a, b) {
			return -1
		}
		return 1
	})
	if ks[2] != "/boot/vmlinuz-6.1.0-56-cloud-amd64" || ks[0] != "/boot/vmlinuz-5.10.0-30-amd64" {
		t.Errorf("sorted %v", ks)
	}
}

// TestInitramfsFromHost builds the real initramfs when the host has a
// kernel package and busybox-static.
func TestInitramfsFromHost(t *testing.T) {
	if _, err := FindKernel(); err != nil {
		t.Skip(err)
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no /bin/busybox (busybox-static)")
	}
	data, mods, err := Initramfs(Options{})
	if err != nil {
		t.Fatal(err)
	}
	entries := readCPIO(t, data)
	names := map[string]cpioEntry{}
	for _, e := range entries {
		names[e.name] = e
	}
	for _, want := range []string{"init", "bin/busybox", "bin/sh", "dev/console", "etc/modules", "usr/share/udhcpc/default.script"} {
		if _, ok := names[want]; !ok {
			t.Errorf("initramfs lacks %s", want)
		}
	}
	if !strings.Contains(string(names["init"].data), Marker) {
		t.Error("init does not print the marker")
	}
	loaded := strings.Fields(string(names["etc/modules"].data))
	if len(loaded) != len(mods) {
		t.Errorf("/etc/modules %v for modules %v", loaded, mods)
	}
	for _, m := range loaded {
		if _, ok := names[strings.TrimPrefix(m, "/")]; !ok {
			t.Errorf("/etc/modules names %s, which is not in the archive", m)
		}
	}
	t.Logf("initramfs: %d entries, %d KiB, modules %v", len(entries), len(data)/1024, loaded)
}

// Package diskimage knows virtual machine disk image files: it detects
// their format from their bytes (never from a name) and packs them into
// OCI artifacts, so that Strata's registry stores them and nodes pull and
// cache them like container images.
package diskimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// ErrNotDiskImage means the bytes are something else (an archive, a web
// page, a program), which a VM cannot boot as a raw disk.
var ErrNotDiskImage = errors.New("not a disk image")

// HeaderSize is how much of the start of an image Detect reads.
const HeaderSize = 64 * 1024

// notDisk are signatures of files people fetch or pick by mistake instead
// of a disk image: compressed or archived images, and executables.
var notDisk = []struct {
	offset int
	magic  string
	what   string
}{
	{0, "\x1f\x8b", "gzip-compressed data (decompress it first)"},
	{0, "\xfd7zXZ\x00", "xz-compressed data (decompress it first)"},
	{0, "BZh", "bzip2-compressed data (decompress it first)"},
	{0, "\x28\xb5\x2f\xfd", "zstd-compressed data (decompress it first)"},
	{0, "PK\x03\x04", "a zip archive"},
	{257, "ustar", "a tar archive"},
	{0, "\x7fELF", "an ELF executable"},
}

// Info is what the bytes of a disk image say about it.
type Info struct {
	Format      string // raw, qcow2, vmdk, vhdx, vdi or iso
	Size        int64  // file size
	VirtualSize int64  // the disk's size as the guest sees it
}

// Detect reads the headers of an image of size bytes.
func Detect(r io.ReaderAt, size int64) (Info, error) {
	head := make([]byte, HeaderSize)
	n, err := r.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return Info{}, fmt.Errorf("read image header: %w", err)
	}
	head = head[:n]
	if what := notDiskContent(head); what != "" {
		return Info{}, fmt.Errorf("%w: the content is %s", ErrNotDiskImage, what)
	}
	info := Info{Format: "raw", Size: size, VirtualSize: size}
	switch {
	case len(head) >= 32 && bytes.Equal(head[:4], []byte{'Q', 'F', 'I', 0xfb}):
		info.Format = "qcow2"
		if v := binary.BigEndian.Uint32(head[4:8]); v < 2 {
			return Info{}, fmt.Errorf("qcow version %d is not supported (convert it: qemu-img convert -O qcow2)", v)
		}
		info.VirtualSize = int64(binary.BigEndian.Uint64(head[24:32]))
	case len(head) >= 20 && bytes.Equal(head[:4], []byte("KDMV")):
		info.Format = "vmdk"
		info.VirtualSize = int64(binary.LittleEndian.Uint64(head[12:20])) * 512
	case len(head) >= 8 && bytes.Equal(head[:8], []byte("vhdxfile")):
		info.Format = "vhdx"
		info.VirtualSize = 0 // in a metadata region; not needed to boot
	case len(head) >= 0x48 && binary.LittleEndian.Uint32(head[0x40:0x44]) == 0xbeda107f:
		info.Format = "vdi"
	case len(head) >= 0x8006 && bytes.Equal(head[0x8001:0x8006], []byte("CD001")):
		info.Format = "iso"
	}
	if info.Format == "qcow2" && info.VirtualSize <= 0 {
		return Info{}, errors.New("qcow2 header gives no virtual size: the file is damaged")
	}
	return info, nil
}

// notDiskContent says what head is when it is clearly no disk image, or "".
func notDiskContent(head []byte) string {
	if len(head) == 0 {
		return "empty"
	}
	for _, s := range notDisk {
		if len(head) >= s.offset+len(s.magic) && string(head[s.offset:s.offset+len(s.magic)]) == s.magic {
			return s.what
		}
	}
	// Every disk has binary structures (boot sector, superblock, zeros)
	// in its first sectors; text there is a web page, an error message
	// or a checksum file.
	text := head[:min(len(head), 4096)]
	if bytes.IndexByte(text, 0) < 0 && utf8.Valid(text) {
		trimmed := bytes.ToLower(bytes.TrimSpace(text[:min(len(text), 64)]))
		if bytes.HasPrefix(trimmed, []byte("<!doctype html")) || bytes.HasPrefix(trimmed, []byte("<html")) {
			return "an HTML page"
		}
		return "text"
	}
	return ""
}

// Bootable reports whether Strata's launcher can boot a root disk of this format.
func Bootable(format string) bool { return format == "raw" || format == "qcow2" }

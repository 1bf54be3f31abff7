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
)

// Info is what the bytes of a disk image say about it.
type Info struct {
	Format      string // raw, qcow2, vmdk, vhdx, vdi or iso
	Size        int64  // file size
	VirtualSize int64  // the disk's size as the guest sees it
}

// Detect reads the headers of an image of size bytes.
func Detect(r io.ReaderAt, size int64) (Info, error) {
	head := make([]byte, 64*1024)
	n, err := r.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return Info{}, fmt.Errorf("read image header: %w", err)
	}
	head = head[:n]
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

// Bootable reports whether Strata's launcher can boot a root disk of this format.
func Bootable(format string) bool { return format == "raw" || format == "qcow2" }

package volume

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// qcow2VirtualSize reads the virtual size from a qcow2 header (magic
// "QFI\xfb", size as a big-endian uint64 at offset 24).
func qcow2VirtualSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var hdr [32]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return 0, fmt.Errorf("%s: qcow2 header: %w", path, err)
	}
	if string(hdr[:4]) != "QFI\xfb" {
		return 0, fmt.Errorf("%s: not a qcow2 file", path)
	}
	return int64(binary.BigEndian.Uint64(hdr[24:32])), nil
}

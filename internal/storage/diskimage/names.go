package diskimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Registry is the registry name VM images are referenced by. Every node's
// containerd resolves all names through Strata's registry first, where the
// images are; the name itself never resolves.
const Registry = "images.strata.invalid"

// Repository is the registry repository holding the artifacts of the Image
// name in namespace.
func Repository(namespace, name string) string {
	return "vm-images/" + namespace + "/" + name
}

// Reference is what an Image's status.reference says: the artifact by
// manifest digest ("sha256:...").
func Reference(namespace, name, manifestDigest string) string {
	return Registry + "/" + Repository(namespace, name) + "@" + manifestDigest
}

// ErrChecksumMismatch means an image's bytes do not hash to the checksum
// they were expected to have.
var ErrChecksumMismatch = errors.New("checksum mismatch")

// VerifyChecksum compares got, the hex SHA-256 of an image's bytes, with
// expected ("sha256:<hex>", or "" when nothing is expected).
func VerifyChecksum(expected, got string) error {
	if expected == "" || expected == "sha256:"+got {
		return nil
	}
	return fmt.Errorf("%w: expected %s, got sha256:%s", ErrChecksumMismatch, expected, got)
}

// CheckBootable refuses images Strata's launcher cannot boot a VM from.
func CheckBootable(info Info) error {
	if Bootable(info.Format) {
		return nil
	}
	return fmt.Errorf("the image format is %s: VMs boot raw or qcow2 (convert it: qemu-img convert -O qcow2 IN OUT.qcow2)", info.Format)
}

// FakeQcow2 is size bytes that Detect takes for a qcow2 image of
// virtualSize: the header, then filler that is not zeros. It lets tests of
// what stores and moves images run without qemu-img; it boots nothing.
func FakeQcow2(size int, virtualSize int64) []byte {
	b := bytes.Repeat([]byte("strata-disk-"), size/12+1)[:max(size, 32)]
	copy(b, []byte{'Q', 'F', 'I', 0xfb})
	binary.BigEndian.PutUint32(b[4:], 3) // version
	binary.BigEndian.PutUint64(b[24:], uint64(virtualSize))
	return b
}

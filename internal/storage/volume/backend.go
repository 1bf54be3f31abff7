// Package volume owns the bytes of Strata's block volumes on a node: the
// Backend interface that the node agent drives, and its first
// implementation, File — thin (sparse) raw or qcow2 files under the
// agent's data dir, raw ones published as loop devices. Other backends
// (LVM thin pools, Ceph RBD) implement the same interface; see
// docs/volumes.md.
package volume

import (
	"context"
	"errors"
	"fmt"
)

// Format is a volume file's format.
type Format string

// The formats the file backend makes.
const (
	Raw   Format = "raw"
	QCOW2 Format = "qcow2"
)

// Request describes a volume to create. Create is idempotent per ID.
type Request struct {
	// ID names the volume in the backend; stable and unique (the Volume's UID).
	ID     string
	Size   int64
	Format Format
	// Filesystem makes an ext4 filesystem on a new, empty volume.
	Filesystem bool
	// FromSnapshot or FromVolume is the backend ID whose content the new
	// volume starts with (at most one of these and FromImage).
	FromSnapshot, FromVolume string
	// FromImage is a local file (a VM image the caller fetched) whose
	// disk, converted to Format, the new volume starts with.
	FromImage *ImageFile
}

// ImageFile is a disk image on the node: its path and format (raw, qcow2).
type ImageFile struct {
	Path   string
	Format Format
}

// Info is a realised volume.
type Info struct {
	// Path is the volume's file (or the backend's name for it).
	Path string
	// DevicePath is a stable path to its block device, "" if it has none
	// (a qcow2 file, which only QEMU reads).
	DevicePath string
	Format     Format
	// Size is the virtual size; Allocated what it takes on disk.
	Size, Allocated int64
	// FilesystemResizePending: the device grew but its filesystem could
	// not yet (it is mounted and this host cannot grow it online).
	FilesystemResizePending bool
}

// SnapshotInfo is a realised snapshot.
type SnapshotInfo struct {
	Path string
	Size int64
}

// Backend is a node's store of volumes. Every method is idempotent: the
// agent calls them again after a crash or restart.
type Backend interface {
	// Create makes the volume (or finds it made) and publishes it.
	Create(ctx context.Context, req Request) (Info, error)
	// Publish makes a created volume's device available again (after a
	// reboot, say) and reports it.
	Publish(ctx context.Context, id string) (Info, error)
	// Expand grows the volume to size (never shrinks it), and its
	// filesystem when filesystem is set and that can be done now.
	Expand(ctx context.Context, id string, size int64, filesystem bool) (Info, error)
	// Delete removes the volume; a missing one is no error.
	Delete(ctx context.Context, id string) error
	// Snapshot copies volume id's current content into snapshot snapID.
	Snapshot(ctx context.Context, id, snapID string) (SnapshotInfo, error)
	// DeleteSnapshot removes a snapshot; a missing one is no error.
	DeleteSnapshot(ctx context.Context, snapID string) error
}

// Errors callers act on (errors.Is).
var (
	ErrNotFound = errors.New("not found")
	ErrNoSpace  = errors.New("not enough space")
	ErrShrink   = errors.New("volumes cannot shrink")
	ErrInvalid  = errors.New("invalid request")
)

// NoSpaceError says how much was asked and what is free.
type NoSpaceError struct {
	Node        string
	Asked, Free int64
}

func (e *NoSpaceError) Error() string {
	where := "this node"
	if e.Node != "" {
		where = "node " + e.Node
	}
	return fmt.Sprintf("not enough space on %s: %s asked, %s free", where, HumanBytes(e.Asked), HumanBytes(e.Free))
}

// Is makes errors.Is(err, ErrNoSpace) true.
func (e *NoSpaceError) Is(target error) bool { return target == ErrNoSpace }

// HumanBytes formats n in binary units, as Kubernetes quantities read.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	suffixes := []string{"Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
	v, i := float64(n)/unit, 0
	for v >= unit && i < len(suffixes)-1 {
		v /= unit
		i++
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d%s", int64(v), suffixes[i])
	}
	return fmt.Sprintf("%.1f%s", v, suffixes[i])
}

package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// NodeDir is where every node shows its volume directory (the file
// backend's <data dir>/volumes, bind-mounted there by the node agent): the
// one host path that VM launcher pods mount whatever each node's data dir
// is, so that any running VM can have a volume hot-plugged. Under /run: it
// is remade at every agent start, never stale after a reboot.
const NodeDir = "/run/strata/volumes"

// BindNodeDir shows dataDir/volumes at NodeDir in the caller's mount
// namespace. What an earlier agent (another data dir) left mounted there
// is unmounted first; it is a no-op when NodeDir shows dataDir/volumes
// already. Launchers running keep their own view: a bind mount of NodeDir
// taken when their container started.
func BindNodeDir(dataDir string) error {
	src := filepath.Join(dataDir, "volumes")
	for _, d := range []string{src, NodeDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	for range 16 {
		if same, err := SameDir(src, NodeDir); err != nil || same {
			return err
		}
		if err := syscall.Unmount(NodeDir, syscall.MNT_DETACH); err != nil {
			if errors.Is(err, syscall.EINVAL) {
				break // not a mount point: the bare directory
			}
			return fmt.Errorf("unmount %s: %w", NodeDir, err)
		}
	}
	if err := syscall.Mount(src, NodeDir, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s at %s: %w", src, NodeDir, err)
	}
	return nil
}

// SameDir reports whether a and b are the same directory (device and
// inode), as a bind mount of one at the other makes them.
func SameDir(a, b string) (bool, error) {
	var sa, sb syscall.Stat_t
	if err := syscall.Stat(a, &sa); err != nil {
		return false, err
	}
	if err := syscall.Stat(b, &sb); err != nil {
		return false, err
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}

package volume

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// Host is what the file backend needs from the machine: loop devices,
// filesystem tools, qemu-img. HostTools is the real one; tests use a fake.
type Host interface {
	// AttachLoop returns the loop device backing file, attaching one if
	// none does.
	AttachLoop(ctx context.Context, file string) (string, error)
	// DetachLoops detaches every loop device backing file.
	DetachLoops(ctx context.Context, file string) error
	// RefreshLoop makes dev see its file's new size.
	RefreshLoop(ctx context.Context, dev string) error
	// MakeFilesystem makes ext4 on path (a file or device).
	MakeFilesystem(ctx context.Context, path string) error
	// GrowFilesystem grows the ext4 filesystem on path to fill it;
	// online says it is mounted.
	GrowFilesystem(ctx context.Context, path string, online bool) error
	// Mounted says whether dev is mounted anywhere in this mount namespace.
	Mounted(dev string) (bool, error)
	// QEMUImg runs qemu-img with args.
	QEMUImg(ctx context.Context, args ...string) error
	// FreeBytes is the space free for unprivileged use on dir's filesystem.
	FreeBytes(dir string) (int64, error)
}

// HostTools runs util-linux's losetup, e2fsprogs' mkfs.ext4, e2fsck and
// resize2fs, and qemu-img (the same tools the kubelet's own volume code
// runs).
type HostTools struct{}

var _ Host = HostTools{}

func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// loopsOf lists the loop devices backing file.
func loopsOf(ctx context.Context, file string) ([]string, error) {
	out, err := run(ctx, "losetup", "--noheadings", "--output", "NAME", "--associated", file)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

func (HostTools) AttachLoop(ctx context.Context, file string) (string, error) {
	if devs, err := loopsOf(ctx, file); err != nil {
		return "", err
	} else if len(devs) > 0 {
		return devs[0], nil
	}
	out, err := run(ctx, "losetup", "--find", "--show", file)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

func (HostTools) DetachLoops(ctx context.Context, file string) error {
	devs, err := loopsOf(ctx, file)
	if err != nil {
		return err
	}
	for _, d := range devs {
		// A busy device is detached by the kernel once its last user goes.
		if _, err := run(ctx, "losetup", "--detach", d); err != nil {
			return err
		}
	}
	return nil
}

func (HostTools) RefreshLoop(ctx context.Context, dev string) error {
	_, err := run(ctx, "losetup", "--set-capacity", dev)
	return err
}

func (HostTools) MakeFilesystem(ctx context.Context, path string) error {
	// lazy init keeps the sparse file thin; -F: path may be a plain file.
	_, err := run(ctx, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", path)
	return err
}

func (HostTools) GrowFilesystem(ctx context.Context, path string, online bool) error {
	if !online {
		// resize2fs insists on a freshly checked filesystem offline.
		if out, err := run(ctx, "e2fsck", "-f", "-p", path); err != nil {
			var exit *exec.ExitError
			// 1: errors corrected; anything above is trouble.
			if !(errorsAs(err, &exit) && exit.ExitCode() == 1) {
				return fmt.Errorf("%w: %s", err, out)
			}
		}
	}
	_, err := run(ctx, "resize2fs", path)
	return err
}

func (HostTools) Mounted(dev string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return false, err
	}
	want := fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 2 && fields[2] == want {
			return true, nil
		}
	}
	return false, sc.Err()
}

func (HostTools) QEMUImg(ctx context.Context, args ...string) error {
	_, err := run(ctx, "qemu-img", args...)
	return err
}

func (HostTools) FreeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

func errorsAs(err error, target **exec.ExitError) bool { return errors.As(err, target) }

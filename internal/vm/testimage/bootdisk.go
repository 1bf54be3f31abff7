package testimage

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BootDiskTools are the Debian tools BootDisk runs (packages dosfstools,
// mtools, syslinux).
var BootDiskTools = []string{"mkfs.fat", "mcopy", "syslinux"}

// BootDisk writes a raw disk image that boots img by itself, as an uploaded
// VM image must: a FAT file system holding the kernel, the initramfs and
// SYSLINUX, whose boot sector the BIOS runs. It returns the disk's path.
func BootDisk(dir string, img Image) (string, error) {
	for _, tool := range BootDiskTools {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("boot disk: %s is missing (apt-get install dosfstools mtools syslinux)", tool)
		}
	}
	size := int64(0)
	for _, p := range []string{img.Kernel, img.Initrd} {
		st, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		size += st.Size()
	}
	kib := (size/1024)*5/4 + 8192 // room for FAT, SYSLINUX and slack
	disk := filepath.Join(dir, "boot.img")
	cfg := filepath.Join(dir, "syslinux.cfg")
	if err := os.WriteFile(cfg, []byte("DEFAULT vm\nPROMPT 0\nTIMEOUT 0\nLABEL vm\n  KERNEL vmlinuz\n  INITRD initrd.img\n  APPEND "+img.Append+"\n"), 0o644); err != nil {
		return "", err
	}
	_ = os.Remove(disk)
	for _, cmd := range [][]string{
		{"mkfs.fat", "-C", disk, fmt.Sprint(kib)},
		{"mcopy", "-i", disk, img.Kernel, "::vmlinuz"},
		{"mcopy", "-i", disk, img.Initrd, "::initrd.img"},
		{"mcopy", "-i", disk, cfg, "::syslinux.cfg"},
		{"syslinux", "--install", disk},
	} {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("boot disk: %s: %v: %s", strings.Join(cmd, " "), err, out)
		}
	}
	return disk, nil
}

// Command testvmimage writes the bootable test VM disk the e2e tests use
// (internal/vm/testimage: the host's Debian kernel and a busybox initramfs
// behind SYSLINUX; it prints a marker on the serial console, takes a DHCP
// lease, serves HTTP on port 80 and runs a "#!" user-data script), for
// trying VMs by hand:
//
//	make test-vm-image && bin/strata image upload testvm bin/testvm.img
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/strata-cloud/strata/internal/vm/testimage"
)

func main() {
	out := flag.String("o", "bin/testvm.img", "where to write the raw disk image")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "testvmimage:", err, "(hack/install-deps.sh installs the kernel, busybox-static, syslinux, mtools and dosfstools)")
		os.Exit(1)
	}
	fmt.Println(*out)
}

func run(out string) error {
	dir, err := os.MkdirTemp("", "testvmimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	img, err := testimage.Build(dir, testimage.Options{})
	if err != nil {
		return err
	}
	disk, err := testimage.BootDisk(dir, img)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	src, err := os.Open(disk)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

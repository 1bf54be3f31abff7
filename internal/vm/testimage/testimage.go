// Package testimage builds the small bootable VM the VM tests use: the
// host's Debian kernel (/boot/vmlinuz-*, from linux-image-cloud-amd64 or
// linux-image-amd64) and an initramfs, written here in Go as a cpio
// archive, around Debian's static busybox. Its init loads the virtio, ACPI
// button and ISO9660 modules, reads a cloud-init seed when one is attached
// (and runs a "#!" user-data script), serves HTTP on port 80, configures
// eth0 by DHCP when there is one, prints Marker on the serial console, and
// powers off when the ACPI power button is pressed (QMP system_powerdown)
// or at once when the kernel command line holds PowerOffArg (and never
// when it holds IgnorePowerButtonArg). Options.Extra adds files (a tool
// that a test's user-data runs, say) to the initramfs.
package testimage

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Marker is the line the guest prints on its console once it is up.
const Marker = "STRATA-VM-BOOTED"

// PowerOffArg on the kernel command line makes the guest power off right
// after printing Marker.
const PowerOffArg = "strata.poweroff"

// IgnorePowerButtonArg on the kernel command line makes the guest ignore
// the ACPI power button, like a hung guest (tests of forced stops).
const IgnorePowerButtonArg = "strata.ignore-powerbutton"

// DiskLabel is what WriteRawDisk puts at the start of a disk; the guest
// reports every virtio disk that begins with it.
const DiskLabel = "STRATA-DISK"

// DefaultAppend is the kernel command line the image is meant for: the
// console on the first serial port, and reboot (which the launcher turns
// into an exit) instead of hanging on a panic.
const DefaultAppend = "console=ttyS0 panic=-1"

// modules are loaded in this order (with their dependencies first) when
// the kernel has them as modules; built-in ones are skipped.
func modules() []string {
	return []string{"virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "button", "evdev", "isofs"}
}

// requiredModules must exist, built in or as modules: without them the
// guest sees no disks (the seed) or no power button.
func requiredModules() []string { return []string{"virtio_pci", "virtio_blk", "button", "evdev"} }

// Options choose the host files the image is built from. Zero values pick
// the defaults.
type Options struct {
	// Kernel is a bzImage; default the newest /boot/vmlinuz-*.
	Kernel string
	// ModulesDir is the kernel's /lib/modules/VERSION directory; default
	// derived from Kernel's name.
	ModulesDir string
	// Busybox is a static busybox; default /bin/busybox (busybox-static).
	Busybox string
	// Extra are more files for the initramfs: path (relative to its root,
	// e.g. "bin/tool") -> content, each with mode 0755 and its missing
	// parent directories made. They may not replace the image's own files.
	Extra map[string][]byte
}

// Image is a built kernel and initramfs pair.
type Image struct {
	Kernel string
	Initrd string
	// Append is the kernel command line to boot them with.
	Append string
	// Modules are the kernel modules the initramfs loads, in order.
	Modules []string
}

// FindKernel returns the newest /boot/vmlinuz-* on the host.
func FindKernel() (string, error) {
	matches, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(matches) == 0 {
		return "", errors.New("no kernel in /boot (Debian: apt-get install linux-image-cloud-amd64)")
	}
	sort.Slice(matches, func(i, j int) bool { return versionLess(matches[i], matches[j]) })
	return matches[len(matches)-1], nil
}

// versionLess orders kernel file names by their numeric parts.
func versionLess(a, b string) bool {
	na, nb := numbers(a), numbers(b)
	for i := 0; i < len(na) && i < len(nb); i++ {
		if na[i] != nb[i] {
			return na[i] < nb[i]
		}
	}
	if len(na) != len(nb) {
		return len(na) < len(nb)
	}
	return a < b
}

func numbers(s string) []int {
	var out []int
	n, in := 0, false
	for _, r := range s + "x" {
		if r >= '0' && r <= '9' {
			n, in = n*10+int(r-'0'), true
			continue
		}
		if in {
			out = append(out, n)
		}
		n, in = 0, false
	}
	return out
}

func (o Options) withDefaults() (Options, error) {
	if o.Kernel == "" {
		k, err := FindKernel()
		if err != nil {
			return o, err
		}
		o.Kernel = k
	}
	if o.ModulesDir == "" {
		version := strings.TrimPrefix(filepath.Base(o.Kernel), "vmlinuz-")
		o.ModulesDir = filepath.Join("/lib/modules", version)
	}
	if o.Busybox == "" {
		o.Busybox = "/bin/busybox"
	}
	return o, nil
}

// Build writes vmlinuz and initrd.img into dir and returns them.
func Build(dir string, opts Options) (Image, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return Image{}, err
	}
	kernel, err := os.ReadFile(opts.Kernel)
	if err != nil {
		return Image{}, fmt.Errorf("test image kernel: %w", err)
	}
	initrd, mods, err := Initramfs(opts)
	if err != nil {
		return Image{}, err
	}
	img := Image{
		Kernel:  filepath.Join(dir, "vmlinuz"),
		Initrd:  filepath.Join(dir, "initrd.img"),
		Append:  DefaultAppend,
		Modules: mods,
	}
	if err := os.WriteFile(img.Kernel, kernel, 0o644); err != nil {
		return Image{}, err
	}
	if err := os.WriteFile(img.Initrd, initrd, 0o644); err != nil {
		return Image{}, err
	}
	return img, nil
}

// Initramfs returns the initramfs (an uncompressed newc cpio: the kernel
// unpacks it fastest) and the modules it loads.
func Initramfs(opts Options) ([]byte, []string, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	busybox, err := os.ReadFile(opts.Busybox)
	if err != nil {
		return nil, nil, fmt.Errorf("test image busybox (Debian: busybox-static): %w", err)
	}
	if err := checkStatic(opts.Busybox); err != nil {
		return nil, nil, err
	}
	mods, err := moduleOrder(opts.ModulesDir, modules())
	if err != nil {
		return nil, nil, err
	}
	for _, req := range requiredModules() {
		if !slices.ContainsFunc(mods, func(m string) bool { return moduleName(m) == req }) && !builtin(opts.ModulesDir, req) {
			return nil, nil, fmt.Errorf("kernel modules in %s: %s is neither built in nor a module", opts.ModulesDir, req)
		}
	}

	var buf bytes.Buffer
	c := newCPIO(&buf)
	dirs := map[string]bool{}
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "mnt", "etc", "www", "usr", "usr/share", "usr/share/udhcpc", "lib", "lib/modules"} {
		c.Dir(d)
		dirs[d] = true
	}
	// The kernel opens /dev/console for init before anything mounts devtmpfs.
	c.CharDev("dev/console", 0o600, 5, 1)
	c.CharDev("dev/null", 0o666, 1, 3)
	c.File("bin/busybox", 0o755, busybox)
	c.Symlink("bin/sh", "busybox")
	c.File("init", 0o755, []byte(initScript))
	c.File("usr/share/udhcpc/default.script", 0o755, []byte(udhcpcScript))
	c.File("www/index.html", 0o644, []byte("strata test vm\n"))
	c.File("etc/passwd", 0o644, []byte("root:x:0:0:root:/:/bin/sh\n"))
	c.File("etc/group", 0o644, []byte("root:x:0:\n"))

	var list []string
	for _, m := range mods {
		data, err := os.ReadFile(filepath.Join(opts.ModulesDir, m))
		if err != nil {
			return nil, nil, err
		}
		name := "lib/modules/" + path.Base(m)
		c.File(name, 0o644, data)
		list = append(list, "/"+name)
	}
	c.File("etc/modules", 0o644, []byte(strings.Join(list, "\n")+"\n"))
	if err := addExtra(c, dirs, opts.Extra); err != nil {
		return nil, nil, err
	}
	if err := c.Close(); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), mods, nil
}

// addExtra adds Options.Extra's files (sorted, so the archive is the same
// for the same files) and the parent directories not in dirs yet.
func addExtra(c *cpioWriter, dirs map[string]bool, extra map[string][]byte) error {
	names := make([]string, 0, len(extra))
	for name := range extra {
		names = append(names, name)
	}
	sort.Strings(names)
	clean := map[string]bool{}
	for _, name := range names {
		p := path.Clean(strings.TrimPrefix(name, "/"))
		if p == "." || p == ".." || strings.HasPrefix(p, "../") {
			return fmt.Errorf("test image: extra file %q is outside the initramfs", name)
		}
		if p == "init" || dirs[p] || clean[p] || strings.HasPrefix(p, "lib/modules/") ||
			slices.Contains([]string{"bin/busybox", "bin/sh", "dev/console", "dev/null", "etc/passwd", "etc/group", "etc/modules", "www/index.html", "usr/share/udhcpc/default.script"}, p) {
			return fmt.Errorf("test image: extra file %q would replace one of the image's own", name)
		}
		clean[p] = true
		var parents []string
		for d := path.Dir(p); d != "." && !dirs[d]; d = path.Dir(d) {
			if clean[d] {
				return fmt.Errorf("test image: extra file %q is below extra file %q", name, d)
			}
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			c.Dir(parents[i])
			dirs[parents[i]] = true
		}
		c.File(p, 0o755, extra[name])
	}
	return nil
}

// checkStatic refuses a dynamically linked executable: the initramfs has
// no libraries.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("test image: %w", err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the initramfs needs a static busybox (Debian: busybox-static)", p)
		}
	}
	return nil
}

func moduleName(p string) string {
	return strings.ReplaceAll(strings.TrimSuffix(path.Base(p), ".ko"), "-", "_")
}

// moduleOrder reads modules.dep and returns the files (relative to dir)
// of the wanted modules and their dependencies, dependencies first.
// Modules the kernel does not have are left out.
func moduleOrder(dir string, want []string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("kernel modules: %w (is the kernel package installed?)", err)
	}
	defer f.Close()
	deps := map[string][]string{}
	byName := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		byName[moduleName(mod)] = mod
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var order []string
	seen := map[string]bool{}
	var visit func(m string) error
	visit = func(m string) error {
		if seen[m] {
			return nil
		}
		seen[m] = true
		if !strings.HasSuffix(m, ".ko") {
			return fmt.Errorf("kernel module %s is compressed; the test initramfs loads only plain .ko files", m)
		}
		for _, d := range deps[m] {
			if err := visit(d); err != nil {
				return err
			}
		}
		order = append(order, m)
		return nil
	}
	for _, name := range want {
		m, ok := byName[name]
		if !ok {
			continue
		}
		if err := visit(m); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// builtin reports whether the kernel has the module built in.
func builtin(dir, name string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line != "" && moduleName(line) == name {
			return true
		}
	}
	return false
}

// WriteRawDisk writes a sparse raw disk image of size bytes that begins
// with DiskLabel, which the guest reports when it sees the disk.
func WriteRawDisk(p string, size int64) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte(DiskLabel + "\n"))
	return errors.Join(werr, f.Truncate(size), f.Close())
}

// initScript is the guest's PID 1.
const initScript = `#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
say() { echo "strata-testimage: $*"; }
for m in $(cat /etc/modules); do insmod "$m" 2>/dev/null; done
hostname strata-test
say "kernel $(uname -r), $(nproc) cpu(s), $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB"

# The ACPI power button (QMP system_powerdown) powers the guest off.
i=0
while [ $i -lt 50 ] && ! grep -qs "Power Button" /sys/class/input/event*/device/name; do
	sleep 0.1; i=$((i+1))
done
for ev in /sys/class/input/event*; do
	if grep -qw "` + IgnorePowerButtonArg + `" /proc/cmdline; then say "ignoring the power button"; break; fi
	if grep -qs "Power Button" "$ev/device/name"; then
		( head -c 1 "/dev/input/${ev##*/}" >/dev/null && say "power button pressed, powering off" && sync && poweroff -f ) &
	fi
done

for d in /dev/vd?; do
	[ -b "$d" ] || continue
	if [ "$(head -c 11 "$d")" = "` + DiskLabel + `" ]; then say "disk $d carries the test label"; fi
	if mount -t iso9660 -o ro "$d" /mnt 2>/dev/null; then
		if [ -f /mnt/meta-data ]; then
			say "cloud-init seed on $d"
			sed 's/^/strata-testimage: meta-data: /' /mnt/meta-data
			h=$(awk '/^local-hostname:/ {print $2}' /mnt/meta-data)
			[ -n "$h" ] && hostname "$h"
			if [ "$(head -c 2 /mnt/user-data)" = "#!" ]; then
				cp /mnt/user-data /tmp/user-data && chmod +x /tmp/user-data
				say "running user-data"
				/tmp/user-data
			fi
		else
			umount /mnt
		fi
	fi
done

ip link set lo up
httpd -p 80 -h /www
if [ -e /sys/class/net/eth0 ]; then
	( ip link set eth0 up && udhcpc -i eth0 -s /usr/share/udhcpc/default.script -t 5 -T 2 -n -q >/dev/null 2>&1 \
		&& say "eth0 $(ip -4 -o addr show eth0 | awk '{print $4}')" || say "eth0: no DHCP lease" ) &
fi

say "hostname $(hostname)"
echo "` + Marker + `"
if grep -qw "` + PowerOffArg + `" /proc/cmdline; then
	say "powering off as asked on the command line"
	sync
	poweroff -f
fi
# An interactive shell on the serial console, restarted when it exits.
( while :; do setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1'; sleep 1; done ) &
while :; do sleep 3600; done
`

// udhcpcScript applies a DHCP lease (busybox udhcpc calls it).
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip -4 addr add "$ip/${mask:-24}" dev "$interface"
	# Classless static routes (option 121: "dst/len router" pairs, router
	# 0.0.0.0 on the link) replace the router option when present.
	if [ -n "$staticroutes" ]; then
		set -- $staticroutes
		while [ $# -ge 2 ]; do
			if [ "$2" = 0.0.0.0 ]; then ip -4 route add "$1" dev "$interface"
			else ip -4 route add "$1" via "$2" dev "$interface"; fi
			shift 2
		done
	else
		for r in $router; do ip -4 route add default via "$r" dev "$interface"; break; done
	fi
	: > /etc/resolv.conf
	for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
	;;
esac
exit 0
`

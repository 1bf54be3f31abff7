package launcher

import (
	"fmt"
	"strconv"
	"strings"
)

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// TCGTranslationBufferMiB caps TCG's translation cache (-accel
// tcg,tb-size=N). QEMU 7.2 reserves 1 GiB for it, and a booted guest keeps
// ~56 MiB of it resident; capped, the cache is flushed when full and code
// is translated again. With 24 MiB, bench/vm's per-VM overhead beyond
// guest RAM (80 MiB guests) is ~52 MiB instead of ~90 (target <= 60), and
// the test image's boot takes as much QEMU CPU time as uncapped (median of
// 5: 5.1 s against 5.2 s); 16 MiB (~43 MiB overhead) took ~11 % more.
const TCGTranslationBufferMiB = 24

// Invocation is everything QEMUArgs needs besides the spec: facts the
// launcher found out at run time.
type Invocation struct {
	// Accel is AccelKVM or AccelTCG.
	Accel string
	// QMPSocket is the unix socket QEMU listens on for the launcher's QMP
	// connection. A QMP socket serves one client at a time, so...
	QMPSocket string
	// ...AdminQMPSocket, when set, is a second one for tools and tests
	// beside the launcher.
	AdminQMPSocket string
	// DiskFormats are the formats of Spec.Disks, in order.
	DiskFormats []string
	// CloudInitISO is the seed to attach (Spec.CloudInitISO or the one
	// the launcher wrote); empty for none.
	CloudInitISO string
	// Incoming starts QEMU waiting for a migration (-incoming defer).
	Incoming bool
}

// QEMUArgs renders qemu-system-x86_64's arguments for spec: no default
// devices, no user config, no display; the serial console on stdio; QMP
// on a unix socket; virtio disks, NICs and RNG.
func QEMUArgs(spec Spec, inv Invocation) []string {
	machine := spec.Machine
	if machine == "" {
		machine = DefaultMachine
	}
	args := []string{
		"-name", "guest=" + optEscape(spec.Name) + ",debug-threads=on",
		"-nodefaults", "-no-user-config", "-display", "none",
	}
	if inv.Accel == AccelTCG {
		args = append(args, "-machine", optEscape(machine), "-accel", AccelTCG+",tb-size="+strconv.Itoa(TCGTranslationBufferMiB))
	} else {
		args = append(args, "-machine", optEscape(machine)+",accel="+inv.Accel)
	}
	if inv.Accel == AccelKVM {
		// The host's CPU model is the fastest; TCG keeps QEMU's default
		// model, which it emulates cheapest.
		args = append(args, "-cpu", "host")
	}
	args = append(args,
		"-smp", strconv.Itoa(spec.VCPUs),
		"-m", strconv.Itoa(spec.MemoryMiB),
		// signal=off: a ^C typed on a terminal is the guest's, not QEMU's.
		"-chardev", "stdio,id=console,signal=off",
		"-serial", "chardev:console",
		"-chardev", "socket,id=qmp,path="+optEscape(inv.QMPSocket)+",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
	)
	if inv.AdminQMPSocket != "" {
		args = append(args,
			"-chardev", "socket,id=qmp-admin,path="+optEscape(inv.AdminQMPSocket)+",server=on,wait=off",
			"-mon", "chardev=qmp-admin,mode=control",
		)
	}
	if spec.Kernel != "" {
		args = append(args, "-kernel", spec.Kernel)
		if spec.Initrd != "" {
			args = append(args, "-initrd", spec.Initrd)
		}
		if spec.Append != "" {
			args = append(args, "-append", spec.Append)
		}
	}
	for i, d := range spec.Disks {
		format := d.Format
		if i < len(inv.DiskFormats) && inv.DiskFormats[i] != "" {
			format = inv.DiskFormats[i]
		}
		// node-name: the migration target exports the disk over NBD by it.
		drive := fmt.Sprintf("if=none,id=disk%d,node-name=%s,file=%s,format=%s,discard=unmap", i, DiskNodeName(i), optEscape(d.Path), format)
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		dev := fmt.Sprintf("virtio-blk-pci,drive=disk%d,serial=disk%d", i, i)
		if i == 0 && spec.Kernel == "" {
			dev += ",bootindex=1"
		}
		args = append(args, "-drive", drive, "-device", dev)
	}
	if inv.CloudInitISO != "" {
		args = append(args,
			"-drive", "if=none,id=cidata,file="+optEscape(inv.CloudInitISO)+",format=raw,readonly=on",
			"-device", "virtio-blk-pci,drive=cidata,serial=cidata",
		)
	}
	for i, n := range spec.NICs {
		dev := fmt.Sprintf("virtio-net-pci,netdev=net%d", i)
		if n.MAC != "" {
			dev += ",mac=" + n.MAC
		}
		args = append(args,
			"-netdev", fmt.Sprintf("tap,id=net%d,ifname=%s,script=no,downscript=no", i, n.Tap),
			"-device", dev,
		)
	}
	// Entropy for the guest (SSH host keys at first boot).
	args = append(args, "-device", "virtio-rng-pci")
	// Volumes last: behind root ports, the guest finds them after the
	// root disk and the seed (vda, vdb), in slot order.
	args = append(args, VolumeArgs(spec)...)
	if inv.Incoming {
		// -S: the guest stays paused after the migration until the
		// launcher has closed its NBD exports and says cont (with
		// late-block-activate, the disks activate only then).
		args = append(args, "-S", "-incoming", "defer")
	}
	return args
}

// DiskDevice is the QEMU drive id of spec disk i (the device a block job
// names), and DiskNodeName its block node's name.
func DiskDevice(i int) string   { return fmt.Sprintf("disk%d", i) }
func DiskNodeName(i int) string { return fmt.Sprintf("disk%d-node", i) }

// optEscape escapes a value inside a QEMU option list, where a comma
// separates options and ",," stands for a comma.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

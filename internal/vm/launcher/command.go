package launcher

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// ParseCommand turns the launcher's command line (without the program
// name) into a Config: a JSON spec (--spec) and/or flags, flags winning.
func ParseCommand(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("strata-launcher", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg                 Config
		specFile            string
		spec                Spec
		disks, nics, vols   listFlag
		volumeSlots         int
		accel               string
		name, machine       string
		kernel, initrd, app string
		iso                 string
		vcpus, memory       int
	)
	fs.StringVar(&specFile, "spec", "", "JSON `file` with the VM spec (flags below override it)")
	fs.StringVar(&name, "name", "", "VM name")
	fs.IntVar(&vcpus, "vcpus", 1, "virtual CPUs")
	fs.IntVar(&memory, "memory", 256, "guest RAM in `MiB`")
	fs.StringVar(&machine, "machine", "", "QEMU machine type (default "+DefaultMachine+")")
	fs.Var(&disks, "disk", "a virtio disk: `path=P[,format=qcow2|raw][,backing=BASE][,backing-format=F][,size=N[KMGT]][,readonly]` (repeatable; a missing P with a backing file is created as a qcow2 overlay)")
	fs.Var(&vols, "volume", "a block volume on a hot-pluggable root port: `path=P,slot=N[,format=raw|qcow2][,serial=S]` (repeatable)")
	fs.IntVar(&volumeSlots, "volume-slots", 0, "PCIe root ports for volumes (attached now or hot-plugged later)")
	fs.StringVar(&kernel, "kernel", "", "kernel to boot directly")
	fs.StringVar(&initrd, "initrd", "", "initrd for --kernel")
	fs.StringVar(&app, "append", "", "kernel command line for --kernel")
	fs.StringVar(&iso, "cloud-init-iso", "", "NoCloud seed ISO to attach read-only")
	fs.Var(&nics, "nic", "a virtio NIC on a tap device: `tap=TAP[,mac=MAC][,pod=IF[,address=A/N,gateway=G]]` (repeatable; pod=IF bridges it with the pod interface IF and gives the guest its address, or A/N and G, by DHCP)")
	fs.StringVar(&cfg.QEMU, "qemu", "qemu-system-x86_64", "QEMU system emulator")
	fs.StringVar(&cfg.QEMUImg, "qemu-img", "qemu-img", "qemu-img, to create overlays")
	fs.StringVar(&cfg.RunDir, "run-dir", DefaultRunDir, "directory for the QMP socket and status.json")
	fs.StringVar(&cfg.KVMDevice, "kvm-device", DefaultKVMDevice, "KVM device to try")
	fs.StringVar(&accel, "accel", "auto", "accelerator: auto (KVM when it works, else TCG), kvm or tcg")
	fs.BoolVar(&cfg.Incoming, "incoming", false, "be the target of a live migration: wait for the guest's memory on RUN_DIR/"+MigrateInSocket+" and serve the disks over NBD on RUN_DIR/"+NBDSocket)
	fs.DurationVar(&cfg.GracePeriod, "grace-period", DefaultGracePeriod, "how long the guest has to power off when stopped before QEMU quits")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if specFile != "" {
		var err error
		if spec, err = LoadSpec(specFile); err != nil {
			return Config{}, err
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	override := func(flagName string, apply func()) {
		if set[flagName] || specFile == "" {
			apply()
		}
	}
	override("name", func() { spec.Name = name })
	override("vcpus", func() { spec.VCPUs = vcpus })
	override("memory", func() { spec.MemoryMiB = memory })
	override("machine", func() { spec.Machine = machine })
	override("kernel", func() { spec.Kernel = kernel })
	override("initrd", func() { spec.Initrd = initrd })
	override("append", func() { spec.Append = app })
	override("cloud-init-iso", func() { spec.CloudInitISO = iso })
	for _, d := range disks {
		disk, err := ParseDisk(d)
		if err != nil {
			return Config{}, err
		}
		spec.Disks = append(spec.Disks, disk)
	}
	override("volume-slots", func() { spec.VolumeSlots = volumeSlots })
	for _, v := range vols {
		vol, err := ParseVolume(v)
		if err != nil {
			return Config{}, err
		}
		spec.Volumes = append(spec.Volumes, vol)
	}
	for _, n := range nics {
		nic, err := ParseNIC(n)
		if err != nil {
			return Config{}, err
		}
		spec.NICs = append(spec.NICs, nic)
	}
	if cfg.GracePeriod <= 0 {
		return Config{}, errors.New("--grace-period must be positive")
	}
	cfg.Spec = spec
	cfg.Accel = accel
	return cfg, nil
}

// options splits "a=1,b,c=2" into keys and values; a first element
// without "=" is returned as bare.
func options(s string) (bare string, kv map[string]string) {
	kv = map[string]string{}
	for i, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok && i == 0 {
			bare = part
			continue
		}
		kv[k] = v
	}
	return bare, kv
}

// ParseDisk parses a --disk value.
func ParseDisk(s string) (Disk, error) {
	bare, kv := options(s)
	d := Disk{Path: bare}
	for k, v := range kv {
		switch k {
		case "path":
			d.Path = v
		case "format":
			d.Format = v
		case "backing":
			d.BackingFile = v
		case "backing-format":
			d.BackingFormat = v
		case "size":
			n, err := ParseSize(v)
			if err != nil {
				return Disk{}, fmt.Errorf("--disk %s: %w", s, err)
			}
			d.SizeBytes = n
		case "readonly":
			if v != "" && v != "on" && v != "true" {
				return Disk{}, fmt.Errorf("--disk %s: readonly takes no value", s)
			}
			d.ReadOnly = true
		default:
			return Disk{}, fmt.Errorf("--disk %s: unknown option %q", s, k)
		}
	}
	if d.Path == "" {
		return Disk{}, fmt.Errorf("--disk %s: no path", s)
	}
	return d, nil
}

// ParseNIC parses a --nic value.
func ParseNIC(s string) (NIC, error) {
	bare, kv := options(s)
	n := NIC{Tap: bare}
	for k, v := range kv {
		switch k {
		case "tap":
			n.Tap = v
		case "mac":
			n.MAC = v
		case "pod":
			n.PodInterface = v
		case "address":
			n.Address = v
		case "gateway":
			n.Gateway = v
		default:
			return NIC{}, fmt.Errorf("--nic %s: unknown option %q", s, k)
		}
	}
	if n.Tap == "" {
		return NIC{}, fmt.Errorf("--nic %s: no tap", s)
	}
	return n, nil
}

// ParseSize parses a byte count with an optional binary suffix (K, M, G,
// T, optionally followed by "i" and/or "B").
func ParseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a positive number of bytes with an optional K, M, G or T", s)
	}
	return n * mult, nil
}

// Main is the launcher command: it parses args (without the program
// name), runs the VM with SIGTERM and SIGINT asking for a graceful stop,
// and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == QMPCommand {
		return QMPMain(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == VolumeCommand {
		return VolumeMain(args[1:], stdout, stderr)
	}
	if len(args) == 2 && args[0] == "remove-disks" {
		// A deleted VM's disk directory (the controller's cleanup pod).
		if err := os.RemoveAll(args[1]); err != nil {
			fmt.Fprintln(stderr, "strata-launcher: remove disks:", err)
			return ExitLauncherError
		}
		fmt.Fprintln(stdout, "strata-launcher: removed", args[1])
		return ExitOK
	}
	cfg, err := ParseCommand(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "strata-launcher:", err)
		}
		return ExitLauncherError
	}
	cfg.Stdout, cfg.Stderr = stdout, stderr
	// The console's input: the pod's stdin when it has one (a terminal or
	// a pipe), never /dev/null's endless EOF.
	if st, err := os.Stdin.Stat(); err == nil && st.Mode()&(os.ModeCharDevice|os.ModeNamedPipe) != 0 {
		cfg.Stdin = os.Stdin
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	shutdown := make(chan struct{}, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			select {
			case <-sigs:
				select {
				case shutdown <- struct{}{}:
				default:
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	cfg.Shutdown = shutdown
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "strata-launcher:", err)
	}
	return res.ExitCode
}

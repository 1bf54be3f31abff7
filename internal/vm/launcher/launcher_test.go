package launcher

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestQEMUArgs(t *testing.T) {
	common := func(name, machine, accel string) []string {
		args := []string{
			"-name", "guest=" + name + ",debug-threads=on",
			"-nodefaults", "-no-user-config", "-display", "none",
		}
		if accel == "tcg" {
			// TCG's translation cache is capped.
			return append(args, "-machine", machine, "-accel", "tcg,tb-size=24")
		}
		return append(args, "-machine", machine+",accel="+accel)
	}
	console := []string{
		"-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
		"-chardev", "socket,id=qmp,path=/run/vm/qmp.sock,server=on,wait=off", "-mon", "chardev=qmp,mode=control",
	}
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }
	tests := []struct {
		name string
		spec Spec
		inv  Invocation
		want []string
	}{{
		name: "direct kernel boot under TCG",
		spec: Spec{Name: "vm1", VCPUs: 1, MemoryMiB: 128, Kernel: "/k", Initrd: "/i", Append: "console=ttyS0 panic=-1"},
		inv:  Invocation{Accel: AccelTCG, QMPSocket: "/run/vm/qmp.sock"},
		want: cat(common("vm1", "q35", "tcg"), []string{"-smp", "1", "-m", "128"}, console,
			[]string{"-kernel", "/k", "-initrd", "/i", "-append", "console=ttyS0 panic=-1", "-device", "virtio-rng-pci"}),
	}, {
		name: "KVM, disks, seed, NICs, admin socket, commas escaped",
		spec: Spec{
			Name: "web-0", VCPUs: 4, MemoryMiB: 4096, Machine: "pc",
			Disks: []Disk{{Path: "/disks/root,1.qcow2"}, {Path: "/disks/data.img", ReadOnly: true}},
			NICs:  []NIC{{Tap: "tap0", MAC: "52:54:00:00:00:01"}, {Tap: "tap1"}},
		},
		inv: Invocation{Accel: AccelKVM, QMPSocket: "/run/vm/qmp.sock", AdminQMPSocket: "/run/vm/qmp-admin.sock",
			DiskFormats: []string{"qcow2", "raw"}, CloudInitISO: "/run/vm/cidata.iso"},
		want: cat(common("web-0", "pc", "kvm"), []string{"-cpu", "host", "-smp", "4", "-m", "4096"}, console,
			[]string{
				"-chardev", "socket,id=qmp-admin,path=/run/vm/qmp-admin.sock,server=on,wait=off", "-mon", "chardev=qmp-admin,mode=control",
				"-drive", "if=none,id=disk0,node-name=disk0-node,file=/disks/root,,1.qcow2,format=qcow2,discard=unmap",
				"-device", "virtio-blk-pci,drive=disk0,serial=disk0,bootindex=1",
				"-drive", "if=none,id=disk1,node-name=disk1-node,file=/disks/data.img,format=raw,discard=unmap,readonly=on",
				"-device", "virtio-blk-pci,drive=disk1,serial=disk1",
				"-drive", "if=none,id=cidata,file=/run/vm/cidata.iso,format=raw,readonly=on",
				"-device", "virtio-blk-pci,drive=cidata,serial=cidata",
				"-netdev", "tap,id=net0,ifname=tap0,script=no,downscript=no",
				"-device", "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01",
				"-netdev", "tap,id=net1,ifname=tap1,script=no,downscript=no",
				"-device", "virtio-net-pci,netdev=net1",
				"-device", "virtio-rng-pci",
			}),
	}, {
		name: "kernel and disk: the disk is not the boot device; spec format used when not detected",
		spec: Spec{Name: "k", VCPUs: 2, MemoryMiB: 64, Kernel: "/k", Disks: []Disk{{Path: "/d", Format: "raw"}}},
		inv:  Invocation{Accel: AccelTCG, QMPSocket: "/run/vm/qmp.sock"},
		want: cat(common("k", "q35", "tcg"), []string{"-smp", "2", "-m", "64"}, console, []string{
			"-kernel", "/k",
			"-drive", "if=none,id=disk0,node-name=disk0-node,file=/d,format=raw,discard=unmap",
			"-device", "virtio-blk-pci,drive=disk0,serial=disk0",
			"-device", "virtio-rng-pci",
		}),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := QEMUArgs(tt.spec, tt.inv)
			if !slices.Equal(got, tt.want) {
				t.Errorf("args:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Spec{Name: "vm", VCPUs: 1, MemoryMiB: 64, Kernel: "/k"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid spec: %v", err)
	}
	tests := []struct {
		change func(*Spec)
		want   string
	}{
		{func(s *Spec) { s.Name = "" }, "name"},
		{func(s *Spec) { s.Name = "a/b" }, "name"},
		{func(s *Spec) { s.VCPUs = 0 }, "vcpus"},
		{func(s *Spec) { s.MemoryMiB = 8 }, "memory"},
		{func(s *Spec) { s.Kernel = "" }, "nothing to boot"},
		{func(s *Spec) { s.Kernel = ""; s.Disks = []Disk{{Path: "/d"}}; s.Append = "x" }, "need a kernel"},
		{func(s *Spec) { s.Disks = []Disk{{}} }, "no path"},
		{func(s *Spec) { s.Disks = []Disk{{Path: "/d", Format: "vmdk"}} }, "format"},
		{func(s *Spec) { s.Disks = []Disk{{Path: "/d", Format: "raw", BackingFile: "/b"}} }, "overlay"},
		{func(s *Spec) { s.NICs = []NIC{{Tap: ""}} }, "tap"},
		{func(s *Spec) { s.NICs = []NIC{{Tap: "averyveryverylongname"}} }, "tap"},
		{func(s *Spec) { s.NICs = []NIC{{Tap: "t0", MAC: "zz"}} }, "MAC"},
		{func(s *Spec) { s.NICs = []NIC{{Tap: "t0", MAC: "01:00:5e:00:00:01"}} }, "multicast"},
		{func(s *Spec) { s.CloudInitISO = "/x"; s.CloudInit = &CloudInit{InstanceID: "i", Hostname: "h"} }, "not both"},
		{func(s *Spec) { s.CloudInit = &CloudInit{Hostname: "h"} }, "cloudInit"},
	}
	for _, tt := range tests {
		s := ok
		tt.change(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("spec %+v: error %v, want one about %q", s, err, tt.want)
		}
	}
}

func TestParseDiskNICSize(t *testing.T) {
	disks := []struct {
		in   string
		want Disk
		bad  bool
	}{
		{in: "/d.qcow2", want: Disk{Path: "/d.qcow2"}},
		{in: "path=/o.qcow2,backing=/base.img,backing-format=raw,size=2G", want: Disk{Path: "/o.qcow2", BackingFile: "/base.img", BackingFormat: "raw", SizeBytes: 2 << 30}},
		{in: "/x,format=raw,readonly", want: Disk{Path: "/x", Format: "raw", ReadOnly: true}},
		{in: "format=raw", bad: true},
		{in: "/x,color=blue", bad: true},
		{in: "/x,size=-1", bad: true},
	}
	for _, tt := range disks {
		got, err := ParseDisk(tt.in)
		if (err != nil) != tt.bad || !tt.bad && got != tt.want {
			t.Errorf("ParseDisk(%q) = %+v, %v", tt.in, got, err)
		}
	}
	nics := []struct {
		in   string
		want NIC
		bad  bool
	}{
		{in: "tap0", want: NIC{Tap: "tap0"}},
		{in: "tap=tap1,mac=52:54:00:aa:bb:cc", want: NIC{Tap: "tap1", MAC: "52:54:00:aa:bb:cc"}},
		{in: "mac=52:54:00:aa:bb:cc", bad: true},
		{in: "tap0,model=e1000", bad: true},
	}
	for _, tt := range nics {
		got, err := ParseNIC(tt.in)
		if (err != nil) != tt.bad || !tt.bad && got != tt.want {
			t.Errorf("ParseNIC(%q) = %+v, %v", tt.in, got, err)
		}
	}
	sizes := map[string]int64{"512": 512, "4K": 4096, "10M": 10 << 20, "2GiB": 2 << 30, "1t": 1 << 40, "3GB": 3 << 30}
	for in, want := range sizes {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "0", "-5M", "1.5G", "9999999999T"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q): no error", in)
		}
	}
}

func TestParseCommand(t *testing.T) {
	dir := t.TempDir()
	specFile := filepath.Join(dir, "spec.json")
	os.WriteFile(specFile, []byte(`{"name":"fromfile","vcpus":2,"memoryMiB":512,"kernel":"/k",
		"disks":[{"path":"/a.qcow2"}],"cloudInit":{"instanceID":"i-1","hostname":"h","userData":"#!/bin/sh\n"}}`), 0o644)

	cfg, err := ParseCommand([]string{"--spec", specFile, "--memory", "1024", "--disk", "/b.raw,format=raw", "--grace-period", "5s", "--accel", "tcg"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Spec
	if s.Name != "fromfile" || s.VCPUs != 2 || s.MemoryMiB != 1024 || s.Kernel != "/k" {
		t.Errorf("spec %+v: flags set must override the file, others keep it", s)
	}
	if len(s.Disks) != 2 || s.Disks[1].Path != "/b.raw" || s.CloudInit == nil || s.CloudInit.UserData != "#!/bin/sh\n" {
		t.Errorf("spec %+v", s)
	}
	if cfg.GracePeriod.Seconds() != 5 || cfg.Accel != "tcg" || cfg.RunDir != DefaultRunDir {
		t.Errorf("config %+v", cfg)
	}

	cfg, err = ParseCommand([]string{"--name", "f", "--kernel", "/k", "--nic", "tap0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Spec.VCPUs != 1 || cfg.Spec.MemoryMiB != 256 || len(cfg.Spec.NICs) != 1 || cfg.GracePeriod != DefaultGracePeriod {
		t.Errorf("flags only: %+v", cfg)
	}

	os.WriteFile(specFile, []byte(`{"name":"x","cpus":2}`), 0o644)
	for _, args := range [][]string{
		{"--spec", specFile},                      // unknown field
		{"--spec", filepath.Join(dir, "missing")}, // no file
		{"--grace-period", "0s"},
		{"--disk", "format=raw"},
		{"extra"},
	} {
		if _, err := ParseCommand(args, io.Discard); err == nil {
			t.Errorf("ParseCommand(%q): no error", args)
		}
	}
}

func TestDetectAccel(t *testing.T) {
	a := DetectAccel(filepath.Join(t.TempDir(), "kvm"))
	if a.Name != AccelTCG || !strings.Contains(a.Reason, "no such file") {
		t.Errorf("missing device: %+v", a)
	}
	// /dev/null opens but is no KVM: the ioctl fails.
	a = DetectAccel("/dev/null")
	if a.Name != AccelTCG || !strings.Contains(a.Reason, "KVM_GET_API_VERSION") {
		t.Errorf("/dev/null: %+v", a)
	}
	// Whatever this host has, detection answers with a reason.
	a = DetectAccel(DefaultKVMDevice)
	t.Logf("this host: %s (%s)", a.Name, a.Reason)
	if a.Reason == "" || (a.Name != AccelKVM && a.Name != AccelTCG) {
		t.Errorf("host: %+v", a)
	}
}

func TestChooseAccel(t *testing.T) {
	kvm := func() Accel { return Accel{AccelKVM, "works"} }
	tcg := func() Accel { return Accel{AccelTCG, "KVM unusable: no /dev/kvm"} }
	tests := []struct {
		req     string
		detect  func() Accel
		want    string
		wantErr bool
	}{
		{"auto", kvm, AccelKVM, false},
		{"", tcg, AccelTCG, false},
		{"tcg", kvm, AccelTCG, false},
		{"kvm", kvm, AccelKVM, false},
		{"kvm", tcg, AccelTCG, true},
		{"hvf", kvm, "", true},
	}
	for _, tt := range tests {
		got, err := ChooseAccel(tt.req, tt.detect)
		if got.Name != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ChooseAccel(%q) = %+v, %v", tt.req, got, err)
		}
	}
}

func TestDisksHelpers(t *testing.T) {
	dir := t.TempDir()
	raw, q := filepath.Join(dir, "raw"), filepath.Join(dir, "q")
	os.WriteFile(raw, make([]byte, 1024), 0o644)
	os.WriteFile(q, []byte("QFI\xfb\x00\x00\x00\x03"), 0o644)
	for path, want := range map[string]string{raw: FormatRaw, q: FormatQCOW2} {
		if got, err := DetectFormat(path); err != nil || got != want {
			t.Errorf("DetectFormat(%s) = %q, %v", path, got, err)
		}
	}
	if _, err := DetectFormat(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	got := OverlayArgs("/o.qcow2", "/base.raw", "raw", 1<<30)
	want := []string{"create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/base.raw", "/o.qcow2", "1073741824"}
	if !slices.Equal(got, want) {
		t.Errorf("OverlayArgs = %q", got)
	}
	if got := OverlayArgs("/o", "/b", "qcow2", 0); len(got) != 9 {
		t.Errorf("OverlayArgs without size = %q", got)
	}
	if s := (CloudInit{InstanceID: "i", Hostname: "h", UserData: "x"}).Seed(); s.InstanceID != "i" || string(s.UserData) != "x" {
		t.Errorf("seed %+v", s)
	}
}

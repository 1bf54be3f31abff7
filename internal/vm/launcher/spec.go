// Package launcher is what runs inside a VM's launcher pod: given a Spec
// it picks the accelerator (KVM when /dev/kvm works, TCG otherwise, with
// the reason), prepares the disks (qcow2 overlays on base images), writes
// the cloud-init seed, starts qemu-system-x86_64 with the serial console on
// its own stdout (so the container log, `kubectl logs`, shows the boot),
// and controls QEMU over QMP. When asked to stop (SIGTERM, when the pod
// terminates) it presses the guest's ACPI power button, waits a grace
// period, then makes QEMU quit. Its exit code says how the VM ended (see
// the Exit* constants), and a status file in the run directory says what
// it is doing.
package launcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"

	"github.com/strata-cloud/strata/internal/vm/cloudinit"
)

// Spec is the VM a launcher runs.
type Spec struct {
	// Name names the VM (QEMU's -name, log lines, the status file).
	Name string `json:"name"`
	// VCPUs is the number of virtual CPUs.
	VCPUs int `json:"vcpus"`
	// MemoryMiB is the guest's RAM.
	MemoryMiB int `json:"memoryMiB"`
	// Machine is QEMU's machine type; empty means DefaultMachine.
	Machine string `json:"machine,omitempty"`
	// Disks are attached as virtio-blk devices in order (vda, vdb, ...);
	// the first is the boot disk when no kernel is given.
	Disks []Disk `json:"disks,omitempty"`
	// Kernel, Initrd and Append boot a kernel directly (no bootloader).
	Kernel string `json:"kernel,omitempty"`
	Initrd string `json:"initrd,omitempty"`
	Append string `json:"append,omitempty"`
	// CloudInitISO is a NoCloud seed image to attach read-only...
	CloudInitISO string `json:"cloudInitISO,omitempty"`
	// ...or CloudInit is one the launcher writes into its run directory.
	CloudInit *CloudInit `json:"cloudInit,omitempty"`
	// Volumes are block volumes attached at start, each a virtio-blk
	// device on its own PCIe root port so that it can be unplugged.
	Volumes []Volume `json:"volumes,omitempty"`
	// VolumeSlots is the number of PCIe root ports for volumes
	// (VolumePort(0..VolumeSlots-1)): a volume hot-plugged later
	// (`strata-launcher volume attach`) needs a free one.
	VolumeSlots int `json:"volumeSlots,omitempty"`
	// NICs are virtio-net devices, each on a tap device that the pod's
	// network set up. Empty means a VM without network.
	NICs []NIC `json:"nics,omitempty"`
}

// Disk is one virtio disk.
type Disk struct {
	// Path is the disk image QEMU opens.
	Path string `json:"path"`
	// Format is Path's format ("qcow2" or "raw"); empty means detected
	// from the file's header (qcow2's magic, else raw).
	Format string `json:"format,omitempty"`
	// BackingFile, when set and Path does not exist yet, makes the
	// launcher create Path as a qcow2 overlay on it (qemu-img create).
	BackingFile string `json:"backingFile,omitempty"`
	// BackingFormat is BackingFile's format; empty means detected.
	BackingFormat string `json:"backingFormat,omitempty"`
	// SizeBytes is the overlay's virtual size; 0 means the base's.
	SizeBytes int64 `json:"sizeBytes,omitempty"`
	// ReadOnly attaches the disk read-only.
	ReadOnly bool `json:"readOnly,omitempty"`
}

// Volume is one block volume: a file (raw or qcow2) on the node that QEMU
// opens itself (see internal/vm/launcher/volumes.go).
type Volume struct {
	// Path is the volume's file.
	Path string `json:"path"`
	// Format is raw or qcow2; empty means raw.
	Format string `json:"format,omitempty"`
	// Serial is the serial number the guest sees (at most 20 bytes).
	Serial string `json:"serial,omitempty"`
	// Slot is the volume's root port, 0 <= Slot < VolumeSlots.
	Slot int `json:"slot"`
}

// NIC is one network interface.
type NIC struct {
	// Tap is the host tap device QEMU attaches to.
	Tap string `json:"tap"`
	// MAC is the guest's MAC address; empty lets QEMU pick one (or, with
	// PodInterface, takes that interface's).
	MAC string `json:"mac,omitempty"`
	// PodInterface, when set, binds the NIC to the pod's network: the
	// launcher bridges the tap with this pod interface (eth0) and hands
	// its IPv4 address to the guest by DHCP (see podnet.go).
	PodInterface string `json:"podInterface,omitempty"`
	// Address and Gateway, with PodInterface, are what the guest's DHCP
	// lease holds instead of the pod interface's own: a migrated guest
	// keeps the address it had on its first node.
	Address string `json:"address,omitempty"`
	Gateway string `json:"gateway,omitempty"`
}

// CloudInit is a NoCloud seed in the spec (see package cloudinit).
type CloudInit struct {
	InstanceID    string             `json:"instanceID"`
	Hostname      string             `json:"hostname"`
	PublicKeys    []string           `json:"publicKeys,omitempty"`
	UserData      string             `json:"userData,omitempty"`
	NetworkConfig *cloudinit.Network `json:"networkConfig,omitempty"`
}

// Seed converts c to a cloudinit.Seed.
func (c CloudInit) Seed() cloudinit.Seed {
	s := cloudinit.Seed{InstanceID: c.InstanceID, Hostname: c.Hostname, PublicKeys: c.PublicKeys, Network: c.NetworkConfig}
	if c.UserData != "" {
		s.UserData = []byte(c.UserData)
	}
	return s
}

// DefaultMachine is the machine type VMs get: the modern PCIe chipset.
const DefaultMachine = "q35"

// Disk formats the launcher knows.
const (
	FormatQCOW2 = "qcow2"
	FormatRaw   = "raw"
)

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,62})$`)

// Validate reports everything that makes the spec unusable.
func (s Spec) Validate() error {
	var errs []error
	if !nameRE.MatchString(s.Name) {
		errs = append(errs, fmt.Errorf("name %q: want 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", s.Name))
	}
	if s.VCPUs < 1 || s.VCPUs > 255 {
		errs = append(errs, fmt.Errorf("vcpus %d: want 1-255", s.VCPUs))
	}
	if s.MemoryMiB < 16 {
		errs = append(errs, fmt.Errorf("memory %d MiB: want at least 16", s.MemoryMiB))
	}
	if s.Kernel == "" && (s.Initrd != "" || s.Append != "") {
		errs = append(errs, errors.New("initrd and append need a kernel"))
	}
	if s.Kernel == "" && len(s.Disks) == 0 {
		errs = append(errs, errors.New("nothing to boot: give a kernel or at least one disk"))
	}
	for i, d := range s.Disks {
		if d.Path == "" {
			errs = append(errs, fmt.Errorf("disk %d: no path", i))
		}
		for _, f := range []string{d.Format, d.BackingFormat} {
			if f != "" && f != FormatQCOW2 && f != FormatRaw {
				errs = append(errs, fmt.Errorf("disk %d: format %q: want qcow2 or raw", i, f))
			}
		}
		if d.BackingFile != "" && d.Format == FormatRaw {
			errs = append(errs, fmt.Errorf("disk %d: an overlay on a backing file is qcow2, not raw", i))
		}
		if d.SizeBytes < 0 {
			errs = append(errs, fmt.Errorf("disk %d: negative size", i))
		}
	}
	if s.VolumeSlots < 0 || s.VolumeSlots > MaxVolumeSlots {
		errs = append(errs, fmt.Errorf("volume slots %d: want 0-%d", s.VolumeSlots, MaxVolumeSlots))
	}
	slots := map[int]bool{}
	for i, v := range s.Volumes {
		if err := v.Validate(s.VolumeSlots); err != nil {
			errs = append(errs, fmt.Errorf("volume %d: %w", i, err))
		}
		if slots[v.Slot] {
			errs = append(errs, fmt.Errorf("volume %d: slot %d is taken", i, v.Slot))
		}
		slots[v.Slot] = true
	}
	if s.CloudInitISO != "" && s.CloudInit != nil {
		errs = append(errs, errors.New("give cloudInitISO or cloudInit, not both"))
	}
	if s.CloudInit != nil {
		if err := s.CloudInit.Seed().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("cloudInit: %w", err))
		}
	}
	for i, n := range s.NICs {
		if n.Tap == "" || len(n.Tap) > 15 || strings.ContainsAny(n.Tap, "/ ,") {
			errs = append(errs, fmt.Errorf("nic %d: tap %q is not an interface name", i, n.Tap))
		}
		if n.PodInterface != "" && (len(n.PodInterface) > 15 || strings.ContainsAny(n.PodInterface, "/ ,")) {
			errs = append(errs, fmt.Errorf("nic %d: pod interface %q is not an interface name", i, n.PodInterface))
		}
		if n.Address != "" {
			if p, err := netip.ParsePrefix(n.Address); err != nil || !p.Addr().Is4() {
				errs = append(errs, fmt.Errorf("nic %d: address %q: want IPv4 address/length", i, n.Address))
			}
		}
		if n.Gateway != "" {
			if a, err := netip.ParseAddr(n.Gateway); err != nil || !a.Is4() {
				errs = append(errs, fmt.Errorf("nic %d: gateway %q: want an IPv4 address", i, n.Gateway))
			}
		}
		if n.MAC != "" {
			if hw, err := net.ParseMAC(n.MAC); err != nil || len(hw) != 6 {
				errs = append(errs, fmt.Errorf("nic %d: MAC %q is not an Ethernet address", i, n.MAC))
			} else if hw[0]&1 != 0 {
				errs = append(errs, fmt.Errorf("nic %d: MAC %q is a multicast address", i, n.MAC))
			}
		}
	}
	return errors.Join(errs...)
}

// MaxVolumeSlots bounds Spec.VolumeSlots (PCIe root ports on pcie.0).
const MaxVolumeSlots = 24

// Validate reports what makes v unusable with slots root ports.
func (v Volume) Validate(slots int) error {
	var errs []error
	if v.Path == "" {
		errs = append(errs, errors.New("no path"))
	}
	if v.Format != "" && v.Format != FormatQCOW2 && v.Format != FormatRaw {
		errs = append(errs, fmt.Errorf("format %q: want qcow2 or raw", v.Format))
	}
	if len(v.Serial) > 20 || strings.ContainsAny(v.Serial, ",\"\\") {
		errs = append(errs, fmt.Errorf("serial %q: want at most 20 bytes without commas or quotes", v.Serial))
	}
	if v.Slot < 0 || v.Slot >= slots {
		errs = append(errs, fmt.Errorf("slot %d: want 0-%d", v.Slot, slots-1))
	}
	return errors.Join(errs...)
}

// LoadSpec reads a JSON spec, refusing unknown fields.
func LoadSpec(path string) (Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Spec{}, err
	}
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("spec %s: %w", path, err)
	}
	return s, nil
}

// qcow2Magic starts every qcow2 image.
const qcow2Magic = "QFI\xfb"

// DetectFormat says whether the image at path is qcow2 or raw, by its
// header (never by its name).
func DetectFormat(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 4)
	n, _ := f.Read(head)
	if n == 4 && string(head) == qcow2Magic {
		return FormatQCOW2, nil
	}
	return FormatRaw, nil
}

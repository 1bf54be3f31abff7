package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/strata-cloud/strata/internal/vm/qmp"
)

// Volumes are block volumes (storage.strata.io Volumes) that QEMU opens as
// files: the node agent's raw or qcow2 file, never its loop device — a
// container's device cgroup refuses block devices that are not in its
// spec, and a file needs no rule. Each volume is a virtio-blk device on its
// own PCIe root port (q35's root bus takes no hot-plug), with these ids:
//
//	root port  vport<slot>   (-device pcie-root-port, made at start)
//	block node vol<slot>     (-blockdev / blockdev-add)
//	device     vol<slot>     (-device / device_add virtio-blk-pci)
//
// so that a running VM's volumes can be listed, attached and detached by
// slot (`strata-launcher volume list|attach|detach`).

// VolumePort is the id of slot's PCIe root port.
func VolumePort(slot int) string { return "vport" + strconv.Itoa(slot) }

// VolumeID is the block node name and device id of slot's volume.
func VolumeID(slot int) string { return "vol" + strconv.Itoa(slot) }

// VolumeSlot is the slot of a VolumeID, or -1.
func VolumeSlot(id string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(id, "vol"))
	if !strings.HasPrefix(id, "vol") || err != nil || n < 0 {
		return -1
	}
	return n
}

// RootPortOptions are the -device options of slot's root port. Chassis
// and port numbers are unique per port; io-reserve=0: virtio devices on
// PCIe are modern-only and need no I/O space, which 24 bridges would
// exhaust.
func RootPortOptions(slot int) string {
	return fmt.Sprintf("pcie-root-port,id=%s,bus=pcie.0,chassis=%d,port=%d,io-reserve=0", VolumePort(slot), slot+1, slot+1)
}

// BlockdevOptions are the blockdev-add arguments (and, as JSON, the
// -blockdev value) that open v: a format node over a file node.
func BlockdevOptions(v Volume) map[string]any {
	format := v.Format
	if format == "" {
		format = FormatRaw
	}
	return map[string]any{
		"driver":    format,
		"node-name": VolumeID(v.Slot),
		"discard":   "unmap",
		"file":      map[string]any{"driver": "file", "filename": v.Path},
	}
}

// DeviceOptions are the device_add arguments that plug v's block node
// into the guest.
func DeviceOptions(v Volume) map[string]any {
	d := map[string]any{
		"driver": "virtio-blk-pci",
		"id":     VolumeID(v.Slot),
		"drive":  VolumeID(v.Slot),
		"bus":    VolumePort(v.Slot),
	}
	if v.Serial != "" {
		d["serial"] = v.Serial
	}
	return d
}

// VolumeArgs are QEMU's arguments for spec's root ports and volumes.
func VolumeArgs(spec Spec) []string {
	var args []string
	for s := 0; s < spec.VolumeSlots; s++ {
		args = append(args, "-device", RootPortOptions(s))
	}
	for _, v := range spec.Volumes {
		bd, _ := json.Marshal(BlockdevOptions(v))
		dev := fmt.Sprintf("virtio-blk-pci,id=%s,drive=%s,bus=%s", VolumeID(v.Slot), VolumeID(v.Slot), VolumePort(v.Slot))
		if v.Serial != "" {
			dev += ",serial=" + optEscape(v.Serial)
		}
		args = append(args, "-blockdev", string(bd), "-device", dev)
	}
	return args
}

// ParseVolume parses a --volume value: path=P,slot=N[,format=F][,serial=S].
func ParseVolume(s string) (Volume, error) {
	bare, kv := options(s)
	v := Volume{Path: bare, Slot: -1}
	for k, val := range kv {
		switch k {
		case "path":
			v.Path = val
		case "format":
			v.Format = val
		case "serial":
			v.Serial = val
		case "slot":
			n, err := strconv.Atoi(val)
			if err != nil {
				return Volume{}, fmt.Errorf("--volume %s: slot %q is not a number", s, val)
			}
			v.Slot = n
		default:
			return Volume{}, fmt.Errorf("--volume %s: unknown option %q", s, k)
		}
	}
	if v.Path == "" || v.Slot < 0 {
		return Volume{}, fmt.Errorf("--volume %s: want path=P,slot=N", s)
	}
	return v, nil
}

// VolumeState is one slot's volume as QEMU has it (`volume list`).
type VolumeState struct {
	Slot int `json:"slot"`
	// Path is the block node's file; empty when only the device is left.
	Path string `json:"path,omitempty"`
	// Device says the guest's device is (still) there; Node that the
	// block node is.
	Device bool `json:"device"`
	Node   bool `json:"node"`
}

// volumeMonitor is what the volume commands need of a QMP client.
type volumeMonitor interface {
	QOMList(ctx context.Context, path string) ([]qmp.ObjectProperty, error)
	QueryNamedBlockNodes(ctx context.Context) ([]qmp.BlockNode, error)
	BlockdevAdd(ctx context.Context, opts map[string]any) error
	BlockdevDel(ctx context.Context, nodeName string) error
	DeviceAdd(ctx context.Context, opts map[string]any) error
	DeviceDel(ctx context.Context, id string) error
}

// ListVolumes reports every slot that has a volume's device or node.
func ListVolumes(ctx context.Context, mon volumeMonitor) ([]VolumeState, error) {
	byslot := map[int]*VolumeState{}
	get := func(s int) *VolumeState {
		if byslot[s] == nil {
			byslot[s] = &VolumeState{Slot: s}
		}
		return byslot[s]
	}
	devs, err := mon.QOMList(ctx, "/machine/peripheral")
	if err != nil {
		return nil, err
	}
	for _, d := range devs {
		if s := VolumeSlot(d.Name); s >= 0 && strings.HasPrefix(d.Type, "child<") {
			get(s).Device = true
		}
	}
	nodes, err := mon.QueryNamedBlockNodes(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if s := VolumeSlot(n.NodeName); s >= 0 {
			st := get(s)
			st.Node = true
			st.Path = n.File
		}
	}
	out := make([]VolumeState, 0, len(byslot))
	for _, st := range byslot {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Slot < out[j].Slot })
	return out, nil
}

// AttachVolume hot-plugs v (idempotent: a slot that already holds v's
// file is left as it is; one holding another file is an error).
func AttachVolume(ctx context.Context, mon volumeMonitor, v Volume) error {
	have, err := ListVolumes(ctx, mon)
	if err != nil {
		return err
	}
	var st VolumeState
	for _, h := range have {
		if h.Slot == v.Slot {
			st = h
		}
	}
	if st.Node && filepath.Clean(st.Path) != filepath.Clean(v.Path) {
		return fmt.Errorf("slot %d holds %s", v.Slot, st.Path)
	}
	if st.Device && !st.Node {
		return fmt.Errorf("slot %d is still being unplugged", v.Slot)
	}
	if !st.Node {
		if err := mon.BlockdevAdd(ctx, BlockdevOptions(v)); err != nil {
			return err
		}
	}
	if !st.Device {
		if err := mon.DeviceAdd(ctx, DeviceOptions(v)); err != nil {
			if !st.Node {
				_ = mon.BlockdevDel(ctx, VolumeID(v.Slot))
			}
			return err
		}
	}
	return nil
}

// DetachVolume unplugs slot's volume one step at a time and says whether
// it is gone: while the guest's device is there it asks for it to go
// (device_del; the guest takes seconds), once it is gone it closes the
// block node (blockdev-del). Call it again until it returns true.
func DetachVolume(ctx context.Context, mon volumeMonitor, slot int) (bool, error) {
	have, err := ListVolumes(ctx, mon)
	if err != nil {
		return false, err
	}
	for _, h := range have {
		if h.Slot != slot {
			continue
		}
		if h.Device {
			err := mon.DeviceDel(ctx, VolumeID(slot))
			var qe *qmp.Error
			if errors.As(err, &qe) && strings.Contains(qe.Desc, "in the process of unplug") {
				err = nil
			}
			return false, err
		}
		if h.Node {
			return true, mon.BlockdevDel(ctx, VolumeID(slot))
		}
	}
	return true, nil
}

// VolumeCommand is the launcher's subcommand for a running VM's volumes.
const VolumeCommand = "volume"

// VolumeMain is `strata-launcher volume [--run-dir D] list | attach
// path=P,slot=N[,format=F][,serial=S] | detach SLOT`, on the admin QMP
// socket. list prints a JSON array of VolumeState; attach prints
// "attached"; detach prints "detaching" (the guest is letting go: run it
// again) or "detached". Exit codes as `qmp`.
func VolumeMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("strata-launcher volume", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runDir := fs.String("run-dir", DefaultRunDir, "the launcher's run directory (its admin QMP socket)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for QEMU")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: strata-launcher volume [--run-dir D] list | attach path=P,slot=N[,format=F][,serial=S] | detach SLOT")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	a := fs.Args()
	if len(a) == 0 || (a[0] == "list") != (len(a) == 1) || len(a) > 2 {
		fs.Usage()
		return 2
	}
	var vol Volume
	slot := -1
	switch a[0] {
	case "list":
	case "attach":
		var err error
		if vol, err = ParseVolume(a[1]); err != nil {
			fmt.Fprintln(stderr, "strata-launcher volume:", err)
			return 2
		}
		if err := vol.Validate(MaxVolumeSlots); err != nil {
			fmt.Fprintln(stderr, "strata-launcher volume:", err)
			return 2
		}
	case "detach":
		n, err := strconv.Atoi(a[1])
		if err != nil || n < 0 {
			fmt.Fprintf(stderr, "strata-launcher volume: detach %q: want a slot number\n", a[1])
			return 2
		}
		slot = n
	default:
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	mon, err := qmp.Dial(ctx, filepath.Join(*runDir, AdminQMPSocketName))
	if err != nil {
		fmt.Fprintf(stderr, "strata-launcher volume: %v (is the VM running in this container?)\n", err)
		return 1
	}
	defer mon.Close()
	switch a[0] {
	case "list":
		st, err := ListVolumes(ctx, mon)
		if err != nil {
			fmt.Fprintln(stderr, "strata-launcher volume:", err)
			return 1
		}
		b, _ := json.Marshal(st)
		fmt.Fprintln(stdout, string(b))
	case "attach":
		if err := AttachVolume(ctx, mon, vol); err != nil {
			fmt.Fprintln(stderr, "strata-launcher volume:", err)
			return 1
		}
		fmt.Fprintln(stdout, "attached")
	case "detach":
		gone, err := DetachVolume(ctx, mon, slot)
		if err != nil {
			fmt.Fprintln(stderr, "strata-launcher volume:", err)
			return 1
		}
		if gone {
			fmt.Fprintln(stdout, "detached")
		} else {
			fmt.Fprintln(stdout, "detaching")
		}
	}
	return 0
}

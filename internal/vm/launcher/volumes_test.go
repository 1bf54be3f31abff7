package launcher

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestVolumeQMPCommands(t *testing.T) {
	v := Volume{Path: "/v/uid/disk.raw", Slot: 3, Serial: "data"}
	bd, _ := json.Marshal(BlockdevOptions(v))
	if want := `{"discard":"unmap","driver":"raw","file":{"driver":"file","filename":"/v/uid/disk.raw"},"node-name":"vol3"}`; string(bd) != want {
		t.Errorf("blockdev-add %s, want %s", bd, want)
	}
	if got, want := DeviceOptions(v), map[string]any{"driver": "virtio-blk-pci", "id": "vol3", "drive": "vol3", "bus": "vport3", "serial": "data"}; !reflect.DeepEqual(got, want) {
		t.Errorf("device_add %v, want %v", got, want)
	}
	args := strings.Join(VolumeArgs(Spec{VolumeSlots: 2, Volumes: []Volume{{Path: "/q.qcow2", Format: "qcow2", Slot: 1}}}), " ")
	for _, want := range []string{
		"-device pcie-root-port,id=vport0,bus=pcie.0,chassis=1,port=1,io-reserve=0",
		"-device pcie-root-port,id=vport1,bus=pcie.0,chassis=2,port=2,io-reserve=0",
		`-blockdev {"discard":"unmap","driver":"qcow2","file":{"driver":"file","filename":"/q.qcow2"},"node-name":"vol1"}`,
		"-device virtio-blk-pci,id=vol1,drive=vol1,bus=vport1",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	if p, err := ParseVolume("path=/a,slot=2,format=qcow2,serial=x"); err != nil || p != (Volume{Path: "/a", Slot: 2, Format: "qcow2", Serial: "x"}) {
		t.Errorf("ParseVolume: %+v %v", p, err)
	}
	if _, err := ParseVolume("path=/a"); err == nil {
		t.Error("ParseVolume without slot: no error")
	}
	if VolumeSlot("vol12") != 12 || VolumeSlot("vport1") != -1 || VolumeSlot("disk0") != -1 {
		t.Error("VolumeSlot")
	}
}

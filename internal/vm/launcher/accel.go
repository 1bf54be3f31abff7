package launcher

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Accel is the accelerator a VM runs with and why.
type Accel struct {
	Name   string // AccelKVM or AccelTCG
	Reason string
}

// KVM ioctls (linux/kvm.h): _IO(KVMIO=0xAE, 0x00) and _IO(KVMIO, 0x01).
const (
	kvmGetAPIVersion = 0xAE00
	kvmCreateVM      = 0xAE01
	kvmAPIVersion    = 12
)

// DetectAccel finds out whether KVM works by trying it: open the device,
// check the API version and create (and drop) a VM. A /dev/kvm that
// exists is not enough: nested or VMX-less hosts have one that fails.
// Anything short of a created VM means TCG, with the reason.
func DetectAccel(device string) Accel {
	f, err := os.OpenFile(device, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return Accel{AccelTCG, fmt.Sprintf("KVM unusable: %v", err)}
	}
	defer f.Close()
	fd := f.Fd()
	v, err := ioctl(fd, kvmGetAPIVersion)
	if err != nil {
		return Accel{AccelTCG, fmt.Sprintf("KVM unusable: KVM_GET_API_VERSION on %s: %v", device, err)}
	}
	if v != kvmAPIVersion {
		return Accel{AccelTCG, fmt.Sprintf("KVM unusable: %s has API version %d, want %d", device, v, kvmAPIVersion)}
	}
	vm, err := ioctl(fd, kvmCreateVM)
	if err != nil {
		return Accel{AccelTCG, fmt.Sprintf("KVM unusable: KVM_CREATE_VM on %s: %v", device, err)}
	}
	unix.Close(int(vm))
	return Accel{AccelKVM, fmt.Sprintf("KVM_CREATE_VM succeeded on %s", device)}
}

func ioctl(fd uintptr, req uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, req, 0)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// ChooseAccel applies a request ("auto", "kvm" or "tcg") to what the host
// offers: "kvm" fails when KVM does not work; "tcg" always uses TCG.
func ChooseAccel(request string, detected func() Accel) (Accel, error) {
	switch request {
	case "", "auto":
		return detected(), nil
	case AccelTCG:
		return Accel{AccelTCG, "TCG requested"}, nil
	case AccelKVM:
		a := detected()
		if a.Name != AccelKVM {
			return a, fmt.Errorf("KVM requested but %s", a.Reason)
		}
		return a, nil
	}
	return Accel{}, fmt.Errorf("accelerator %q: want auto, kvm or tcg", request)
}

// Command volume measures Strata's block Volumes on one node: sequential
// and random IO inside a test VM (QEMU under TCG where /dev/kvm does not
// work) against the same IO on a host file beside the Volume's, the time
// to hot-plug and unplug a Volume into a running VM, and the time from
// creating a Volume to it being Available. It prints figures (the storage
// issue sets no targets) and never fails on them.
//
//	go run ./bench/volume -bin bin/strata [-io-mib 128] [-io-dur 5s] [-attach-rounds 5] [-create-rounds 5] [-keep]   # as root
//
// The server is started with its node agent through bench/benchenv, as
// bench/vm does (the host-wide lock keeps it from running beside an e2e
// test's node). The bench builds guestio (./bench/volume/guestio, a small
// static Go program: O_DIRECT, page-aligned buffers, one request in
// flight) and puts it into the e2e tests' test VM image as /bin/guestio
// (testimage.Options.Extra); it runs the very same binary on the host.
//
//  1. Volume create -> Available: -create-rounds 1 GiB raw Volumes, one
//     after another, each from just before the create call to the first
//     Get (every 50 ms) that shows phase Available; then delete -> gone.
//  2. IO. A Volume of -volume-mib (raw, the node's sparse file) is made;
//     guestio runs on the host on a new sparse file of the same size in the
//     Volume file's directory (the same filesystem), then in a VM (1 vCPU,
//     -memory-mib) that has the Volume attached at create: its user-data
//     finds the disk whose serial is the Volume's name and runs guestio on
//     it; the guestio line comes from the launcher's log (the guest's
//     serial console). Printed as a table: figure | in VM | host file |
//     VM/host.
//  3. Attach latency. The same user-data then lists the guest's virtio
//     disks (vdX=serial, with the guest's uptime) on the console whenever
//     they change, polling every 0.1 s. -attach-rounds times, a second
//     Volume is added to the VM's spec.volumes (JSON merge patch) and later
//     removed again; from just before each patch the bench times the VM's
//     status.volumes (a Get every 50 ms) showing it Attached / without it,
//     and the guest's console line with / without it (the kubelet's
//     timestamp of the log line). p50 and max of each.
//
// Everything the bench creates is deleted at the end, also on error or
// Ctrl-C: the VM (before the server stops, or the controller would
// recreate its pod), the Volumes, the Flavor, then the server's data dir.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/bench/benchenv"
	"github.com/strata-cloud/strata/internal/testenv"
	"github.com/strata-cloud/strata/internal/vm/testimage"
)

const (
	namespace  = "bench-volume"
	imageName  = "bench-volume"
	flavorName = "bench-volume"
	vmName     = "iovm"
	// The Volumes' names are their disks' serials in the guest (at most
	// 20 bytes).
	ioVolume     = "io"
	hotVolume    = "hot"
	createPrefix = "create-"
	hotMiB       = 64
	createSize   = "1Gi"

	// The VM controller's launcher pod (internal/controller/virtualmachine,
	// not linked here).
	launcherContainer = "compute"
	guestioPath       = "bin/guestio" // in the initramfs
	poll              = 50 * time.Millisecond
)

var (
	vmGVR     = computev1alpha1.GroupVersion.WithResource("virtualmachines")
	flavorGVR = computev1alpha1.GroupVersion.WithResource("flavors")
	volumeGVR = storagev1alpha1.GroupVersion.WithResource("volumes")
)

func launcherPod(vm string) string { return "vm-" + vm }

type config struct {
	bin                       string
	ioMiB, volumeMiB          int64
	ioDur                     time.Duration
	memoryMiB                 int64
	attachRounds, createRound int
	bootTimeout               time.Duration
	keep                      bool
	lockWait                  time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "bin/strata", "strata binary to run")
	flag.Int64Var(&cfg.ioMiB, "io-mib", 128, "MiB written and read sequentially, and the random requests' span")
	flag.Int64Var(&cfg.volumeMiB, "volume-mib", 256, "size of the IO Volume and of the host's file")
	flag.DurationVar(&cfg.ioDur, "io-dur", 5*time.Second, "duration of each random IO phase")
	flag.Int64Var(&cfg.memoryMiB, "memory-mib", 192, "guest RAM of the VM (MiB)")
	flag.IntVar(&cfg.attachRounds, "attach-rounds", 5, "hot-plug/unplug rounds (0: skip)")
	flag.IntVar(&cfg.createRound, "create-rounds", 5, "1 GiB Volumes created one after another (0: skip)")
	flag.DurationVar(&cfg.bootTimeout, "boot-timeout", 5*time.Minute, "how long the VM may take to boot and print guestio's figures")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary data dir")
	flag.DurationVar(&cfg.lockWait, "lock-wait", 30*time.Minute, "how long to wait for another node agent (an e2e test) on this host to finish")
	flag.Parse()
	if cfg.ioMiB < 1 || cfg.volumeMiB < cfg.ioMiB || cfg.ioDur <= 0 || cfg.memoryMiB < 96 || cfg.attachRounds < 0 || cfg.createRound < 0 {
		fmt.Fprintln(os.Stderr, "volume bench: want 1 <= -io-mib <= -volume-mib, -io-dur > 0, -memory-mib >= 96, rounds >= 0")
		os.Exit(2)
	}
	benchenv.Main("volume", func(ctx context.Context) error { return run(ctx, cfg) })
}

type bench struct {
	node    *benchenv.Node
	dyn     dynamic.Interface
	cfg     config
	guestio string // the built tool, on the host
}

func run(ctx context.Context, cfg config) (err error) {
	node, err := benchenv.StartNode(benchenv.NodeOptions{Bench: "volume", Bin: cfg.bin, Keep: cfg.keep, LockWait: cfg.lockWait})
	if err != nil {
		return err
	}
	defer func() { node.Close(err) }()
	dyn, err := dynamic.NewForConfig(node.REST)
	if err != nil {
		return err
	}
	b := &bench{node: node, dyn: dyn, cfg: cfg}
	// The VM goes before the Volumes (an attached one cannot be deleted)
	// and both before the server stops: its cleanup deletes pods, which
	// the VM controller would recreate, and a Volume's file is removed by
	// the node agent. With a context of its own, so that it runs after
	// Ctrl-C too.
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if derr := b.deleteVM(cctx); derr != nil {
			fmt.Fprintf(os.Stderr, "deleting the VM: %v\n", derr)
		}
		if derr := b.deleteVolumes(cctx); derr != nil {
			fmt.Fprintf(os.Stderr, "deleting the Volumes: %v\n", derr)
		}
		dyn.Resource(flavorGVR).Delete(cctx, flavorName, metav1.DeleteOptions{})
	}()
	defer func() { fmt.Printf("load average now: %s\n\n", benchenv.LoadAverage()) }()
	// Ends the VM's log follower before the cleanup above.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	if err := b.prepare(ctx); err != nil {
		return node.CheckRunning(err)
	}
	if cfg.createRound > 0 {
		if err := b.createRounds(ctx); err != nil {
			return node.CheckRunning(err)
		}
	}
	con, err := b.measureIO(ctx)
	if err != nil {
		return node.CheckRunning(err)
	}
	if cfg.attachRounds > 0 {
		if err := b.attachRounds(ctx, con); err != nil {
			return node.CheckRunning(err)
		}
	}
	return nil
}

// prepare builds guestio, creates the namespace, builds and uploads the
// test VM image with guestio in it and creates the Flavor.
func (b *bench) prepare(ctx context.Context) error {
	b.guestio = filepath.Join(b.node.Dir, "guestio")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.CommandContext(ctx, gobin, "build", "-ldflags", "-s -w", "-o", b.guestio, "github.com/strata-cloud/strata/bench/volume/guestio")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building guestio (run the bench from the repository): %v: %s", err, out)
	}
	tool, err := os.ReadFile(b.guestio)
	if err != nil {
		return err
	}
	if err := b.node.CreateNamespace(ctx, namespace); err != nil {
		return err
	}
	opts := testimage.Options{Extra: map[string][]byte{guestioPath: tool}}
	if _, err := benchenv.UploadTestVMImageWith(ctx, b.dyn, b.node.Bin, b.node.DataDir(), filepath.Join(b.node.Dir, "vmimage"), namespace, imageName, opts); err != nil {
		return err
	}
	fl := &computev1alpha1.Flavor{
		TypeMeta:   metav1.TypeMeta{APIVersion: computev1alpha1.GroupVersion.String(), Kind: "Flavor"},
		ObjectMeta: metav1.ObjectMeta{Name: flavorName},
		Spec:       computev1alpha1.FlavorSpec{VCPUs: 1, RAMMiB: b.cfg.memoryMiB},
	}
	_, err = b.dyn.Resource(flavorGVR).Create(ctx, toUnstructured(fl), metav1.CreateOptions{})
	return err
}

func toUnstructured(obj any) *unstructured.Unstructured {
	m, err := kruntime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		panic(err) // only this package's typed objects come here
	}
	return &unstructured.Unstructured{Object: m}
}

// createVolume creates a raw Block Volume of size.
func (b *bench) createVolume(ctx context.Context, name, size string) error {
	v := &storagev1alpha1.Volume{
		TypeMeta:   metav1.TypeMeta{APIVersion: storagev1alpha1.GroupVersion.String(), Kind: "Volume"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: storagev1alpha1.VolumeSpec{
			Size:       resource.MustParse(size),
			VolumeMode: storagev1alpha1.VolumeBlock,
			Format:     storagev1alpha1.FormatRaw,
		},
	}
	if _, err := b.dyn.Resource(volumeGVR).Namespace(namespace).Create(ctx, toUnstructured(v), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Volume %s: %w", name, err)
	}
	return nil
}

// getVolume returns the Volume, nil if it is gone.
func (b *bench) getVolume(ctx context.Context, name string) (*storagev1alpha1.Volume, error) {
	u, err := b.dyn.Resource(volumeGVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var v storagev1alpha1.Volume
	if err := kruntime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// waitVolume polls the Volume every 50 ms until done says so, and returns
// when this client saw it; phase Error ends the wait.
func (b *bench) waitVolume(ctx context.Context, name string, timeout time.Duration, done func(*storagev1alpha1.Volume) bool) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	var last *storagev1alpha1.Volume
	for {
		v, err := b.getVolume(ctx, name)
		if err != nil {
			return time.Time{}, err
		}
		if done(v) {
			return time.Now(), nil
		}
		last = v
		if v != nil && v.Status.Phase == storagev1alpha1.VolumeError {
			return time.Time{}, fmt.Errorf("Volume %s: phase Error: %s", name, v.Status.Message)
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("Volume %s not there after %s: %s", name, timeout, describeVolume(last))
		}
		if err := benchenv.Sleep(ctx, poll); err != nil {
			return time.Time{}, err
		}
	}
}

func describeVolume(v *storagev1alpha1.Volume) string {
	if v == nil {
		return "gone"
	}
	return fmt.Sprintf("phase %q, message %q, attachments %v", v.Status.Phase, v.Status.Message, v.Status.Attachments)
}

func available(v *storagev1alpha1.Volume) bool {
	return v != nil && v.Status.Phase == storagev1alpha1.VolumeAvailable
}

func gone(v *storagev1alpha1.Volume) bool { return v == nil }

// createVM creates the VM with the IO Volume attached and the user-data.
func (b *bench) createVM(ctx context.Context, userData string) error {
	vm := &computev1alpha1.VirtualMachine{
		TypeMeta:   metav1.TypeMeta{APIVersion: computev1alpha1.GroupVersion.String(), Kind: "VirtualMachine"},
		ObjectMeta: metav1.ObjectMeta{Name: vmName, Namespace: namespace},
		Spec: computev1alpha1.VirtualMachineSpec{
			Flavor:   flavorName,
			Image:    imageName,
			Volumes:  []computev1alpha1.VirtualMachineVolume{{Volume: ioVolume}},
			UserData: userData,
		},
	}
	if _, err := b.dyn.Resource(vmGVR).Namespace(namespace).Create(ctx, toUnstructured(vm), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create VM %s: %w", vmName, err)
	}
	return nil
}

// getVM returns the VM.
func (b *bench) getVM(ctx context.Context) (*computev1alpha1.VirtualMachine, error) {
	u, err := b.dyn.Resource(vmGVR).Namespace(namespace).Get(ctx, vmName, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var vm computev1alpha1.VirtualMachine
	if err := kruntime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &vm); err != nil {
		return nil, err
	}
	return &vm, nil
}

// patchVolumes sets the VM's spec.volumes with a JSON merge patch.
func (b *bench) patchVolumes(ctx context.Context, volumes ...string) error {
	list := make([]string, len(volumes))
	for i, v := range volumes {
		list[i] = fmt.Sprintf(`{"volume":%q}`, v)
	}
	patch := `{"spec":{"volumes":[` + strings.Join(list, ",") + `]}}`
	if _, err := b.dyn.Resource(vmGVR).Namespace(namespace).Patch(ctx, vmName, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patch VM %s %s: %w", vmName, patch, err)
	}
	return nil
}

// deleteVM deletes the VM and waits until it, its launcher pod and the
// node's QEMU processes are gone.
func (b *bench) deleteVM(ctx context.Context) error {
	vms := b.dyn.Resource(vmGVR).Namespace(namespace)
	if err := vms.Delete(ctx, vmName, metav1.DeleteOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("delete VM: %w", err)
	}
	began := time.Now()
	deadline := began.Add(3 * time.Minute)
	for {
		left := ""
		if _, err := vms.Get(ctx, vmName, metav1.GetOptions{}); err == nil {
			left = "the VM"
		} else if !apierrors.IsNotFound(err) {
			return err
		} else if _, err := b.node.Client.CoreV1().Pods(namespace).Get(ctx, launcherPod(vmName), metav1.GetOptions{}); err == nil {
			left = "its launcher pod"
		} else if !apierrors.IsNotFound(err) {
			return err
		} else if n := len(qemuProcesses(b.node.DataDir())); n > 0 {
			left = fmt.Sprintf("%d QEMU processes", n)
		}
		if left == "" {
			fmt.Printf("  VM deleted, its pod and QEMU gone in %.1f s\n", time.Since(began).Seconds())
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still there 3 minutes after deleting the VM", left)
		}
		if err := benchenv.Sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// deleteVolumes deletes the bench's Volumes and waits until they are gone
// (the node agent removes their files first).
func (b *bench) deleteVolumes(ctx context.Context) error {
	vols := b.dyn.Resource(volumeGVR).Namespace(namespace)
	if err := vols.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		l, err := vols.List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(l.Items) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var names []string
			for _, it := range l.Items {
				phase, _, _ := unstructured.NestedString(it.Object, "status", "phase")
				names = append(names, it.GetName()+" ("+phase+")")
			}
			return errors.New("Volumes still there 2 minutes after deleting them: " + strings.Join(names, ", "))
		}
		if err := benchenv.Sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// qemuProcesses are the QEMU processes of the node on dataDir.
func qemuProcesses(dataDir string) []int {
	var out []int
	for _, pid := range testenv.NodeProcesses(dataDir) {
		name := ""
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
			name = filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
		} else if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
			name = strings.TrimSpace(string(data))
		}
		if strings.HasPrefix(name, "qemu-system") {
			out = append(out, pid)
		}
	}
	return out
}

// qemuOpens says how the node's QEMU has file open: with O_DIRECT or
// through the host's page cache (the flags in /proc/PID/fdinfo of the
// descriptors that are file; matched by device and inode, as the launcher
// sees the file under another path).
func qemuOpens(dataDir, file string) string {
	want, err := os.Stat(file)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	var modes []string
	for _, pid := range qemuProcesses(dataDir) {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			st, err := os.Stat(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if err != nil || !os.SameFile(st, want) {
				continue
			}
			info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(info), "\n") {
				if v, ok := strings.CutPrefix(l, "flags:"); ok {
					flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
					switch {
					case err != nil:
						modes = append(modes, "flags "+strings.TrimSpace(v))
					case flags&syscall.O_DIRECT != 0:
						modes = append(modes, "O_DIRECT")
					default:
						modes = append(modes, "without O_DIRECT (the host's page cache)")
					}
				}
			}
		}
	}
	if len(modes) == 0 {
		return "unknown (no QEMU descriptor of the file found)"
	}
	return strings.Join(slices.Compact(modes), ", ")
}

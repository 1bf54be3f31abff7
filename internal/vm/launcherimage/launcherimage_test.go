package launcherimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-cloud/strata/internal/storage/ociimage"
	"github.com/strata-cloud/strata/internal/vm/launcher"
	"github.com/strata-cloud/strata/internal/vm/testimage"
)

// launcherEnv makes the test binary act as strata-launcher, so the image
// can hold a real launcher without building one.
const launcherEnv = "STRATA_TEST_RUN_LAUNCHER"

func TestMain(m *testing.M) {
	if os.Getenv(launcherEnv) == "1" {
		os.Exit(launcher.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func requireQEMU(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("needs linux/amd64")
	}
	if err := Available(Options{}); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (hack/install-deps.sh installs it)", err)
		}
		t.Skip(err)
	}
}

// wantInImage are paths every launcher image must hold (Debian 12 x86-64).
func wantInImage() []string {
	return []string{
		"usr/bin/qemu-system-x86_64", "usr/bin/qemu-img", "usr/bin/strata-launcher",
		"lib64", "usr/lib64/ld-linux-x86-64.so.2", // the loader named by PT_INTERP, through the /lib64 symlink
		"lib", "usr/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libglib-2.0.so.0",
		"usr/lib/x86_64-linux-gnu/libpixman-1.so.0", "usr/lib/x86_64-linux-gnu/libgcc_s.so.1",
		"usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so",
		"usr/share/seabios/bios-256k.bin", "usr/share/qemu/linuxboot_dma.bin",
		"usr/share/qemu/kvmvapic.bin", "usr/lib/ipxe/qemu/efi-virtio.rom",
	}
}

func TestWriteArchive(t *testing.T) {
	requireQEMU(t)
	launcherExe := []byte("\x7fELF not really a launcher")
	start := time.Now()
	archive := filepath.Join(t.TempDir(), "launcher.tar")
	ref, err := WriteArchive(archive, Options{Launcher: launcherExe})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if !strings.HasPrefix(ref, Repository+":") || len(ref) != len(Repository)+1+12 {
		t.Errorf("ref %q", ref)
	}

	a, err := ociimage.OpenArchive(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	names := map[string]bool{}
	for _, ai := range a.Images {
		names[ai.Ref.String()] = true
	}
	if !names[ref] || !names[CurrentRef] || len(a.Images) != 2 {
		t.Fatalf("archive names %v, want %s and %s", names, ref, CurrentRef)
	}
	img := a.Images[0].Image
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != LauncherPath || cf.Architecture != "amd64" {
		t.Errorf("config %+v", cf.Config)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries := map[string]*tar.Header{}
	var unpacked int64
	tr := tar.NewReader(rc)
	var launcherData []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries[strings.TrimSuffix(h.Name, "/")] = h
		unpacked += h.Size
		if h.Name == strings.TrimPrefix(LauncherPath, "/") {
			launcherData, _ = io.ReadAll(tr)
		}
	}
	for _, p := range wantInImage() {
		if entries[p] == nil {
			t.Errorf("image lacks %s", p)
		}
	}
	if h := entries["lib64"]; h != nil && h.Typeflag != tar.TypeSymlink {
		t.Errorf("/lib64 is not a symlink (type %c)", h.Typeflag)
	}
	if h := entries["usr/bin/qemu-system-x86_64"]; h != nil && h.Mode&0o111 == 0 {
		t.Errorf("qemu is not executable: %o", h.Mode)
	}
	if !bytes.Equal(launcherData, launcherExe) {
		t.Error("the launcher in the image is not the one given")
	}
	st, _ := os.Stat(archive)
	t.Logf("launcher image %s: %d entries, %.1f MiB unpacked, archive %.1f MiB, built in %v",
		ref, len(entries), float64(unpacked)/(1<<20), float64(st.Size())/(1<<20), elapsed.Round(time.Millisecond))

	// The same inputs give the same image.
	again, err := Build(Options{Launcher: launcherExe})
	if err != nil {
		t.Fatal(err)
	}
	if again.Ref != ref {
		t.Errorf("rebuilt image is %s, first %s", again.Ref, ref)
	}
}

func TestFilesErrors(t *testing.T) {
	if _, err := Files(Options{}); err == nil {
		t.Error("no launcher: no error")
	}
	if _, err := Files(Options{Launcher: []byte("x"), QEMU: "/nonexistent/qemu"}); err == nil || !strings.Contains(err.Error(), "apt-get install") {
		t.Errorf("missing QEMU: %v", err)
	}
	requireQEMU(t)
	_, err := Files(Options{Launcher: []byte("x"), Firmware: []string{"no-such-rom.bin"}})
	if err == nil || !strings.Contains(err.Error(), "no-such-rom.bin") {
		t.Errorf("missing firmware: %v", err)
	}
	_, err = Files(Options{Launcher: []byte("x"), LibraryDirs: []string{t.TempDir()}})
	if err == nil || !strings.Contains(err.Error(), "library") {
		t.Errorf("no library dirs: %v", err)
	}
}

// extract unpacks the image's layer into dir: directories, files and
// symlinks, as a container runtime would.
func extract(t *testing.T, files []ociimage.File, dir string) {
	t.Helper()
	img, err := ociimage.FromFiles(files, ociimage.ConfigOptions{})
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, os.FileMode(h.Mode)&os.ModePerm)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, target)
		case tar.TypeReg:
			var b []byte
			if b, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(target, b, os.FileMode(h.Mode)&os.ModePerm)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestImageBootsVMInChroot unpacks the image and runs the launcher in it
// with chroot (root only): the image's libraries, loader, module and
// firmware are enough for QEMU to boot the test VM, with nothing from the
// host but the kernel's device nodes a container runtime also provides.
func TestImageBootsVMInChroot(t *testing.T) {
	requireQEMU(t)
	if os.Getuid() != 0 {
		t.Skip("needs root for chroot")
	}
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	if _, err := testimage.FindKernel(); err != nil {
		t.Skip(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	files, err := Files(Options{Launcher: self})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	extract(t, files, root)
	vmDir := filepath.Join(root, "vm")
	os.MkdirAll(vmDir, 0o755)
	if _, err := testimage.Build(vmDir, testimage.Options{}); err != nil {
		t.Fatal(err)
	}
	// The device nodes runc creates in every container.
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	for name, dev := range map[string][2]uint32{"null": {1, 3}, "zero": {1, 5}, "random": {1, 8}, "urandom": {1, 9}} {
		if err := unix.Mknod(filepath.Join(root, "dev", name), unix.S_IFCHR|0o666, int(unix.Mkdev(dev[0], dev[1]))); err != nil {
			t.Skipf("cannot make device nodes here: %v", err)
		}
	}

	cmd := exec.Command("chroot", root, LauncherPath,
		"--name", "chroot-vm", "--memory", "128", "--accel", "tcg",
		"--kernel", "/vm/vmlinuz", "--initrd", "/vm/initrd.img",
		"--append", testimage.DefaultAppend+" "+testimage.PowerOffArg,
		"--run-dir", "/run/vm", "--qemu", "/usr/bin/qemu-system-x86_64", "--qemu-img", "/usr/bin/qemu-img")
	cmd.Env = []string{launcherEnv + "=1", "PATH=/usr/bin:/bin"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the VM in the chroot did not power off in 90 s:\n%s", out.String())
	}
	if err != nil || !strings.Contains(out.String(), testimage.Marker) {
		t.Fatalf("launcher in the image: %v\n%s", err, out.String())
	}
	t.Logf("VM booted and powered off from inside the image in %v", time.Since(start).Round(time.Millisecond))
}

// TestImageRunsInRunc runs the launcher image as a container with runc
// (root only; runc is a node dependency), as a launcher pod would: the
// launcher is PID 1, boots the test VM, and SIGTERM to the container —
// what the kubelet sends when the pod terminates — powers the guest off
// gracefully and ends the container with status 0.
func TestImageRunsInRunc(t *testing.T) {
	requireQEMU(t)
	if os.Getuid() != 0 {
		t.Skip("needs root for runc")
	}
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs runc (hack/install-deps.sh installs it)")
		}
		t.Skip("needs runc")
	}
	if _, err := testimage.FindKernel(); err != nil {
		t.Skip(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	files, err := Files(Options{Launcher: self})
	if err != nil {
		t.Fatal(err)
	}
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	os.MkdirAll(rootfs, 0o755)
	extract(t, files, rootfs)
	if _, err := testimage.Build(filepath.Join(rootfs, "tmp"), testimage.Options{}); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(bundle, "state")
	runc := func(args ...string) *exec.Cmd {
		return exec.Command("runc", append([]string{"--root", state}, args...)...)
	}
	if out, err := runc("spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v: %s", err, out)
	}
	cfgPath := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	proc := cfg["process"].(map[string]any)
	proc["terminal"] = false
	proc["env"] = []string{launcherEnv + "=1", "PATH=/usr/bin:/bin"}
	proc["args"] = []string{LauncherPath,
		"--name", "runc-vm", "--memory", "128",
		"--kernel", "/tmp/vmlinuz", "--initrd", "/tmp/initrd.img", "--append", testimage.DefaultAppend,
		"--run-dir", "/run/vm", "--grace-period", "20s"}
	cfg["root"].(map[string]any)["readonly"] = false
	if b, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(cfgPath, b, 0o644)

	id := fmt.Sprintf("strata-launcher-test-%d", os.Getpid())
	cmd := runc("run", "--bundle", bundle, id)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	done := make(chan struct{}) // closed when runc run has returned
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			runc("kill", id, "KILL").Run()
			<-done
		}
		runc("delete", "--force", id).Run()
	})
	for !strings.Contains(out.String(), testimage.Marker) {
		select {
		case <-done:
			t.Fatalf("container ended before the marker: %v\n%s", waitErr, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(start) > 90*time.Second {
			t.Fatalf("no marker in 90 s:\n%s", out.String())
		}
	}
	t.Logf("VM in a runc container: marker after %v", time.Since(start).Round(time.Millisecond))
	if o, err := runc("kill", id, "TERM").CombinedOutput(); err != nil {
		t.Fatalf("runc kill: %v: %s", err, o)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("container did not stop 60 s after SIGTERM:\n%s", out.String())
	}
	if waitErr != nil {
		t.Errorf("container ended with %v", waitErr)
	}
	if !strings.Contains(out.String(), "power button pressed") || !strings.Contains(out.String(), "guest powered off") {
		t.Errorf("no graceful power off in the output:\n%s", out.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the writer goroutines exec starts.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

package launcher

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/vm/qmp"
	"github.com/strata-cloud/strata/internal/vm/testimage"
)

// launcherEnv makes the test binary act as strata-launcher (see TestMain),
// so the integration test runs the real command as a process, signals and
// all, without building another binary.
const launcherEnv = "STRATA_TEST_RUN_LAUNCHER"

func TestMain(m *testing.M) {
	if os.Getenv(launcherEnv) == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// requireVMTools skips (or, under CI=true, fails) when the host cannot
// run the integration test.
func requireVMTools(t *testing.T) {
	t.Helper()
	missing := func(what string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("VM integration test needs %s (hack/install-deps.sh installs it)", what)
		}
		t.Skipf("needs %s", what)
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("needs linux/amd64")
	}
	if testing.Short() {
		t.Skip("boots VMs; skipped with -short")
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(tool + " (Debian: qemu-system-x86, qemu-utils)")
		}
	}
	if _, err := testimage.FindKernel(); err != nil {
		missing("a kernel in /boot (Debian: linux-image-cloud-amd64)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		missing("/bin/busybox (Debian: busybox-static)")
	}
}

// vmProcess is a launcher running as a child process.
type vmProcess struct {
	cmd    *exec.Cmd
	runDir string
	start  time.Time

	mu    sync.Mutex
	lines []string
	seen  map[string]time.Time // when a watched string first appeared
	done  chan struct{}        // stdout ended
}

func startLauncher(t *testing.T, spec Spec, extra ...string) *vmProcess {
	t.Helper()
	return startLauncherWithStdin(t, spec, nil, extra...)
}

// startLauncherWithStdin starts the launcher with stdin as its standard
// input (the pod's console input); nil is /dev/null.
func startLauncherWithStdin(t *testing.T, spec Spec, stdin io.Reader, extra ...string) *vmProcess {
	t.Helper()
	dir := t.TempDir()
	specFile := filepath.Join(dir, "spec.json")
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(specFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p := &vmProcess{runDir: filepath.Join(dir, "run"), seen: map[string]time.Time{}, done: make(chan struct{})}
	args := append([]string{"--spec", specFile, "--run-dir", p.runDir}, extra...)
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), launcherEnv+"=1")
	p.cmd.Stdin = stdin
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout // one stream, as in a container log
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("launcher output:\n%s", p.output())
		}
	})
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *vmProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// waitFor waits until a line contains s and returns when it was first seen
// relative to the start.
func (p *vmProcess) waitFor(t *testing.T, s string, timeout time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		for _, l := range p.lines {
			if strings.Contains(l, s) {
				if _, ok := p.seen[s]; !ok {
					p.seen[s] = time.Now()
				}
				at := p.seen[s].Sub(p.start)
				p.mu.Unlock()
				return at
			}
		}
		p.mu.Unlock()
		select {
		case <-p.done:
			t.Fatalf("launcher output ended without %q", s)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %s", s, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wait waits for the launcher to exit and returns its exit code.
func (p *vmProcess) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	exited := make(chan error, 1)
	go func() { <-p.done; exited <- p.cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(timeout):
		t.Fatalf("launcher did not exit within %s", timeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *vmProcess) status(t *testing.T) Status {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.runDir, StatusFile))
	if err != nil {
		t.Fatal(err)
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLauncherBootsAndStops boots the test image under the launcher (TCG
// on this kind of host), finds its console on the launcher's stdout,
// checks QEMU over QMP, and stops it: gracefully by ACPI, forced after the
// grace period for a guest that ignores the button, and by the guest's
// own power off.
func TestLauncherBootsAndStops(t *testing.T) {
	requireVMTools(t)
	dir := t.TempDir()
	img, err := testimage.Build(dir, testimage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base.raw")
	if err := testimage.WriteRawDisk(base, 16<<20); err != nil {
		t.Fatal(err)
	}
	spec := func(name, appendArgs string) Spec {
		return Spec{
			Name: name, VCPUs: 1, MemoryMiB: 192,
			Kernel: img.Kernel, Initrd: img.Initrd, Append: img.Append + appendArgs,
		}
	}
	const bootTimeout = 90 * time.Second // TCG on 2 busy cores

	t.Run("graceful", func(t *testing.T) {
		s := spec("graceful-vm", "")
		s.Disks = []Disk{{Path: filepath.Join(dir, "root.qcow2"), BackingFile: base, SizeBytes: 32 << 20}}
		s.CloudInit = &CloudInit{InstanceID: "i-graceful", Hostname: "graceful-host", UserData: "#!/bin/sh\necho STRATA-USERDATA-RAN\n"}
		p := startLauncher(t, s, "--grace-period", "30s")

		accelAt := p.waitFor(t, "accelerator", 30*time.Second)
		qemuAt := p.waitFor(t, "QEMU started", 30*time.Second)
		bootAt := p.waitFor(t, testimage.Marker, bootTimeout)
		t.Logf("boot: launcher start -> accelerator chosen %v, QEMU started %v, console marker %v (guest boot %v)",
			accelAt.Round(time.Millisecond), qemuAt.Round(time.Millisecond), bootAt.Round(time.Millisecond), (bootAt - qemuAt).Round(time.Millisecond))

		out := p.output()
		for _, want := range []string{
			"created overlay " + s.Disks[0].Path,
			"disk /dev/vda carries the test label", // the overlay reads through to its base
			"cloud-init seed on /dev/vdb",
			"meta-data: instance-id: i-graceful",
			"STRATA-USERDATA-RAN",
			"hostname graceful-host",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("console lacks %q", want)
			}
		}
		if f, err := DetectFormat(s.Disks[0].Path); err != nil || f != FormatQCOW2 {
			t.Errorf("overlay format %q, %v", f, err)
		}

		st := p.status(t)
		if st.Phase != PhaseRunning || st.Accel == "" || st.AccelReason == "" || st.QEMUPID == 0 {
			t.Errorf("status while running: %+v", st)
		}
		t.Logf("accelerator %s: %s", st.Accel, st.AccelReason)

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		mon, err := qmp.Dial(ctx, filepath.Join(p.runDir, AdminQMPSocketName))
		if err != nil {
			t.Fatal(err)
		}
		qs, err := mon.QueryStatus(ctx)
		if err != nil || !qs.Running || qs.Status != "running" {
			t.Errorf("query-status = %+v, %v", qs, err)
		}
		if name, err := mon.QueryName(ctx); err != nil || name != s.Name {
			t.Errorf("query-name = %q, %v", name, err)
		}
		mon.Close()

		stopAt := time.Now()
		p.cmd.Process.Signal(syscall.SIGTERM)
		code := p.wait(t, 60*time.Second)
		t.Logf("graceful stop: SIGTERM -> launcher exit %v", time.Since(stopAt).Round(time.Millisecond))
		if code != ExitOK {
			t.Errorf("exit code %d, want %d", code, ExitOK)
		}
		for _, want := range []string{"power button pressed", "SHUTDOWN (guest=true", "guest powered off"} {
			if !strings.Contains(p.output(), want) {
				t.Errorf("output lacks %q", want)
			}
		}
		if st := p.status(t); st.Phase != PhaseStopped || st.ExitCode == nil || *st.ExitCode != ExitOK {
			t.Errorf("final status %+v", st)
		}
	})

	t.Run("forced after grace period", func(t *testing.T) {
		p := startLauncher(t, spec("stubborn-vm", " "+testimage.IgnorePowerButtonArg), "--grace-period", "2s")
		p.waitFor(t, testimage.Marker, bootTimeout)
		stopAt := time.Now()
		p.cmd.Process.Signal(syscall.SIGTERM)
		code := p.wait(t, 60*time.Second)
		t.Logf("forced stop: SIGTERM -> launcher exit %v (grace 2s)", time.Since(stopAt).Round(time.Millisecond))
		if code != ExitForced {
			t.Errorf("exit code %d, want %d", code, ExitForced)
		}
		if !strings.Contains(p.output(), "did not power off within 2s") {
			t.Error("output does not say the grace period ran out")
		}
		if st := p.status(t); st.Phase != PhaseFailed || st.ExitCode == nil || *st.ExitCode != ExitForced {
			t.Errorf("final status %+v", st)
		}
	})

	t.Run("guest powers off", func(t *testing.T) {
		p := startLauncher(t, spec("short-vm", " "+testimage.PowerOffArg))
		p.waitFor(t, testimage.Marker, bootTimeout)
		code := p.wait(t, 60*time.Second)
		if code != ExitOK {
			t.Errorf("exit code %d, want %d", code, ExitOK)
		}
		if !strings.Contains(p.output(), "guest powered off") {
			t.Error("output does not say the guest powered off")
		}
	})

	t.Run("QEMU fails to start", func(t *testing.T) {
		s := spec("broken-vm", "")
		s.Kernel = filepath.Join(dir, "no-such-kernel")
		p := startLauncher(t, s)
		if code := p.wait(t, 60*time.Second); code != ExitQEMUFailed {
			t.Errorf("exit code %d, want %d", code, ExitQEMUFailed)
		}
		if !strings.Contains(p.output(), "no-such-kernel") {
			t.Error("QEMU's complaint is not in the output")
		}
	})
}

package ociimage

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestPauseExecutableArch(t *testing.T) {
	for _, arch := range []string{"arm64", "riscv64", ""} {
		if _, err := PauseExecutable(arch); err == nil || !strings.Contains(err.Error(), "only amd64") {
			t.Errorf("PauseExecutable(%q) = %v, want an unsupported-architecture error", arch, err)
		}
	}
	exe, err := PauseExecutable("amd64")
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(exe))
	if err != nil {
		t.Fatalf("not a valid ELF: %v", err)
	}
	if f.Type != elf.ET_EXEC || f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		t.Errorf("ELF %v %v %v", f.Type, f.Machine, f.Class)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("pause must be static")
		}
	}
}

// startPause writes the pause executable and starts it.
func startPause(t *testing.T, attr *syscall.SysProcAttr) *exec.Cmd {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("pause runs on linux/amd64 only, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	exe, err := PauseExecutable("amd64")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(p, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p)
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		t.Fatalf("exec pause: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// waitExit waits up to timeout for cmd and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd, timeout time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				t.Fatalf("pause killed by %v", ws.Signal())
			}
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(timeout):
		t.Fatalf("pause still running after %s", timeout)
		return -1
	}
}

// procState returns the state letter and parent of pid, from /proc.
func procState(pid int) (state string, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, err
	}
	// "pid (comm) S ppid ..."; comm may hold spaces, so cut at the last ')'.
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ppid, err = strconv.Atoi(fields[1])
	return fields[0], ppid, err
}

func TestPauseRunsUntilSignalled(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := startPause(t, nil)
			time.Sleep(200 * time.Millisecond)
			// A SIGCHLD without children: wait4 says ECHILD, pause goes on.
			if err := cmd.Process.Signal(syscall.SIGCHLD); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			state, _, err := procState(cmd.Process.Pid)
			if err != nil || state != "S" {
				t.Fatalf("pause state %q (%v), want S (sleeping)", state, err)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := waitExit(t, cmd, time.Second); code != 0 {
				t.Errorf("exit code %d, want 0", code)
			}
		})
	}
}

// TestPauseReapsOrphans runs pause as PID 1 of a new PID namespace, as in a
// pod sandbox, leaves an orphan in that namespace and checks that pause
// reaps it when it exits (no zombie stays behind).
func TestPauseReapsOrphans(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace")
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Skip("needs nsenter (util-linux)")
	}
	cmd := startPause(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID})
	pause := cmd.Process.Pid
	time.Sleep(100 * time.Millisecond)

	// The shell starts a sleep in the background and exits at once; the
	// sleep is re-parented to PID 1 of the namespace, which is pause. (The
	// sleep must not hold the output pipe, or we would wait for it.)
	out, err := exec.Command(nsenter, "-t", strconv.Itoa(pause), "-p", "--",
		"/bin/sh", "-c", "sleep 1 >/dev/null 2>&1 </dev/null & echo $!").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v: %s", err, out)
	}
	// $! is the PID inside the namespace; find the orphan by its parent.
	var orphan int
	deadline := time.Now().Add(2 * time.Second)
	for orphan == 0 && time.Now().Before(deadline) {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if _, ppid, err := procState(pid); err == nil && ppid == pause {
				orphan = pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if orphan == 0 {
		ps, _ := exec.Command("ps", "-eo", "pid,ppid,stat,comm").CombinedOutput()
		t.Fatalf("no orphan was re-parented to pause %d (nsenter said %s): %s", pause, out, ps)
	}
	// Once sleep exits, pause must reap it: /proc/<pid> disappears
	// instead of staying as a zombie.
	deadline = time.Now().Add(3 * time.Second)
	for {
		state, ppid, err := procState(orphan)
		if errors.Is(err, fs.ErrNotExist) || (err == nil && ppid != pause) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d still there, state %q: not reaped", orphan, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if state, _, err := procState(pause); err != nil || state != "S" {
		t.Fatalf("pause state %q (%v) after reaping, want S", state, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// layerFiles reads an image's flattened filesystem into name -> header.
func layerFiles(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n := strings.TrimSuffix(h.Name, "/")
		hdrs[n] = h
		data[n], _ = io.ReadAll(tr)
	}
	return hdrs, data
}

func TestPauseImage(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		if _, err := Pause(); err == nil {
			t.Fatal("Pause on a non-amd64 machine should fail")
		}
		return
	}
	img, err := Pause()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || cf.Config.User != "65535:65535" ||
		strings.Join(cf.Config.Entrypoint, " ") != "/pause" {
		t.Errorf("config %+v", cf)
	}
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	hdrs, data := layerFiles(t, img)
	h := hdrs["pause"]
	exe, _ := PauseExecutable("amd64")
	if h == nil || h.Mode&0o7777 != 0o755 || h.Uid != 0 || !bytes.Equal(data["pause"], exe) {
		t.Errorf("/pause entry %+v", h)
	}
	// Built the same way twice, it has the same digest on every node.
	again, _ := Pause()
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("pause image not reproducible: %s vs %s", d1, d2)
	}
	if _, err := name.NewTag(PauseRef); err != nil {
		t.Errorf("PauseRef: %v", err)
	}
}

func TestFromFiles(t *testing.T) {
	host := filepath.Join(t.TempDir(), "tool")
	os.WriteFile(host, []byte("#!/bin/sh\n"), 0o750)
	tests := []struct {
		name    string
		files   []File
		wantErr string
		check   map[string]string // entry -> "type mode [link|content]"
	}{
		{
			name: "files, dirs, links, parents",
			files: []File{
				{Path: "/usr/bin/tool", HostPath: host},
				{Path: "/etc/motd", Content: []byte("hi")},
				{Path: "/bin/t", Linkname: "../usr/bin/tool"},
				{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
				{Path: "/srv/data", Mode: 0o600, Content: []byte("x"), UID: 1000, GID: 1000},
			},
			check: map[string]string{
				"usr":          "dir 755",
				"usr/bin":      "dir 755",
				"usr/bin/tool": "file 750 #!/bin/sh\n",
				"etc/motd":     "file 644 hi",
				"bin/t":        "link 777 ../usr/bin/tool",
				"tmp":          "dir 1777",
				"srv/data":     "file 600 x",
			},
		},
		{name: "relative path", files: []File{{Path: "etc/x"}}, wantErr: "absolute"},
		{name: "unclean path", files: []File{{Path: "/etc/../x"}}, wantErr: "clean"},
		{name: "root", files: []File{{Path: "/"}}, wantErr: "clean"},
		{name: "duplicate", files: []File{{Path: "/a"}, {Path: "/a"}}, wantErr: "twice"},
		{name: "content and host path", files: []File{{Path: "/a", Content: []byte("x"), HostPath: host}}, wantErr: "only one"},
		{name: "file as parent", files: []File{{Path: "/a"}, {Path: "/a/b"}}, wantErr: "not a directory"},
		{name: "missing host file", files: []File{{Path: "/a", HostPath: "/nonexistent/file"}}, wantErr: "no such file"},
		{name: "symlink mode without target", files: []File{{Path: "/a", Mode: fs.ModeSymlink}}, wantErr: "Linkname"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := FromFiles(tt.files, ConfigOptions{Cmd: []string{"/bin/t"}, Env: []string{"A=b"}, WorkingDir: "/srv", Architecture: "arm64"})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			hdrs, data := layerFiles(t, img)
			for n, want := range tt.check {
				h := hdrs[n]
				if h == nil {
					t.Errorf("no entry %s (have %v)", n, hdrs)
					continue
				}
				kind, extra := "file", string(data[n])
				switch h.Typeflag {
				case tar.TypeDir:
					kind, extra = "dir", ""
				case tar.TypeSymlink:
					kind, extra = "link", h.Linkname
				}
				got := strings.TrimSpace(fmt.Sprintf("%s %o %s", kind, h.Mode, extra))
				if got != strings.TrimSpace(want) {
					t.Errorf("%s: %q, want %q", n, got, want)
				}
			}
			if h := hdrs["srv/data"]; h.Uid != 1000 || h.Gid != 1000 {
				t.Errorf("owner %d:%d", h.Uid, h.Gid)
			}
			cf, _ := img.ConfigFile()
			if cf.Architecture != "arm64" || cf.OS != "linux" || cf.Config.WorkingDir != "/srv" ||
				cf.Config.Cmd[0] != "/bin/t" || cf.Config.Env[0] != "A=b" {
				t.Errorf("config %+v", cf.Config)
			}
		})
	}
}

func TestWriteTarball(t *testing.T) {
	img, err := FromFiles([]File{{Path: "/hello", Content: []byte("world")}}, ConfigOptions{Cmd: []string{"/hello"}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "img.tar")
	if err := WriteTarball(p, "localhost/strata/test:v1", img); err != nil {
		t.Fatal(err)
	}
	if err := WriteTarball(p, "not a ref", img); err == nil {
		t.Error("WriteTarball accepted a bad reference")
	}
	tag, _ := name.NewTag("localhost/strata/test:v1")
	loaded, err := tarball.ImageFromPath(p, &tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(loaded); err != nil {
		t.Fatal(err)
	}
	want, _ := img.ConfigName()
	if got, _ := loaded.ConfigName(); got != want {
		t.Errorf("config digest %s, want %s", got, want)
	}
	_, data := layerFiles(t, loaded)
	if string(data["hello"]) != "world" {
		t.Errorf("hello = %q", data["hello"])
	}
	// docker-save layout: manifest.json naming the tag.
	f, _ := os.Open(p)
	defer f.Close()
	tr := tar.NewReader(f)
	found := false
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name == "manifest.json" {
			b, _ := io.ReadAll(tr)
			found = strings.Contains(string(b), `"localhost/strata/test:v1"`)
		}
	}
	if !found {
		t.Error("manifest.json with RepoTags not found")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*tmp*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// hostBusybox returns Debian's static busybox, skipping (or in CI failing)
// when busybox-static is not installed.
func hostBusybox(t *testing.T) string {
	t.Helper()
	const p = "/bin/busybox"
	_, statErr := os.Stat(p)
	pkgErr := exec.Command("dpkg", "-s", "busybox-static").Run()
	if statErr != nil || pkgErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("install busybox-static (hack/install-deps.sh)")
		}
		t.Skip("busybox-static is not installed")
	}
	return p
}

func TestBusybox(t *testing.T) {
	bb := hostBusybox(t)
	img, err := Busybox(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatal(err)
	}
	hdrs, _ := layerFiles(t, img)
	for _, a := range []string{"sh", "wget", "httpd", "sleep", "cat", "echo", "nc", "ls"} {
		if h := hdrs["bin/"+a]; h == nil || h.Linkname != "busybox" {
			t.Errorf("bin/%s missing or not a link to busybox", a)
		}
	}
	cf, _ := img.ConfigFile()
	if cf.Architecture != runtime.GOARCH || cf.Config.Cmd[0] != "/bin/sh" {
		t.Errorf("config %+v", cf)
	}
	if os.Geteuid() != 0 {
		return
	}
	// Unpack the image and run its shell in a chroot, as a container would.
	root := t.TempDir()
	if err := unpack(img, root); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", "echo hello from $(uname -s); ls /bin/wget; test -d /tmp")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	cmd.Env = cf.Config.Env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello from Linux") {
		t.Errorf("busybox in chroot: %v: %s", err, out)
	}
}

func TestBusyboxRejectsDynamicBinary(t *testing.T) {
	if _, err := os.Stat("/bin/true"); err != nil {
		t.Skip("no /bin/true")
	}
	if _, err := Busybox("/bin/true"); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("Busybox(/bin/true) = %v, want a dynamically-linked error", err)
	}
}

// unpack writes an image's filesystem under root (regular files, dirs and
// symlinks are enough for these images).
func unpack(img v1.Image, root string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(root, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, fs.FileMode(h.Mode)&fs.ModePerm)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			var b []byte
			if b, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, b, fs.FileMode(h.Mode)&fs.ModePerm)
			}
		}
		if err != nil {
			return err
		}
	}
}

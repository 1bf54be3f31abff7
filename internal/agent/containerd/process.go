package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/strata-cloud/strata/internal/agent/helperbin"
)

// Supervise runs `bin containerd --config ...` as a child process until ctx
// is done, restarting it with backoff if it exits. The child is killed if
// this process dies (containerd must not outlive its agent), while shims —
// started by containerd, not by us — keep running containers alive across
// agent restarts. shim is the runc shim (InstallShim). ready is closed once
// the socket first answers.
func Supervise(ctx context.Context, log *slog.Logger, bin, shim string, p Paths, logFile io.Writer, ready chan<- struct{}) error {
	// containerd finds a shim by name on PATH when it reconnects to running
	// tasks after a restart (the CRI runtime_path only applies to new
	// ones), so the shim's name leads to the same shim.
	shimDir := filepath.Join(p.Dir, "bin")
	if err := os.MkdirAll(shimDir, 0o700); err != nil {
		return err
	}
	shimLink := filepath.Join(shimDir, helperbin.Shim)
	_ = os.Remove(shimLink)
	if err := os.Symlink(shim, shimLink); err != nil {
		return fmt.Errorf("install shim: %w", err)
	}
	backoff := time.Second
	signalled := false
	for ctx.Err() == nil {
		started := time.Now()
		err := runChild(ctx, bin, shimDir, p, logFile, func() {
			if !signalled {
				if waitSocket(ctx, p.Socket(), time.Minute) == nil {
					signalled = true
					close(ready)
				}
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		log.Error("containerd exited; restarting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	return nil
}

// runChild starts containerd and waits for it. Pdeathsig is tied to the
// thread that forks the child, so that thread stays locked until it exits.
func runChild(ctx context.Context, bin, shimDir string, p Paths, logFile io.Writer, started func()) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command(bin, "containerd", "--config", p.Config())
	cmd.Env = append(os.Environ(), ShimEnv+"=1", "PATH="+shimDir+":"+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	go started()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			return <-done
		}
	}
}

func waitSocket(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd socket %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ImportImage loads an OCI or docker archive into the node's containerd
// (the CRI namespace) and unpacks it, returning the image names.
func ImportImage(ctx context.Context, socket string, archive io.Reader) ([]string, error) {
	c, err := client.New(socket, client.WithDefaultNamespace(Namespace))
	if err != nil {
		return nil, fmt.Errorf("connect containerd: %w", err)
	}
	defer c.Close()
	imgs, err := c.Import(ctx, archive)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	var names []string
	for _, img := range imgs {
		if err := client.NewImage(c, img).Unpack(ctx, "overlayfs"); err != nil && !errors.Is(err, errdefs.ErrAlreadyExists) {
			return nil, fmt.Errorf("unpack %s: %w", img.Name, err)
		}
		names = append(names, img.Name)
	}
	return names, nil
}

// InstallShim returns the runc shim for containerd to run: the small shim
// embedded in this binary, written under p.Dir/bin, or self when the build
// embeds none.
func InstallShim(p Paths, self string) (string, error) {
	return helperbin.Install(filepath.Join(p.Dir, "bin"), helperbin.Shim, self)
}

// ContainerPID returns the host PID of the running container named
// container in the pod with UID podUID (the kubelet's CRI labels).
func ContainerPID(ctx context.Context, socket, podUID, container string) (int, error) {
	c, err := client.New(socket, client.WithDefaultNamespace(Namespace))
	if err != nil {
		return 0, fmt.Errorf("connect containerd: %w", err)
	}
	defer c.Close()
	filter := fmt.Sprintf(`labels."io.kubernetes.pod.uid"==%s,labels."io.kubernetes.container.name"==%s`, podUID, container)
	ctrs, err := c.Containers(ctx, filter)
	if err != nil {
		return 0, err
	}
	for _, ctr := range ctrs {
		task, err := ctr.Task(ctx, nil)
		if err != nil {
			continue
		}
		st, err := task.Status(ctx)
		if err == nil && st.Status == client.Running {
			return int(task.Pid()), nil
		}
	}
	return 0, fmt.Errorf("no running container %s in pod %s", container, podUID)
}

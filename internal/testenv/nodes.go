package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An Agent is a `strata agent` process on a test host: its own network
// namespace (the Host), its own mount namespace, data dir and kubelet
// cgroup root — a node of the server's cluster on this one machine.
type Agent struct {
	Name       string
	Host       *Host
	DataDir    string
	CgroupRoot string
	LogPath    string

	srv  *Server
	args []string
	cur  *process
}

// JoinArgs are the `strata agent` flags that join s: the server URL (its
// advertised address, which test hosts reach through the fabric), a new
// bootstrap token and the CA hash, from `strata token create`.
func (s *Server) JoinArgs(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, "token", "create", "--data-dir", s.dataDir, "--ttl", "1h")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if _, err := cmd.Output(); err != nil {
		t.Fatalf("strata token create: %v: %s", err, stderr.String())
	}
	// "join a node with: strata agent --server URL --token T --ca-hash H"
	_, join, ok := strings.Cut(stderr.String(), "strata agent ")
	if !ok {
		t.Fatalf("strata token create printed no join command: %q", stderr.String())
	}
	join, _, _ = strings.Cut(join, "\n")
	return strings.Fields(join)
}

// StartAgent starts an agent named name on host, joined with s.JoinArgs,
// and stops it (and every container it started) when t ends. It does not
// wait for the node: see WaitNodesReady.
func (s *Server) StartAgent(t testing.TB, host *Host, name string, extra ...string) *Agent {
	t.Helper()
	if !s.opts.Multinode {
		t.Fatal("StartAgent needs a server started with Options.Multinode")
	}
	a := &Agent{
		Name: name, Host: host, srv: s,
		DataDir:    filepath.Join(t.TempDir(), "agent-"+name),
		CgroupRoot: "/strata-e2e/" + name,
	}
	a.LogPath = a.DataDir + ".log"
	a.args = append(append([]string{"agent"}, s.JoinArgs(t)...),
		"--data-dir", a.DataDir, "--node-name", name, "--cgroup-root", a.CgroupRoot)
	a.args = append(a.args, extra...)
	t.Cleanup(func() {
		if t.Failed() {
			dumpFileTail(t, a.LogPath)
		}
		a.Kill()
		if err := reapDataDir(a.DataDir, t.Logf); err != nil {
			t.Errorf("cleaning up after agent %s: %v", name, err)
		}
		removeCgroupTree(a.CgroupRoot)
	})
	if err := a.Start(); err != nil {
		t.Fatalf("start agent %s: %v", name, err)
	}
	return a
}

// Start starts the agent process (again, after Stop or Kill).
func (a *Agent) Start() error {
	if a.cur != nil && !a.cur.exited() {
		return errors.New("agent is already running")
	}
	logFile, err := os.OpenFile(a.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "=== testenv: agent start at %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(a.args, " "))
	// In the host's own mount and network namespaces (mounts of this node
	// stay its own). nsenter, not `ip netns exec`: that remounts /sys and
	// hides the cgroup hierarchy.
	args := append([]string{"--mount=" + a.Host.MountNS, "--net=" + a.Host.NetnsPath, "--", a.srv.bin}, a.args...)
	cmd := exec.Command("nsenter", args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = withoutEnv(os.Environ(), "KUBECONFIG")
	p, err := startProcess(cmd)
	if err != nil {
		return err
	}
	a.cur = p
	return nil
}

// Exited reports whether the agent process has exited, and its error.
func (a *Agent) Exited() (bool, error) {
	if a.cur == nil || !a.cur.exited() {
		return false, nil
	}
	return true, a.cur.err
}

// Log is the agent's log so far.
func (a *Agent) Log() string { return readLog(a.LogPath) }

// Stop sends SIGTERM and waits (bounded) for the agent to exit; its
// containers keep running.
func (a *Agent) Stop() error {
	p := a.cur
	if p == nil || p.exited() {
		return nil
	}
	p.stopping.Store(true)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return errors.New("agent did not stop within 30s of SIGTERM; killed")
	}
}

// Kill kills the agent's process group at once (its containers, whose
// shims left the group, keep running: see PowerOff).
func (a *Agent) Kill() {
	p := a.cur
	if p == nil || p.exited() {
		return
	}
	p.stopping.Store(true)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// PowerOff is the machine dying: the agent, its containers and its network
// namespace are gone at once.
func (a *Agent) PowerOff(t testing.TB) {
	t.Helper()
	a.Kill()
	if err := reapDataDir(a.DataDir, t.Logf); err != nil {
		t.Errorf("power off %s: %v", a.Name, err)
	}
	if err := a.Host.Delete(); err != nil {
		t.Errorf("power off %s: %v", a.Name, err)
	}
}

// WaitNodesReady waits until every named node is Ready.
func (s *Server) WaitNodesReady(t testing.TB, timeout time.Duration, names ...string) {
	t.Helper()
	Eventually(t, timeout, func() error {
		out := s.Kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		if out.Err != nil {
			return out.Err
		}
		ready := map[string]bool{}
		sc := bufio.NewScanner(strings.NewReader(out.Stdout))
		for sc.Scan() {
			name, status, _ := strings.Cut(sc.Text(), "=")
			ready[name] = status == "True"
		}
		var missing []string
		for _, n := range names {
			if !ready[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("nodes not Ready: %v (all: %s)", missing, strings.ReplaceAll(out.Stdout, "\n", " "))
		}
		return nil
	})
}

// removeCgroupTree removes a kubelet cgroup root in every hierarchy,
// deepest first (only empty cgroups can be removed).
func removeCgroupTree(root string) {
	rel := strings.Trim(root, "/")
	if rel == "" {
		return
	}
	hierarchies, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range hierarchies {
		base := filepath.Join("/sys/fs/cgroup", h.Name(), rel)
		var dirs []string
		_ = filepath.WalkDir(base, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
		_ = syscall.Rmdir(filepath.Dir(base)) // /strata-e2e, when the last node is gone
	}
}

// ImportImage loads an image archive into the agent's containerd (which
// must be running) with `strata image import`.
func (a *Agent) ImportImage(t testing.TB, archive string) {
	t.Helper()
	Eventually(t, 2*time.Minute, func() error {
		r := Run(t, a.srv.bin, "image", "import", "--data-dir", a.DataDir, archive)
		if r.Err != nil {
			return fmt.Errorf("strata image import into %s: %s", a.Name, r)
		}
		return nil
	})
}

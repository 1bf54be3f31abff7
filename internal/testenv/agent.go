package testenv

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/storage/volume"
)

// Agent-backed servers (Options.WithAgent) run a real node: containerd, the
// kubelet on its fixed port, the strata0 bridge and the VXLAN device. Only
// one can run on a host at a time, and its containers outlive it (their
// shims keep running by design), so the harness serialises such servers and
// cleans up after them: it deletes the workloads while the server still
// runs, stops the server, kills what is left of its containers and unmounts
// everything under its data directory.
const (
	// NodeReadyTimeout bounds the wait for the node of an agent-backed
	// server to report Ready (after start and after each restart).
	NodeReadyTimeout = 90 * time.Second
	// WorkloadDeleteTimeout bounds the wait for a stopping agent-backed
	// server's pods to be gone.
	WorkloadDeleteTimeout = 90 * time.Second
	// AgentLockTimeout bounds the wait for another agent-backed server on
	// this host (in this or another test process) to end.
	AgentLockTimeout = 5 * time.Minute

	// KubeletPort is the node agent's fixed kubelet port.
	KubeletPort = 10250

	agentLockFile = "strata-e2e-agent.lock"
	netnsDir      = "/run/netns"
	reapTimeout   = 15 * time.Second
)

// agentMu serialises agent-backed servers within this process; the flock on
// agentLockFile does so across processes (go test runs packages in
// parallel). agentHeldSince is when this process took the lock (Unix
// nanoseconds), 0 while it does not hold it.
var (
	agentMu        sync.Mutex
	agentHeldSince atomic.Int64
)

// agentLock is the host-wide right to run one agent-backed server.
type agentLock struct {
	file *os.File
	once sync.Once
}

// AcquireAgentLock takes the host-wide right to run an agent-backed server,
// the one Start and StartShared take for Options.WithAgent, for programs
// outside tests (the benchmarks) that must never run beside such a server.
// It waits up to timeout (0 means AgentLockTimeout); call release when done.
func AcquireAgentLock(timeout time.Duration) (release func(), err error) {
	l, err := acquireAgentLock(timeout)
	if err != nil {
		return nil, err
	}
	return l.release, nil
}

// acquireAgentLock waits up to timeout (0 means AgentLockTimeout) until no
// other agent-backed server of a test runs on this host, then checks that
// nothing else holds the kubelet port.
func acquireAgentLock(timeout time.Duration) (*agentLock, error) {
	if timeout <= 0 {
		timeout = AgentLockTimeout
	}
	deadline := time.Now().Add(timeout)
	for !agentMu.TryLock() {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("another agent-backed strata server of this test process still runs after %s", timeout)
		}
		time.Sleep(PollInterval)
	}
	path := filepath.Join(os.TempDir(), agentLockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		agentMu.Unlock()
		return nil, fmt.Errorf("agent lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			agentMu.Unlock()
			return nil, fmt.Errorf("agent lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			agentMu.Unlock()
			return nil, fmt.Errorf("another process holds %s (an agent-backed strata server) after %s", path, timeout)
		}
		time.Sleep(time.Second)
	}
	agentHeldSince.Store(time.Now().UnixNano())
	l := &agentLock{file: f}
	// A node agent that is not ours (a server started by hand, a leftover)
	// would make the new one fail in confusing ways: say so up front.
	probe, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(KubeletPort)))
	if err != nil {
		l.release()
		return nil, fmt.Errorf("kubelet port %d is taken (is another strata server with a node agent running on this host?): %w", KubeletPort, err)
	}
	probe.Close()
	return l, nil
}

func (l *agentLock) release() {
	l.once.Do(func() {
		agentHeldSince.Store(0)
		_ = syscall.Flock(int(l.file.Fd()), syscall.LOCK_UN)
		l.file.Close()
		agentMu.Unlock()
	})
}

// startAgentCleanup prepares t for an agent-backed server on dataDir: it
// takes the host-wide agent lock and registers the cleanups that run after
// the server has stopped (kill leftover container processes, unmount, drop
// the lock). It must be called before the server's shutdown cleanup is
// registered, so that these run after it.
func startAgentCleanup(t testing.TB, dataDir string) {
	t.Helper()
	lock, err := acquireAgentLock(0)
	if err != nil {
		skipOrFail(t, "agent-backed strata server: %v", err)
	}
	t.Cleanup(lock.release)
	if stale := netnsEntries(); len(stale) > 0 {
		// Pods of a server that is gone but whose network namespaces were
		// never deleted keep their IPs on the shared bridge; a new node
		// hands out the same IPs, and traffic to those pods goes astray.
		t.Logf("WARNING: %d network namespaces already exist in %s before this node starts (left by another server?); their pod IPs may collide with this node's: %v", len(stale), netnsDir, stale)
	}
	t.Cleanup(func() {
		if err := reapDataDir(dataDir, t.Logf); err != nil {
			t.Errorf("cleaning up after the node agent: %v", err)
		}
	})
}

// deleteWorkloadsCleanup deletes every workload of s while it still runs
// and waits (bounded) until their pods are gone; registered after the
// shutdown cleanup, it runs before it.
func (s *Server) deleteWorkloadsCleanup() {
	t := s.t
	t.Cleanup(func() {
		if !s.Running() {
			return
		}
		if err := s.instance.deleteWorkloads(WorkloadDeleteTimeout, t.Logf); err != nil {
			t.Errorf("deleting the test's workloads before stopping the server: %v", err)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			dumpFileTail(t, filepath.Join(s.ContainerdDir(), "containerd.log"))
		}
	})
}

// ContainerdDir is where the server's node agent keeps containerd's socket
// (containerd.sock), log and private runc root (runc/); the layout of
// internal/agent/containerd.NewPaths under the agent's data dir.
func (s *Server) ContainerdDir() string { return filepath.Join(s.dataDir, "agent", "containerd") }

// workloadKinds are what deleteWorkloads deletes before the pods, so that
// no controller replaces a deleted pod.
const workloadKinds = "deployments,replicasets,statefulsets,daemonsets,jobs,cronjobs,replicationcontrollers"

// deleteWorkloads deletes all workloads and pods in all namespaces and
// waits until no pod is left. Pods are deleted with a short grace period:
// many test containers (sleep, httpd as PID 1) ignore SIGTERM.
func (in *instance) deleteWorkloads(timeout time.Duration, logf func(string, ...any)) error {
	kc, err := newBareKubectl(in.kubeconfig())
	if err != nil {
		return err
	}
	defer kc.close()
	if r := kc.run("delete", workloadKinds, "--all", "--all-namespaces", "--wait=false", "--ignore-not-found"); r.Err != nil {
		return fmt.Errorf("kubectl delete %s: %s", workloadKinds, r)
	}
	deadline := time.Now().Add(timeout)
	for {
		r := kc.run("get", "pods", "--all-namespaces", "-o", "name")
		if r.Err == nil && strings.TrimSpace(r.Stdout) == "" {
			return nil
		}
		if time.Now().After(deadline) {
			left := strings.TrimSpace(kc.run("get", "pods", "--all-namespaces", "-o", "wide").Stdout)
			// Do not leave them behind in the store either.
			kc.run("delete", "pods", "--all", "--all-namespaces", "--force", "--grace-period=0", "--wait=false")
			return fmt.Errorf("pods still there %s after deleting them:\n%s", timeout, left)
		}
		kc.run("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=false", "--ignore-not-found")
		time.Sleep(time.Second)
	}
}

// bareKubectl runs kubectl without a test (for shared servers' Close).
type bareKubectl struct {
	command         []string
	kubeconfig, dir string
}

func newBareKubectl(kubeconfig string) (*bareKubectl, error) {
	command, err := KubectlCommand()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "strata-e2e-kubectl-")
	if err != nil {
		return nil, err
	}
	return &bareKubectl{command: command, kubeconfig: kubeconfig, dir: dir}, nil
}

func (k *bareKubectl) run(args ...string) Result {
	full := append(append([]string{}, k.command...), "--kubeconfig", k.kubeconfig, "--cache-dir", k.dir, "--request-timeout", "20s")
	return run(append(full, args...), "", withoutEnv(os.Environ(), "KUBECONFIG"), 30*time.Second)
}

func (k *bareKubectl) close() { os.RemoveAll(k.dir) }

// WaitNodeReady waits until a node reports Ready with a heartbeat no older
// than since (so that a restarted server's stale status does not count),
// and returns its name. It fails the test after NodeReadyTimeout.
func (s *Server) WaitNodeReady(since time.Time) string {
	s.t.Helper()
	var name string
	Eventually(s.t, NodeReadyTimeout, func() error {
		if err := s.CheckRunning(); err != nil {
			return err
		}
		var err error
		name, err = readyNode(s.kubectl.RunStdin("", "get", "nodes", "-o", "json"), since)
		return err
	})
	return name
}

// AwaitNodeReady is WaitNodeReady for callers without a test (a shared
// server, the benchmarks): it returns the node's name, or an error once
// timeout (0 means NodeReadyTimeout) has passed or the server has exited.
func (s *Server) AwaitNodeReady(since time.Time, timeout time.Duration) (string, error) {
	if timeout <= 0 {
		timeout = NodeReadyTimeout
	}
	kc, err := newBareKubectl(s.kubeconfig())
	if err != nil {
		return "", err
	}
	defer kc.close()
	deadline := time.Now().Add(timeout)
	for {
		if err := s.CheckRunning(); err != nil {
			return "", err
		}
		name, err := readyNode(kc.run("get", "nodes", "-o", "json"), since)
		if err == nil {
			return name, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("still failing after %s: %w", timeout, err)
		}
		time.Sleep(PollInterval)
	}
}

type nodeList struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Status struct {
			Conditions []struct {
				Type              string    `json:"type"`
				Status            string    `json:"status"`
				Reason            string    `json:"reason"`
				Message           string    `json:"message"`
				LastHeartbeatTime time.Time `json:"lastHeartbeatTime"`
			} `json:"conditions"`
		} `json:"status"`
	} `json:"items"`
}

// readyNode picks the first node that is Ready with a heartbeat at or after
// since (to the second, as the API keeps it).
func readyNode(r Result, since time.Time) (string, error) {
	if r.Err != nil {
		return "", fmt.Errorf("kubectl get nodes: %s", r)
	}
	var nodes nodeList
	if err := json.Unmarshal([]byte(r.Stdout), &nodes); err != nil {
		return "", fmt.Errorf("kubectl get nodes: %w", err)
	}
	if len(nodes.Items) == 0 {
		return "", errors.New("no node registered yet")
	}
	var states []string
	for _, n := range nodes.Items {
		state := "no Ready condition"
		for _, c := range n.Status.Conditions {
			if c.Type != "Ready" {
				continue
			}
			if c.Status == "True" && !c.LastHeartbeatTime.Before(since.Truncate(time.Second)) {
				return n.Metadata.Name, nil
			}
			state = fmt.Sprintf("Ready=%s (%s: %s) heartbeat %s", c.Status, c.Reason, c.Message, c.LastHeartbeatTime.Format(time.RFC3339))
		}
		states = append(states, n.Metadata.Name+": "+state)
	}
	return "", fmt.Errorf("no node Ready since %s: %s", since.Format(time.RFC3339), strings.Join(states, "; "))
}

// ImportImage loads a docker or OCI image archive into the node's
// containerd with `strata image import`, failing the test unless it
// succeeds.
func (s *Server) ImportImage(archive string) {
	s.t.Helper()
	if err := s.ImportImageArchive(archive); err != nil {
		s.t.Fatal(err)
	}
}

// PushImage pushes a docker or OCI image archive to the server's registry
// with `strata image push` (as the admin) and returns what it printed,
// failing the test unless it succeeds.
func (s *Server) PushImage(archive string) string {
	s.t.Helper()
	r := Run(s.t, s.bin, "image", "push", "--data-dir", s.dataDir, archive)
	if r.Err != nil {
		s.t.Fatalf("strata image push %s: %s", archive, r)
	}
	return r.Stdout
}

// ImportImageArchive is ImportImage for callers without a test (a shared
// server, the benchmarks): it returns what went wrong.
func (s *Server) ImportImageArchive(archive string) error {
	r := run([]string{s.bin, "image", "import", "--data-dir", s.dataDir, archive}, "", withoutEnv(os.Environ(), "KUBECONFIG"), DefaultCommandTimeout)
	if r.Err != nil {
		return fmt.Errorf("strata image import %s: %s", archive, r)
	}
	return nil
}

// reapDataDir kills the processes left behind by a stopped node agent
// whose data directory is dir — those whose command line names the
// directory (containerd, its shims), their descendants, and those whose
// root is under it (containers) — then lazily unmounts every mount under
// dir, deepest first, and deletes the pods' network namespaces left behind
// (reapPodNetns). It logs what it had to do: after a clean shutdown with the
// workloads deleted, some shims may be left, but no containers.
func reapDataDir(dir string, logf func(string, ...any)) error {
	dir = filepath.Clean(dir)
	if dir == "/" || dir == "." {
		return fmt.Errorf("refusing to reap %q", dir)
	}
	var errs []error
	if pids := leftoverProcesses(dir); len(pids) > 0 {
		logf("node agent cleanup: killing %d leftover processes of %s: %s", len(pids), dir, describeProcesses(pids))
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill %d: %w", pid, err))
			}
		}
		// A frozen process acts on SIGKILL only once thawed.
		thawCgroups(pids, logf)
		deadline := time.Now().Add(reapTimeout)
		for {
			alive := alivePIDs(pids)
			if len(alive) == 0 {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("processes %v still alive %s after SIGKILL", alive, reapTimeout))
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for pass := 0; pass < 3; pass++ {
		mounts, err := mountsUnder(dir)
		if err != nil {
			errs = append(errs, err)
			break
		}
		if len(mounts) == 0 {
			break
		}
		if pass == 0 {
			logf("node agent cleanup: unmounting %d mounts under %s", len(mounts), dir)
		}
		for _, m := range mounts {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
		}
	}
	if mounts, err := mountsUnder(dir); err == nil && len(mounts) > 0 {
		errs = append(errs, fmt.Errorf("still mounted under %s: %v", dir, mounts))
	}
	// The agent's volume directory, shown at volume.NodeDir (in this mount
	// namespace when the agent ran in it).
	for _, vd := range []string{filepath.Join(dir, "volumes"), filepath.Join(dir, "agent", "volumes")} {
		if same, _ := volume.SameDir(vd, volume.NodeDir); same {
			if err := syscall.Unmount(volume.NodeDir, syscall.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", volume.NodeDir, err))
			}
		}
	}
	if err := reapPodNetns(logf); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// reapPodNetns deletes the pod network namespaces (containerd's CRI names
// them cni-* in netnsDir, outside the data dir) made since this process
// took the agent lock that no process is in any more. A namespace outlives its
// processes there, and its pod's veth keeps the pod IP on the shared
// bridge, which the next node hands out again; this happens when a server
// dies with pods still running. While the lock is held only one node agent
// runs on this host, so such namespaces are its own.
func reapPodNetns(logf func(string, ...any)) error {
	held := agentHeldSince.Load()
	if held == 0 {
		return nil // not ours to judge: another node may be running
	}
	since := time.Unix(0, held).Add(-time.Second)
	inUse := map[uint64]bool{}
	if procs, err := os.ReadDir("/proc"); err == nil {
		for _, p := range procs {
			var ns syscall.Stat_t
			if _, err := strconv.Atoi(p.Name()); err == nil && syscall.Stat(filepath.Join("/proc", p.Name(), "ns", "net"), &ns) == nil {
				inUse[ns.Ino] = true
			}
		}
	}
	var stale []string
	for _, name := range netnsEntries() {
		path := filepath.Join(netnsDir, name)
		var ns syscall.Stat_t
		// Pods' namespaces, and Neutron routers' (no process runs in those).
		if !strings.HasPrefix(name, "cni-") && !strings.HasPrefix(name, "qrouter-") || syscall.Stat(path, &ns) != nil || inUse[ns.Ino] {
			continue
		}
		if time.Unix(ns.Mtim.Unix()).Before(since) {
			continue
		}
		stale = append(stale, path)
	}
	if len(stale) == 0 {
		return nil
	}
	logf("node agent cleanup: deleting %d pod and router network namespaces no process is in: %v", len(stale), stale)
	var errs []error
	for _, path := range stale {
		if err := syscall.Unmount(path, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", path, err))
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// NodeProcesses returns the processes of a node agent whose data directory
// is dir: those whose command line names the directory (the server itself,
// containerd, the shims), those whose root is under it (containers), and
// all their descendants; never this process. The benchmarks sum their
// memory; reapDataDir kills them.
func NodeProcesses(dir string) []int { return leftoverProcesses(filepath.Clean(dir)) }

// leftoverProcesses returns the processes that belong to a node agent on
// dir, as described at reapDataDir; never this process.
func leftoverProcesses(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	children := map[int][]int{}
	var roots []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if ppid, ok := parentPID(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
		if processMentions(pid, dir) {
			roots = append(roots, pid)
		}
	}
	roots = append(roots, runcInits(dir)...)
	seen := map[int]bool{}
	var out []int
	for len(roots) > 0 {
		pid := roots[0]
		roots = roots[1:]
		if seen[pid] || pid == self || pid <= 1 {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
		roots = append(roots, children[pid]...)
	}
	sort.Ints(out)
	return out
}

// thawCgroups thaws the frozen cgroups any of pids is in. runc freezes a
// container's cgroup for a moment (cgroup v1 device rules, pause); a runc
// or shim killed in that moment leaves it frozen, and its processes never
// die.
func thawCgroups(pids []int, logf func(string, ...any)) {
	thawed := map[string]bool{}
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			// "6:freezer:/kubepods/..." (v1) or "0::/kubepods/..." (v2)
			f := strings.SplitN(line, ":", 3)
			if len(f) != 3 {
				continue
			}
			var state, thaw string
			switch {
			case f[1] == "freezer":
				state = filepath.Join("/sys/fs/cgroup/freezer", f[2], "freezer.state")
				thaw = "THAWED"
			case f[0] == "0" && f[1] == "":
				state = filepath.Join("/sys/fs/cgroup", f[2], "cgroup.freeze")
				thaw = "0"
			default:
				continue
			}
			if thawed[state] {
				continue
			}
			// FROZEN or FREEZING (v1), 1 (v2)
			if cur, err := os.ReadFile(state); err == nil && strings.TrimSpace(string(cur)) != thaw {
				thawed[state] = true
				if err := os.WriteFile(state, []byte(thaw), 0o644); err == nil {
					logf("node agent cleanup: thawed frozen cgroup %s", filepath.Dir(state))
				}
			}
		}
	}
}

// runcStatePatterns are where the runc states of a node's containers are,
// under its data dir: containerd's private runc root (see ContainerdDir;
// a joined agent keeps containerd directly under its data dir), then
// <namespace>/<container id>/state.json.
var runcStatePatterns = []string{
	filepath.Join("agent", "containerd", "runc", "*", "*", "state.json"),
	filepath.Join("containerd", "runc", "*", "*", "state.json"),
}

// runcInits returns the running init processes of the containers whose
// runc state is under dir. A container whose shim died is re-parented away
// from the node's processes, and its root (in its own mount namespace) does
// not show as under dir from here: only its runc state ties it to the node.
// The start time runc recorded guards against a reused PID.
func runcInits(dir string) []int {
	var pids []int
	for _, pattern := range runcStatePatterns {
		states, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, path := range states {
			data, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			var st struct {
				PID   int    `json:"init_process_pid"`
				Start uint64 `json:"init_process_start"`
			}
			if json.Unmarshal(data, &st) != nil || st.PID <= 1 {
				continue
			}
			if start, ok := processStart(st.PID); ok && start == st.Start {
				pids = append(pids, st.PID)
			}
		}
	}
	return pids
}

// processStart reads pid's start time (clock ticks since boot) from
// /proc/PID/stat, as runc records it.
func processStart(pid int) (uint64, bool) {
	f, ok := statFields(pid)
	if !ok || len(f) < 20 {
		return 0, false
	}
	// Fields after "(comm)" start at field 3; starttime is field 22.
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

// statFields are the fields of /proc/PID/stat after "pid (comm)": comm may
// hold spaces and parentheses, so they start after its last ')'.
func statFields(pid int) ([]string, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, false
	}
	return strings.Fields(s[i+1:]), true
}

func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// processMentions reports whether pid's command line names dir or a path
// under it, or its root directory is under dir (a container's rootfs).
func processMentions(pid int, dir string) bool {
	if root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pid)); err == nil && root != "/" && under(root, dir) {
		return true
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	for _, arg := range strings.Split(string(data), "\x00") {
		if arg == dir || strings.Contains(arg, dir+"/") {
			return true
		}
	}
	return false
}

// ParentPID reads pid's parent from /proc/PID/stat: for the benchmarks,
// which tell a node's processes apart by their parents.
func ParentPID(pid int) (int, bool) { return parentPID(pid) }

// parentPID reads pid's parent from /proc/PID/stat ("pid (comm) state ppid ...").
func parentPID(pid int) (int, bool) {
	f, ok := statFields(pid)
	if !ok || len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// alivePIDs returns those of pids that still run (zombies count as gone).
func alivePIDs(pids []int) []int {
	var alive []int
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(data)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			if f := strings.Fields(s[i+1:]); len(f) > 0 && (f[0] == "Z" || f[0] == "X") {
				continue
			}
		}
		alive = append(alive, pid)
	}
	return alive
}

func describeProcesses(pids []int) string {
	var parts []string
	for _, pid := range pids {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cmd := strings.TrimSpace(strings.ReplaceAll(string(data), "\x00", " "))
		if len(cmd) > 120 {
			cmd = cmd[:120] + "..."
		}
		parts = append(parts, fmt.Sprintf("%d[%s]", pid, cmd))
	}
	return strings.Join(parts, ", ")
}

// mountsUnder returns the mount points at or under dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mounts, err := parseMountsUnder(f, dir)
	if err != nil {
		return nil, fmt.Errorf("/proc/self/mountinfo: %w", err)
	}
	return mounts, nil
}

func parseMountsUnder(r io.Reader, dir string) ([]string, error) {
	var mounts []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": the 5th field.
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		if mp := unescapeMountPath(f[4]); under(mp, dir) {
			mounts = append(mounts, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	// Deepest first; a path mounted twice is unmounted twice.
	sort.SliceStable(mounts, func(i, j int) bool {
		di, dj := strings.Count(mounts[i], "/"), strings.Count(mounts[j], "/")
		if di != dj {
			return di > dj
		}
		return len(mounts[i]) > len(mounts[j])
	})
	return mounts, nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func dumpFileTail(t testing.TB, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	t.Logf("%s (tail):\n%s", path, tail(string(data), 16<<10))
}

// netnsEntries lists the named network namespaces (CNI's, among others).
func netnsEntries() []string {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

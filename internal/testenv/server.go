package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Bounds on the server's lifecycle.
const (
	// DefaultReadyTimeout bounds the wait for a started server's /readyz.
	DefaultReadyTimeout = 90 * time.Second
	// StopTimeout bounds a graceful stop (SIGTERM to exit).
	StopTimeout = 40 * time.Second
	// ReadyLogLine is what the server logs once /readyz passes.
	ReadyLogLine = "Strata server is ready"

	killTimeout   = 10 * time.Second
	logDumpLimit  = 64 << 10
	portAttempts  = 3
	readyInterval = 200 * time.Millisecond
)

// Options configure a server.
type Options struct {
	// DataDir is the server's data directory; empty means a new temporary
	// one. Restart tests pass the same directory to a second server.
	DataDir string
	// Args are extra `strata server` flags, e.g. "--log-level", "debug".
	Args []string
	// WithAgent runs the node agent; by default the server gets
	// --disable-agent, so that these tests see a control plane with no nodes.
	WithAgent bool
	// Multinode serves agents on other (test) hosts: the API listens on
	// all addresses, and the server holds the host's agent lock, since its
	// nodes (StartAgent) run on this machine.
	Multinode bool
	// ReadyTimeout bounds the wait for readiness; 0 means DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Bin is the strata binary to run; empty means BinaryPath().
	Bin string
	// AgentLockTimeout bounds StartShared's wait for the host-wide agent
	// lock (WithAgent only); 0 means AgentLockTimeout.
	AgentLockTimeout time.Duration
}

// Ports are the loopback ports a server listens on.
type Ports struct {
	API, EtcdClient, EtcdPeer, Registry, OpenStack, S3 int
}

// Server is a `strata server` process and what tests need to reach it. A
// Server is bound to one test (see Start and For); the process behind it may
// be shared by several tests.
type Server struct {
	*instance
	t       testing.TB
	kubectl *Kubectl
}

// instance is the process side of a Server, shared by all views of it.
type instance struct {
	bin          string
	dataDir      string
	logPath      string
	ports        Ports
	opts         Options
	ownedDirs    []string   // removed by Close (shared servers only)
	agentLock    *agentLock // held by shared agent-backed servers until Close
	readyTimeout time.Duration

	mu     sync.Mutex
	cur    *process // nil before the first start
	starts int
}

// process is one run of the binary.
type process struct {
	cmd      *exec.Cmd
	done     chan struct{}
	err      error       // what Wait returned; valid once done is closed
	stopping atomic.Bool // the harness asked it to exit
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start starts a server for t on free loopback ports and waits until it is
// ready. When t ends, the server is stopped (a failed graceful stop fails
// t) and, if t failed, its log is printed.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	RequireHost(t)
	bin := opts.Bin
	if bin == "" {
		bin = Binary(t)
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.WithAgent || opts.Multinode {
		// Runs its cleanups after the server's shutdown below.
		startAgentCleanup(t, opts.DataDir)
	}
	in := newInstance(bin, opts, filepath.Join(t.TempDir(), "strata.log"))
	s := &Server{instance: in, t: t}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLog(t, in.logPath, 0)
		}
	})
	t.Cleanup(func() {
		if err := in.shutdown(); err != nil {
			t.Errorf("stopping strata server at cleanup: %v", err)
		}
	})
	began := time.Now()
	if err := in.startFresh(); err != nil {
		t.Fatalf("start strata server: %v", err)
	}
	t.Logf("strata server ready after %s in %s (ports %+v)", time.Since(began).Round(time.Millisecond), in.dataDir, in.ports)
	s.kubectl = NewKubectl(t, in.kubeconfig())
	if opts.WithAgent {
		// Runs before the server's shutdown.
		s.deleteWorkloadsCleanup()
		node := s.WaitNodeReady(began)
		t.Logf("node %s Ready after %s", node, time.Since(began).Round(time.Millisecond))
	}
	return s
}

// StartShared starts a server that outlives single tests, for TestMain or
// a package-level sync.Once (or a program without tests: the benchmarks).
// Bind it to each test with For, and end it with Close, also after an error.
func StartShared(opts Options) (*Server, error) {
	if err := CheckHost(); err != nil {
		return nil, err
	}
	bin := opts.Bin
	if bin == "" {
		var err error
		if bin, err = BinaryPath(); err != nil {
			return nil, err
		}
	}
	logDir, err := os.MkdirTemp("", "strata-e2e-log-")
	if err != nil {
		return nil, fmt.Errorf("shared server: %w", err)
	}
	owned := []string{logDir}
	if opts.DataDir == "" {
		if opts.DataDir, err = os.MkdirTemp("", "strata-e2e-data-"); err != nil {
			return nil, fmt.Errorf("shared server: %w", err)
		}
		owned = append(owned, opts.DataDir)
	}
	in := newInstance(bin, opts, filepath.Join(logDir, "strata.log"))
	in.ownedDirs = owned
	if opts.WithAgent {
		if in.agentLock, err = acquireAgentLock(opts.AgentLockTimeout); err != nil {
			return &Server{instance: in}, err
		}
	}
	if err := in.startFresh(); err != nil {
		_ = in.shutdown()
		return &Server{instance: in}, err
	}
	return &Server{instance: in}, nil
}

// For binds the server to t: kubectl runs with a fresh cache directory of
// t's, and if t fails, the server log written during t is printed.
func (s *Server) For(t testing.TB) *Server {
	t.Helper()
	offset := logSize(s.logPath)
	t.Cleanup(func() {
		if t.Failed() {
			dumpLog(t, s.logPath, offset)
		}
	})
	return &Server{instance: s.instance, t: t, kubectl: NewKubectl(t, s.kubeconfig())}
}

// Close stops a shared server and removes the directories it created. It
// returns an error if the server did not stop cleanly.
func (s *Server) Close() error {
	if !s.opts.WithAgent {
		return s.closeDirs(s.shutdown())
	}
	// An agent-backed server: delete the workloads while it runs, stop it,
	// then clean up what its containers left behind.
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	var errs []error
	if s.Running() {
		errs = append(errs, s.deleteWorkloads(WorkloadDeleteTimeout, logf))
	}
	errs = append(errs, s.shutdown(), reapDataDir(s.dataDir, logf))
	if s.agentLock != nil {
		s.agentLock.release()
	}
	return s.closeDirs(errors.Join(errs...))
}

func (s *Server) closeDirs(err error) error {
	for _, d := range s.ownedDirs {
		if rmErr := os.RemoveAll(d); rmErr != nil && err == nil {
			err = rmErr
		}
	}
	return err
}

func newInstance(bin string, opts Options, logPath string) *instance {
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = DefaultReadyTimeout
	}
	return &instance{bin: bin, dataDir: opts.DataDir, logPath: logPath, opts: opts, readyTimeout: timeout}
}

// DataDir is the server's data directory.
func (s *Server) DataDir() string { return s.dataDir }

// Kubeconfig is the path of the server's admin kubeconfig.
func (s *Server) Kubeconfig() string { return s.kubeconfig() }

func (in *instance) kubeconfig() string { return filepath.Join(in.dataDir, "admin.kubeconfig") }

// Ports are the ports the server listens on.
func (s *Server) Ports() Ports { return s.ports }

// PID is the process id of the running server, 0 if none runs.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || s.cur.exited() {
		return 0
	}
	return s.cur.cmd.Process.Pid
}

// URL is the Kubernetes API's address.
func (s *Server) URL() string { return s.url() }

func (in *instance) url() string {
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(in.ports.API))
}

// RegistryURL is the address of the server's OCI registry.
func (s *Server) RegistryURL() string {
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.ports.Registry))
}

// Bin is the strata binary the server runs.
func (s *Server) Bin() string { return s.bin }

// LogPath is the file that holds the server's stdout and stderr, across
// restarts.
func (s *Server) LogPath() string { return s.logPath }

// Log returns everything the server has written so far.
func (s *Server) Log() string { return readLog(s.logPath) }

// Running reports whether the server process is alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil && !s.cur.exited()
}

// CheckRunning returns an error if the server process has exited without
// the harness asking it to.
func (s *Server) CheckRunning() error {
	s.mu.Lock()
	p := s.cur
	s.mu.Unlock()
	switch {
	case p == nil:
		return errors.New("server was never started")
	case p.exited() && !p.stopping.Load():
		return fmt.Errorf("server exited on its own (%v)", p.cmd.ProcessState)
	case p.exited():
		return errors.New("server was stopped")
	}
	return nil
}

// Stop sends SIGTERM and fails the test unless the server exits with code
// 0 within StopTimeout.
func (s *Server) Stop() {
	s.t.Helper()
	if err := s.shutdown(); err != nil {
		s.t.Fatalf("graceful stop: %v", err)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (s *Server) Kill() {
	s.t.Helper()
	s.mu.Lock()
	p := s.cur
	s.mu.Unlock()
	if p == nil || p.exited() {
		s.t.Fatalf("kill: server is not running")
	}
	p.stopping.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Fatalf("kill: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(killTimeout):
		s.t.Fatalf("kill: process %d still there after %s", p.cmd.Process.Pid, killTimeout)
	}
}

// Restart starts the server again on the same data directory and ports
// (stopping it gracefully first if it still runs) and waits until it is
// ready.
func (s *Server) Restart() {
	s.t.Helper()
	if s.Running() {
		s.Stop()
	}
	began := time.Now()
	if err := s.start(); err != nil {
		s.t.Fatalf("restart: %v", err)
	}
	s.t.Logf("strata server ready again after %s", time.Since(began).Round(time.Millisecond))
	if s.opts.WithAgent {
		node := s.WaitNodeReady(began)
		s.t.Logf("node %s Ready again after %s", node, time.Since(began).Round(time.Millisecond))
	}
}

// shutdown stops the process gracefully; it is a no-op if none runs.
func (in *instance) shutdown() error {
	in.mu.Lock()
	p := in.cur
	in.mu.Unlock()
	if p == nil {
		return nil
	}
	if p.exited() {
		if p.stopping.Load() {
			return nil
		}
		return fmt.Errorf("server had exited on its own (%v); log tail:\n%s", p.cmd.ProcessState, tail(readLog(in.logPath), 4<<10))
	}
	p.stopping.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-p.done:
	case <-time.After(StopTimeout):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("server did not exit within %s of SIGTERM; killed it", StopTimeout)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("server exited with %s after SIGTERM, want code 0; log tail:\n%s", p.cmd.ProcessState, tail(readLog(in.logPath), 4<<10))
	}
	return nil
}

// startFresh picks free ports and starts the server, picking again if
// another process took a port between the pick and the server's listen.
func (in *instance) startFresh() error {
	var err error
	for attempt := 0; attempt < portAttempts; attempt++ {
		var ports []int
		if ports, err = FreePorts(6); err != nil {
			return err
		}
		in.ports = Ports{API: ports[0], EtcdClient: ports[1], EtcdPeer: ports[2], Registry: ports[3], OpenStack: ports[4], S3: ports[5]}
		offset := logSize(in.logPath)
		if err = in.start(); err == nil {
			return nil
		}
		if !strings.Contains(logFrom(in.logPath, offset), "cannot listen on") {
			return err
		}
	}
	return err
}

// Args are the `strata server` arguments for the current ports.
func (s *Server) Args() []string { return s.args() }

func (in *instance) args() []string {
	args := []string{"server",
		"--data-dir", in.dataDir,
		"--bind-address", in.bindAddress(),
		"--api-port", strconv.Itoa(in.ports.API),
		"--etcd-client-port", strconv.Itoa(in.ports.EtcdClient),
		"--etcd-peer-port", strconv.Itoa(in.ports.EtcdPeer),
		"--registry-port", strconv.Itoa(in.ports.Registry),
		"--openstack-port", strconv.Itoa(in.ports.OpenStack),
		"--s3-port", strconv.Itoa(in.ports.S3),
		// VMs' disks (on every node of the test, the host's filesystem)
		// go where the test cleans up.
		"--vm-disk-dir", filepath.Join(in.dataDir, "vm-disks"),
	}
	if !in.opts.WithAgent {
		args = append(args, "--disable-agent")
	}
	return append(args, in.opts.Args...)
}

func (in *instance) bindAddress() string {
	if in.opts.Multinode {
		return "0.0.0.0"
	}
	return "127.0.0.1"
}

// start launches the binary and waits for readiness.
func (in *instance) start() error {
	p, err := in.launch()
	if err != nil {
		return err
	}
	if err := in.waitReady(p); err != nil {
		p.stopping.Store(true)
		if !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
		return fmt.Errorf("%w; server log tail:\n%s", err, tail(readLog(in.logPath), 8<<10))
	}
	return nil
}

func (in *instance) launch() (*process, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cur != nil && !in.cur.exited() {
		return nil, errors.New("server is already running")
	}
	logFile, err := os.OpenFile(in.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	// The child writes straight into the file: nothing to copy, nothing
	// lost when it is killed.
	defer logFile.Close()
	in.starts++
	args := in.args()
	fmt.Fprintf(logFile, "=== testenv: start #%d at %s: %s %s\n", in.starts, time.Now().Format(time.RFC3339Nano), in.bin, strings.Join(args, " "))
	cmd := exec.Command(in.bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = withoutEnv(os.Environ(), "KUBECONFIG")
	// Own process group, and killed if the test binary dies, so that a
	// crashed or timed-out test leaves no server behind.
	p, err := startProcess(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", in.bin, err)
	}
	in.cur = p
	return p, nil
}

// startProcess starts cmd in its own process group, killed if the test
// binary dies, so that a crashed or timed-out test leaves nothing behind.
func startProcess(cmd *exec.Cmd) (*process, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &process{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The kernel sends Pdeathsig when the *thread* that started the
		// child ends (go.dev/issue/27505), so start and wait on one locked
		// thread that lives exactly as long as the child.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// waitReady waits until the admin kubeconfig exists and /readyz answers ok.
func (in *instance) waitReady(p *process) error {
	deadline := time.Now().Add(in.readyTimeout)
	tick := time.NewTicker(readyInterval)
	defer tick.Stop()
	last := errors.New("admin kubeconfig not written yet")
	for {
		select {
		case <-p.done:
			return fmt.Errorf("server exited before it was ready (%v)", p.err)
		default:
		}
		if err := in.readyz(); err == nil {
			return nil
		} else {
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not ready after %s: %w", in.readyTimeout, last)
		}
		<-tick.C
	}
}

func (in *instance) readyz() error {
	kc, err := LoadKubeconfig(in.kubeconfig())
	if err != nil {
		return err
	}
	client, err := kc.httpClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.url()+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("/readyz: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("/readyz: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if kc.Server != in.url() {
		return fmt.Errorf("admin kubeconfig names server %s, want %s", kc.Server, in.url())
	}
	return nil
}

func (kc *KubeconfigInfo) httpClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(kc.CAData) {
		return nil, errors.New("admin kubeconfig: no CA certificate")
	}
	cert, err := tls.X509KeyPair(kc.ClientCertData, kc.ClientKeyData)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: client certificate: %w", err)
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}}, nil
}

// FreePorts returns n distinct loopback ports that were free a moment ago.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		// Held open until all are picked so the kernel hands out distinct ones.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func logSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func logFrom(path string, offset int64) string {
	data, err := os.ReadFile(path)
	if err != nil || offset > int64(len(data)) {
		return ""
	}
	return string(data[offset:])
}

func tail(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	s = s[len(s)-limit:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "[...]\n" + s
}

func dumpLog(t testing.TB, path string, offset int64) {
	t.Helper()
	t.Logf("strata server log %s (from byte %d):\n%s", path, offset, tail(logFrom(path, offset), logDumpLimit))
}

func readLog(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

// Package benchenv runs a built `strata server` as a child process for the
// benchmark programs under bench/: it picks free loopback ports, starts the
// process on a data directory, waits until /readyz passes (timing it), stops
// it with SIGTERM (timing that too), and builds clients for it — client-go
// from the admin kubeconfig and an etcd v3 client with the embedded etcd's
// client certificate.
//
// It drives the binary only as a process, so the bench programs never link
// the Kubernetes tree.
package benchenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ReadyLine is what the server logs on stderr once /readyz passes.
const ReadyLine = "Strata server is ready"

// Options say how to start a server.
type Options struct {
	Bin     string // path of the strata binary
	DataDir string // its --data-dir; kept across restarts by the caller
	// Ports to use; zero values are filled with free loopback ports. Warm
	// restarts reuse the ports of the first start (see Server.Options).
	APIPort, EtcdClientPort, EtcdPeerPort, RegistryPort, OpenStackPort, S3Port int
	ExtraArgs                                                                  []string
	LogPath                                                                    string // server stdout+stderr are appended here; empty: DataDir + ".log"
}

// Server is one running `strata server` process.
type Server struct {
	opts    Options
	cmd     *exec.Cmd
	log     *os.File
	started time.Time
	exited  chan struct{} // closed when the process has exited
	waitErr error         // valid after exited is closed
}

// FreePorts returns n distinct TCP ports that were free on 127.0.0.1.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Start starts the server process and returns at once; use WaitReady.
// The clock for WaitReady starts just before the process is spawned.
func Start(opts Options) (*Server, error) {
	if opts.APIPort == 0 || opts.EtcdClientPort == 0 || opts.EtcdPeerPort == 0 || opts.RegistryPort == 0 || opts.OpenStackPort == 0 || opts.S3Port == 0 {
		p, err := FreePorts(6)
		if err != nil {
			return nil, err
		}
		opts.APIPort, opts.EtcdClientPort, opts.EtcdPeerPort, opts.RegistryPort, opts.OpenStackPort, opts.S3Port = p[0], p[1], p[2], p[3], p[4], p[5]
	}
	if opts.LogPath == "" {
		opts.LogPath = filepath.Clean(opts.DataDir) + ".log"
	}
	bin, err := filepath.Abs(opts.Bin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("strata binary: %w (run `make build` first)", err)
	}
	logf, err := os.OpenFile(opts.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "\n===== %s starting %s\n", time.Now().Format(time.RFC3339Nano), bin)
	args := append([]string{"server",
		"--data-dir", opts.DataDir,
		"--bind-address", "127.0.0.1",
		"--api-port", strconv.Itoa(opts.APIPort),
		"--etcd-client-port", strconv.Itoa(opts.EtcdClientPort),
		"--etcd-peer-port", strconv.Itoa(opts.EtcdPeerPort),
		"--registry-port", strconv.Itoa(opts.RegistryPort),
		"--openstack-port", strconv.Itoa(opts.OpenStackPort),
		"--s3-port", strconv.Itoa(opts.S3Port),
	}, opts.ExtraArgs...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so a Ctrl-C at the terminal reaches only
		// the bench, which then stops the server with SIGTERM itself.
		Setpgid: true,
		// Safety net if the bench is killed outright.
		Pdeathsig: syscall.SIGKILL,
	}
	s := &Server{opts: opts, cmd: cmd, log: logf, exited: make(chan struct{})}
	s.started = time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// Options returns the options the server runs with, ports filled in.
func (s *Server) Options() Options { return s.opts }

// PID is the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Started is when the process was spawned.
func (s *Server) Started() time.Time { return s.started }

// KubeconfigPath is the admin kubeconfig the server writes.
func (s *Server) KubeconfigPath() string { return filepath.Join(s.opts.DataDir, "admin.kubeconfig") }

// LogPath is where the server's output goes.
func (s *Server) LogPath() string { return s.opts.LogPath }

// WaitReady polls GET /readyz every interval with the admin kubeconfig's
// client certificate (waiting for the kubeconfig to appear first) and
// returns the time from process start to the first 200. It fails if the
// process exits or timeout passes first.
func (s *Server) WaitReady(ctx context.Context, interval, timeout time.Duration) (time.Duration, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()

	var (
		client  *http.Client
		host    string
		stamp   string // kubeconfig's size+mtime the client was built from
		lastErr error
	)
	for {
		if fi, err := os.Stat(s.KubeconfigPath()); err != nil {
			lastErr = fmt.Errorf("kubeconfig not there yet: %w", err)
		} else if st := fmt.Sprint(fi.Size(), fi.ModTime().UnixNano()); st != stamp {
			// (Re)build the client whenever the server (re)writes the file.
			cfg, err := s.RESTConfig()
			if err != nil {
				lastErr = err
			} else if c, err := rest.HTTPClientFor(cfg); err != nil {
				lastErr = err
			} else {
				client, host, stamp = c, strings.TrimRight(cfg.Host, "/"), st
				client.Timeout = 2 * time.Second
			}
		}
		if client != nil {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, host+"/readyz", nil)
			if err != nil {
				return 0, err
			}
			resp, err := client.Do(req)
			if err == nil {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return time.Since(s.started), nil
				}
				lastErr = fmt.Errorf("/readyz: %s: %s", resp.Status, lastLines(body, 3))
			} else {
				lastErr = err
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-s.exited:
			return 0, fmt.Errorf("server exited before ready (%v); log tail:\n%s", s.waitErr, s.LogTail(20))
		case <-deadline.C:
			return 0, fmt.Errorf("not ready after %s: last: %v; log tail:\n%s", timeout, lastErr, s.LogTail(20))
		case <-tick.C:
		}
	}
}

// Stop sends SIGTERM and waits for the process to exit, killing it after
// timeout. It returns how long the graceful exit took and an error if the
// exit was not clean (non-zero status, or killed). Stopping twice is safe.
func (s *Server) Stop(timeout time.Duration) (time.Duration, error) {
	defer s.log.Close()
	select {
	case <-s.exited:
		return 0, s.exitError()
	default:
	}
	t0 := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return 0, fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-s.exited:
		return time.Since(t0), s.exitError()
	case <-time.After(timeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return time.Since(t0), fmt.Errorf("did not exit within %s of SIGTERM; killed; log tail:\n%s", timeout, s.LogTail(20))
	}
}

func (s *Server) exitError() error {
	if s.waitErr != nil {
		return fmt.Errorf("server exit: %w; log tail:\n%s", s.waitErr, s.LogTail(20))
	}
	return nil
}

// LogTail returns the last n lines of the server's output.
func (s *Server) LogTail(n int) string {
	data, err := os.ReadFile(s.opts.LogPath)
	if err != nil {
		return err.Error()
	}
	return lastLines(data, n)
}

// LastLines returns the last n lines of s.
func LastLines(s string, n int) string { return lastLines([]byte(s), n) }

func lastLines(data []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// RESTConfig loads the admin kubeconfig.
func (s *Server) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.KubeconfigPath())
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: %w", err)
	}
	return cfg, nil
}

// OwnConnection makes cfg build a transport of its own instead of sharing
// client-go's cached one, so that each clientset made from it has its own
// TCP connection (client-go never caches a transport with a Proxy func).
func OwnConnection(cfg *rest.Config) {
	cfg.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
}

// EtcdClient connects to the embedded etcd with the client certificate the
// server keeps in its data dir (the one kube-apiserver uses).
func (s *Server) EtcdClient(ctx context.Context) (*clientv3.Client, error) {
	pki := filepath.Join(s.opts.DataDir, "pki")
	caPEM, err := os.ReadFile(filepath.Join(pki, "etcd-ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: no certificate", filepath.Join(pki, "etcd-ca.crt"))
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "etcd-client.crt"), filepath.Join(pki, "etcd-client.key"))
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate: %w", err)
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.opts.EtcdClientPort))},
		DialTimeout: 5 * time.Second,
		TLS:         &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Context:     ctx,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return c, nil
}

// LoadAverage returns the machine's 1, 5 and 15 minute load averages as
// /proc/loadavg gives them, to print beside figures that other processes
// on the machine can distort.
func LoadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
